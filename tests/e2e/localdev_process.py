"""`python -m localdev` as a subprocess: start, wait for host.env, stop with SIGTERM, check it cleaned up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Variables a developer's shell may carry that would point the app somewhere else.
_FOREIGN = ("KEY_VAULT_", "IDENTITY_", "MSI_", "AZURE_CLIENT_ID", "AzureWebJobs", "FUNCTIONS_")


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


class LocaldevProcess:
    """One `python -m localdev ...` run with its output captured to files (never to a pipe that can fill)."""

    def __init__(self, state_dir: Path, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = state_dir.parent / "localdev.stdout"
        self.stderr_path = state_dir.parent / "localdev.stderr"
        env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN)}
        env.update(extra_env or {})
        if args[:1] != ("host",) and not {"--no-azurite", "--azurite-port"} & set(args):
            args = (*args, "--no-azurite")  # not the development ports a developer's Azurite may hold
        command = [sys.executable, "-m", "localdev", *args, "--state-dir", str(state_dir)]
        self.started = time.perf_counter()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # Own session: its process group id is its pid, so leftovers can be found after it exits.
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True
            )
        self.ready_seconds: float | None = None

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> dict[str, str]:
        """host.env's contents once it appears; fails with the process output if it exits or times out."""
        host_env = self.state_dir / "host.env"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if host_env.is_file():
                self.ready_seconds = time.perf_counter() - self.started
                return read_env_file(host_env)
            if self.process.poll() is not None:
                raise AssertionError(
                    f"python -m localdev exited with {self.process.returncode}:\n{self.output()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"python -m localdev not ready after {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, and return the exit code (kills the group only if it hangs, then fails)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"python -m localdev ignored SIGTERM for {timeout}s:\n{self.output()}"
            ) from None

    def leftover_processes(self) -> list[int]:
        """Processes still in the run's process group (there should be none)."""
        group = self.process.pid
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == group and int(entry.name) != group:  # fields[2] is pgrp
                found.append(int(entry.name))
        return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on `port` (SO_REUSEADDR, as any restarting server: TIME_WAIT left by clients is fine)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError:
            return False
    return True

"""Start the local host in-process on port 0 against a fixture app, with a clean environment each time."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from localdev.host import HostConfig, RunningHost, start_host

APPS = Path(__file__).parent / "apps"


@pytest.fixture
def clean_environ() -> object:
    """Core Tools-style settings go into os.environ; put it back as it was after each test."""
    saved = dict(os.environ)
    yield os.environ
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
async def host_factory(tmp_path: Path, clean_environ: object) -> AsyncIterator[Callable[..., object]]:
    """`await host_factory("http", auth=True)` → RunningHost; stopped at teardown."""
    started: list[RunningHost] = []

    async def start(app: str, script: str | None = None, **options: object) -> RunningHost:
        app_dir = APPS / app
        config = HostConfig(
            app_dir=app_dir,
            script_file=script or f"{app}_app.py",
            port=0,
            state_dir=tmp_path / "state",
            **options,
        )  # type: ignore[arg-type]
        running = await start_host(config)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.stop()


def app_module(running: RunningHost) -> object:
    """The fixture app's module as the host imported it (to read what its functions recorded)."""
    return sys.modules[running.registry.script.stem]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session

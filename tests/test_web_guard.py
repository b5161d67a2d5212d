"""The dashboard's HTTP guard (memsys/http_guard.py, installed by components/serve.py).

First the plain functions; then a real dashboard (`python -m components.serve`) opened in
Debian's Chromium under names that resolve to 127.0.0.1 (`--host-resolver-rules`), raw
HTTP requests and websocket handshakes with foreign Host and Origin headers, the local
token (without it 403, with it the app, then the cookie alone; never in memsys.log), and
another site's page that frames the dashboard."""
from __future__ import annotations

import asyncio
import http.client
import os
import socket
import stat
import threading
from base64 import b64encode
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from memsys.config import ConfigError, Settings
from memsys.http_guard import (
    SECURITY_HEADERS, GuardMiddleware, HttpGuard, host_allowed, origin_allowed, read_or_create_token,
    token_cookie_name,
)

from conftest import free_port
from dashboard_support import CHROMIUM_ARGS, DashboardServer, memsys_env, require_chromium, settle

LONG = 180_000
TOKEN = "t" * 43
SECURITY = {name.lower(): value for name, value in SECURITY_HEADERS}


# --- the plain functions ------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8501", "localhost:1", "LOCALHOST.:8501", "[::1]:8501",
                                  "[::1]", "memsys.example.com", "memsys.example.com:443", "pinned.example.com:8443"])
def test_the_names_a_dashboard_is_served_under_are_let_in(host: str) -> None:
    assert host_allowed(host, ("memsys.example.com", "pinned.example.com:8443"))


@pytest.mark.parametrize("host", [None, "", "evil.test", "evil.test:8501", "127.0.0.1.evil.test", "localhost.evil.test",
                                  "0.0.0.0:8501", "127.0.0.2:8501", "user@127.0.0.1", "127.0.0.1/x", "127.0.0.1:port",
                                  "sub.memsys.example.com", "memsys.example.com.evil.test", "pinned.example.com:8444",
                                  "pinned.example.com", "[::2]:8501"])
def test_any_other_name_is_refused(host: str | None) -> None:
    assert not host_allowed(host, ("memsys.example.com", "pinned.example.com:8443"))


@pytest.mark.parametrize("origin, host, allowed", [
    (None, "127.0.0.1:8501", True),
    ("http://127.0.0.1:8501", "127.0.0.1:8501", True),
    ("https://memsys.example.com", "memsys.example.com", True),  # behind a TLS proxy passing the Host on
    ("http://memsys.example.com", "memsys.example.com", True),
    ("https://memsys.example.com:8443", "memsys.example.com:8443", True),
    ("http://127.0.0.1:3000", "127.0.0.1:8501", False),  # another service of this machine
    ("http://localhost:8501", "127.0.0.1:8501", False),  # another origin, though loopback
    ("http://evil.test:8501", "127.0.0.1:8501", False),
    ("http://evil.test:8501", "evil.test:8501", False),  # DNS rebinding: same origin, foreign name
    ("null", "127.0.0.1:8501", False),
    ("https://memsys.example.com:444", "memsys.example.com", False),
    ("http://127.0.0.1:8501/path", "127.0.0.1:8501", False),
    ("file://", "127.0.0.1:8501", False),
])
def test_an_origin_must_be_the_dashboards_own(origin: str | None, host: str, allowed: bool) -> None:
    assert origin_allowed(origin, host, ("memsys.example.com", "memsys.example.com:8443")) is allowed


def test_the_token_comes_once_in_the_address_then_in_a_strict_cookie() -> None:
    guard = HttpGuard(token=TOKEN, token_place="the file dashboard_token of memsys's data directory")
    refused = guard.check(host="127.0.0.1:8501", path="/", port=8501)
    assert not refused.allowed and "MEMSYS_DASHBOARD_TOKEN=off" in refused.message and TOKEN not in refused.message
    assert "dashboard_token of memsys's data directory" in refused.message
    moved = guard.check(host="127.0.0.1:8501", path="/memories", query=f"job=j1&token={TOKEN}", port=8501)
    assert moved.allowed and moved.location == "/memories?job=j1"  # out of the address bar and history
    assert moved.set_cookie == f"{token_cookie_name(8501)}={TOKEN}; Path=/; HttpOnly; SameSite=Strict"
    assert guard.check(host="127.0.0.1:8501", path="/", query="token=wrong", port=8501).allowed is False
    assert guard.check(host="127.0.0.1:8501", path="/", cookies={token_cookie_name(8501): TOKEN}, port=8501) \
        .allowed is True
    # A cookie of another dashboard on this host (another port) is not this one's.
    assert guard.check(host="127.0.0.1:8502", path="/", cookies={token_cookie_name(8501): TOKEN}, port=8502) \
        .allowed is False
    assert guard.check(host="127.0.0.1:8501", path="/_stcore/stream", query=f"token={TOKEN}", port=8501,
                       websocket=True).allowed is False  # a websocket goes by the cookie only
    assert guard.check(host="127.0.0.1:8501", path="/_stcore/health", port=8501).allowed is True
    assert guard.check(host="evil.test:8501", path="/_stcore/health", port=8501).allowed is False
    assert "Secure" in guard.check(host="127.0.0.1:8501", query=f"token={TOKEN}", port=8501, secure=True).set_cookie
    assert HttpGuard().check(host="127.0.0.1:8501").allowed is True  # sign-in protects it: no token


def test_a_foreign_name_is_refused_whatever_token_it_brings() -> None:
    guard = HttpGuard(token=TOKEN)
    verdict = guard.check(host="evil.test:8501", query=f"token={TOKEN}", cookies={token_cookie_name(8501): TOKEN},
                          port=8501)
    assert not verdict.allowed and "MEMSYS_ALLOWED_HOSTS" in verdict.message and not verdict.set_cookie


def test_the_token_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "dashboard_token"
    token = read_or_create_token(path)
    assert len(token) >= 40 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_token(path) == token
    path.chmod(0o644)  # others could read it: it may be known, so it is replaced
    renewed = read_or_create_token(path)
    assert renewed != token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_settings(tmp_path: Path) -> None:
    settings = Settings.load(env={"MEMSYS_ALLOWED_HOSTS": "memsys.example.com, pinned.example.com:8443",
                                  "MEMSYS_DASHBOARD_TOKEN": "off", "MEMSYS_DATA_DIR": str(tmp_path),
                                  "MEMSYS_VERIFIED_EMAIL_ISSUERS": "https://login.example.com"},
                             secrets_path=Path("/nonexistent"))
    assert settings.allowed_hosts == ("memsys.example.com", "pinned.example.com:8443")
    assert settings.dashboard_token is False and settings.dashboard_token_path == tmp_path / "dashboard_token"
    assert settings.verified_email_issuers == ("https://login.example.com",)
    assert Settings.load(env={}, secrets_path=Path("/nonexistent")).dashboard_token is True
    with pytest.raises(ConfigError, match="MEMSYS_ALLOWED_HOSTS"):
        Settings.load(env={"MEMSYS_ALLOWED_HOSTS": "https://memsys.example.com/"}, secrets_path=Path("/nonexistent"))


def _run_asgi(guard: HttpGuard, scope: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-frame-options", b"DENY")]})
        await send({"type": "http.response.body", "body": b"app"})

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"} if scope["type"] == "websocket" else {"type": "http.request"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(GuardMiddleware(app, guard)(scope, receive, send))
    return sent, bool(reached)


def test_the_middleware_answers_for_the_app() -> None:
    guard = HttpGuard(token=TOKEN)
    base = {"path": "/", "query_string": b"", "server": ("127.0.0.1", 8501), "scheme": "http"}
    cookie = (b"cookie", f"a=b; {token_cookie_name(8501)}={TOKEN}".encode())
    sent, reached = _run_asgi(guard, {**base, "type": "http", "headers": [(b"host", b"127.0.0.1:8501"), cookie]})
    headers = dict(sent[0]["headers"])
    assert reached and sent[0]["status"] == 200
    assert headers[b"x-frame-options"] == b"DENY"  # the app's own stricter header stays
    assert headers[b"content-security-policy"] == b"frame-ancestors 'self'" and headers[b"referrer-policy"] == b"no-referrer"
    sent, reached = _run_asgi(guard, {**base, "type": "http", "headers": [(b"host", b"evil.test:8501"), cookie]})
    assert not reached and sent[0]["status"] == 403 and b"MEMSYS_ALLOWED_HOSTS" in sent[1]["body"]
    sent, reached = _run_asgi(guard, {**base, "type": "http", "headers": [
        (b"host", b"127.0.0.1:8501"), (b"host", b"evil.test"), cookie]})
    assert not reached and sent[0]["status"] == 403
    sent, reached = _run_asgi(guard, {**base, "type": "websocket", "path": "/_stcore/stream",
                                      "headers": [(b"host", b"127.0.0.1:8501"), (b"origin", b"http://evil.test")]})
    assert not reached and sent == [{"type": "websocket.close", "code": 1008}]


# --- a real dashboard ---------------------------------------------------------------------------

class ForeignSite:
    """Another site's pages, on its own port of 127.0.0.1: one that frames the dashboard,
    and one that (as after a DNS rebinding) talks to it under its own name."""

    def __init__(self, pages: dict[str, str]) -> None:
        self.pages = pages
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                body = site.pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    folder = tmp_path_factory.mktemp("web-guard")
    env = {**memsys_env(folder / "data"), "MEMSYS_ALLOWED_HOSTS": "memsys.test"}
    server = DashboardServer(env, folder / "streamlit.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(dashboard: DashboardServer) -> Iterator[ForeignSite]:
    port = dashboard.port
    pages = {
        "/frame.html": f'<h1>another site</h1><iframe id="dash" src="http://127.0.0.1:{port}/" width="900" '
                       'height="600"></iframe>',
        "/rebind.html": "<h1>rebound</h1><script>\n"
                        "window.results = {ws: 'pending'};\n"
                        f"const ws = new WebSocket('ws://evil.test:{port}/_stcore/stream', ['streamlit']);\n"
                        "ws.onopen = () => { window.results.ws = 'open'; };\n"
                        "ws.onerror = () => { if (window.results.ws === 'pending') window.results.ws = 'refused'; };\n"
                        "ws.onclose = () => { if (window.results.ws === 'pending') window.results.ws = 'refused'; };\n"
                        "</script>",
    }
    served = ForeignSite(pages)
    yield served
    served.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    rules = "MAP evil.test 127.0.0.1, MAP memsys.test 127.0.0.1"
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(require_chromium()),
                                     args=[*CHROMIUM_ARGS, f"--host-resolver-rules={rules}"])
        try:
            yield launched
        finally:
            launched.close()


def request(port: int, path: str, host: str, origin: str | None = None, cookie: str | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], str]:
    """One plain HTTP request to 127.0.0.1:port with exactly these Host, Origin and Cookie headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in (("Host", host), ("Origin", origin), ("Cookie", cookie)):
            if value is not None:
                conn.putheader(name, value)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read().decode("utf-8", "replace")
    finally:
        conn.close()


def handshake(port: int, host: str, origin: str | None = None, cookie: str | None = None,
              path: str = "/_stcore/stream") -> int:
    """A raw websocket handshake to the dashboard's stream; the HTTP status it gets (101: open)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {b64encode(os.urandom(16)).decode()}", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: streamlit"]
    lines += [f"Origin: {origin}"] if origin else []
    lines += [f"Cookie: {cookie}"] if cookie else []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def cookie_of(dashboard: DashboardServer) -> str:
    return f"{token_cookie_name(dashboard.port)}={dashboard.token}"


def test_foreign_host_and_origin_requests_are_refused(dashboard: DashboardServer) -> None:
    port, cookie = dashboard.port, cookie_of(dashboard)
    local, evil = f"127.0.0.1:{port}", f"evil.test:{port}"
    # The controls: the dashboard's own names get through.
    assert request(port, "/", local, cookie=cookie)[0] == 200
    assert request(port, "/", f"memsys.test:{port}", origin=f"http://memsys.test:{port}", cookie=cookie)[0] == 200
    assert handshake(port, local, cookie=cookie) == 101
    assert handshake(port, local, origin=f"http://{local}", cookie=cookie) == 101
    assert handshake(port, f"memsys.test:{port}", origin=f"http://memsys.test:{port}", cookie=cookie) == 101
    foreign = [(evil, None), (evil, f"http://{evil}"), (f"0.0.0.0:{port}", None), (f"127.0.0.1.evil.test:{port}", None),
               (local, f"http://{evil}"), (local, f"http://127.0.0.1:{free_port()}"), (local, "null"),
               (local, f"http://localhost:{port}"), (f"localhost:{port}", "http://evil.test")]
    paths = ["/", "/memories", "/_stcore/health", "/_stcore/host-config", "/static/index.html", "/_stcore/stream",
             "/_stcore/upload_file/x/y", "/media/x.png"]
    tried, refused = 0, []
    for host, origin in foreign:
        for path in paths:
            for method in ("GET", "POST"):
                status, headers, body = request(port, path, host, origin, cookie, method)
                tried += 1
                if status == 403 and "memsys refused this request" in body:
                    refused.append((host, origin, path))
                    assert headers["x-frame-options"] == "SAMEORIGIN"
        tried += 1
        if handshake(port, host, origin, cookie) == 403:
            refused.append((host, origin, "websocket"))
    assert len(refused) == tried == len(foreign) * (len(paths) * 2 + 1)
    print(f"\nforeign Host/Origin: {tried} requests and handshakes tried, {len(refused)} refused")


def test_without_the_token_nothing_opens_not_even_the_stream(dashboard: DashboardServer) -> None:
    port, local = dashboard.port, f"127.0.0.1:{dashboard.port}"
    for path in ("/", "/memories", "/_stcore/host-config", "/static/index.html"):
        status, _, body = request(port, path, local)
        assert status == 403 and "needs its access token" in body and dashboard.token not in body
    assert request(port, "/", local, cookie=f"{token_cookie_name(port)}=wrong")[0] == 403
    assert handshake(port, local) == 403
    assert handshake(port, local, path=f"/_stcore/stream?token={dashboard.token}") == 403  # the cookie only
    assert request(port, "/_stcore/health", local)[0] == 200  # says only that it is up


def test_a_browser_under_a_foreign_name_gets_no_app_and_no_websocket(
        browser: Browser, dashboard: DashboardServer, site: ForeignSite) -> None:
    context = browser.new_context()
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        # Even with the token: the name is not one the dashboard is served under.
        answer = page.goto(f"http://evil.test:{dashboard.port}/?token={dashboard.token}")
        assert answer is not None and answer.status == 403
        expect(page.locator("body")).to_contain_text("MEMSYS_ALLOWED_HOSTS")
        page.wait_for_timeout(2000)
        expect(page.locator("[data-testid='stApp']")).to_have_count(0)
        assert sockets == [] and context.cookies() == []
        # A page of the rebinding site's own tries the dashboard's stream under its name.
        page.goto(f"http://evil.test:{site.port}/rebind.html")
        page.wait_for_function("window.results.ws !== 'pending'", timeout=30_000)
        assert page.evaluate("window.results.ws") == "refused"
    finally:
        context.close()


def test_the_configured_public_name_gets_the_app(browser: Browser, dashboard: DashboardServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        page.goto(f"http://memsys.test:{dashboard.port}/?token={dashboard.token}")
        settle(page)
        expect(page.get_by_test_id("stSidebarNavItems")).to_be_visible(timeout=LONG)
        assert page.url == f"http://memsys.test:{dashboard.port}/"
        assert sockets and set(sockets) == {f"ws://memsys.test:{dashboard.port}/_stcore/stream"}
    finally:
        context.close()


def test_the_local_token_then_the_cookie_and_never_in_the_log(browser: Browser, dashboard: DashboardServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    try:
        answer = page.goto(dashboard.url)
        assert answer is not None and answer.status == 403
        expect(page.locator("body")).to_contain_text("needs its access token")
        page.wait_for_timeout(1000)
        assert sockets == []
        page.goto(dashboard.address())  # what `make run` prints
        expect(page.get_by_role("heading", name="Recent imports")).to_be_visible(timeout=LONG)  # the app, with its engine
        assert page.url == f"{dashboard.url}/" and sockets  # the token left the address bar
        [cookie] = [c for c in context.cookies() if c["name"] == token_cookie_name(dashboard.port)]
        assert cookie["value"] == dashboard.token
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        # The cookie alone opens the dashboard from then on.
        second = context.new_page()
        second.goto(f"{dashboard.url}/memories")
        settle(second)
        expect(second.get_by_role("heading", level=1, name="Memories")).to_be_visible(timeout=LONG)
    finally:
        context.close()
    data = Path(dashboard.env["MEMSYS_DATA_DIR"])
    token_file = data / "dashboard_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    logs = sorted((data / "logs").glob("memsys.log*"))
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)
    assert text.strip(), "the dashboard has logged its work"
    assert dashboard.token not in text
    printed = (data.parent / "streamlit.log").read_text(encoding="utf-8")
    assert f"memsys dashboard: http://127.0.0.1:{dashboard.port}/?token={dashboard.token}" in printed


def test_another_site_cannot_frame_the_dashboard(browser: Browser, dashboard: DashboardServer,
                                                 site: ForeignSite) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(dashboard.address())  # signed in with the token: only the headers stop the frame
        settle(page)
        framed: list[tuple[int, dict[str, str]]] = []
        sockets: list[str] = []
        framer = context.new_page()
        framer.on("websocket", lambda ws: sockets.append(ws.url))
        framer.on("response", lambda r: framed.append((r.status, r.all_headers()))
                  if r.url.rstrip("/") == dashboard.url else None)
        framer.goto(f"http://127.0.0.1:{site.port}/frame.html")  # same site, another origin
        framer.wait_for_timeout(3000)
        assert framed and framed[0][0] == 200  # the dashboard answered (the cookie went with it)
        assert framed[0][1]["x-frame-options"] == "SAMEORIGIN"
        assert framed[0][1]["content-security-policy"] == "frame-ancestors 'self'"
        expect(framer.frame_locator("#dash").locator("[data-testid='stApp']")).to_have_count(0)
        child = [f for f in framer.frames if f != framer.main_frame]
        assert child and not child[0].url.startswith(dashboard.url)  # Chromium put its error page there
        assert sockets == []
    finally:
        context.close()


@pytest.mark.parametrize("path", ["/", "/memories", "/_stcore/health", "/_stcore/host-config", "/favicon.png",
                                  "/nowhere"])
def test_every_answer_carries_the_headers(dashboard: DashboardServer, path: str) -> None:
    status, headers, _ = request(dashboard.port, path, f"127.0.0.1:{dashboard.port}", cookie=cookie_of(dashboard))
    assert status in (200, 404)
    assert {name: headers.get(name) for name in SECURITY} == SECURITY


def test_turned_off_knowingly_the_dashboard_needs_no_token(tmp_path: Path) -> None:
    env = {**memsys_env(tmp_path / "data"), "MEMSYS_DASHBOARD_TOKEN": "off"}
    server = DashboardServer(env, tmp_path / "streamlit.log")
    try:
        assert server.token is None and not (tmp_path / "data" / "dashboard_token").exists()
        local = f"127.0.0.1:{server.port}"
        assert request(server.port, "/", local)[0] == 200
        assert handshake(server.port, local) == 101
        assert request(server.port, "/", f"evil.test:{server.port}")[0] == 403  # names are still checked
        assert handshake(server.port, local, origin="http://evil.test") == 403
    finally:
        server.stop()
    assert "MEMSYS_DASHBOARD_TOKEN is off" in (tmp_path / "streamlit.log").read_text(encoding="utf-8")

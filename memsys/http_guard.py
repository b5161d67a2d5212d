"""Who may reach an HTTP service memsys runs (the dashboard, and any API beside it), checked
on every request and websocket handshake before the service sees it:

- the Host header names the service by a name it is served under: a loopback name
  (`localhost`, `127.0.0.1`, `[::1]`, any port) or one the operator lists
  (MEMSYS_ALLOWED_HOSTS). A web page that rebinds its own name to 127.0.0.1 sends its own
  name, and is refused;
- an Origin header, when there is one, is the service's own origin: a page of another site
  (or of another port on this machine) cannot drive it;
- when the service runs without sign-in, the request carries the service's secret token:
  once in the first address (`?token=...`), then in an HttpOnly, SameSite=Strict cookie.
  Other people on the same machine can reach loopback too; the token file is theirs to
  read only if its mode lets them, and it is 0600.

Every answer also carries the headers an admin tool needs (`SECURITY_HEADERS`): no
framing by other sites, no content-type sniffing, no referrer.

`HttpGuard.check` is a plain function of the request's parts; `GuardMiddleware` applies it
to any ASGI application (Streamlit's server is one).
"""
from __future__ import annotations

import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
# The query parameter and the cookie that carry the token.
TOKEN_PARAMETER = "token"
TOKEN_COOKIE = "memsys_token"
# Paths that answer without the token: they say only that the service is up.
OPEN_PATHS = ("/_stcore/health", "/healthz")
SECURITY_HEADERS = (
    ("Content-Security-Policy", "frame-ancestors 'self'"),
    ("X-Frame-Options", "SAMEORIGIN"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def split_host(host: str | None) -> tuple[str, int | None] | None:
    """A Host header (or a name from the settings) as (lower-case name, port or None);
    None when it is not a plain host[:port]."""
    if not host:
        return None
    try:
        parts = urlsplit(f"//{host.strip()}")
        port = parts.port
    except ValueError:
        return None
    name = (parts.hostname or "").rstrip(".")
    if not name or parts.username is not None or parts.password is not None or parts.path or parts.query \
            or parts.fragment:
        return None
    return name, port


def host_allowed(host: str | None, allowed: Iterable[str] = ()) -> bool:
    """Whether a Host header names the service: a loopback name with any port, or an
    allowed name (`memsys.example.com` with any port, `memsys.example.com:8443` with that
    port only)."""
    parsed = split_host(host)
    if parsed is None:
        return False
    name, port = parsed
    if name in LOOPBACK_NAMES:
        return True
    for entry in allowed:
        wanted = split_host(entry)
        if wanted is not None and wanted[0] == name and wanted[1] in (None, port):
            return True
    return False


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str] = ()) -> bool:
    """Whether an Origin header is the service's own origin: absent (not a browser's
    cross-site request), or the same name and port as the Host header, which is itself
    allowed. `null` (a sandboxed frame, a file) is another origin."""
    if origin is None:
        return True
    if not host_allowed(host, allowed):
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return False
    host_name, host_port = split_host(host)  # type: ignore[misc]  # allowed, so it parses
    if parts.hostname.rstrip(".").lower() != host_name:
        return False
    if host_port is None:
        # A Host without a port is the default port of whichever scheme the browser used
        # (behind a TLS proxy the service itself may only see http).
        return origin_port in (None, _DEFAULT_PORTS[parts.scheme])
    return (origin_port or _DEFAULT_PORTS[parts.scheme]) == host_port


@dataclass(frozen=True)
class Verdict:
    """What to do with one request: let it through (`allowed`), refuse it (403 with
    `message`), or send the browser to `location` with `set_cookie` (the token arrived in
    the address: it moves to a cookie and out of the address bar and history)."""

    allowed: bool
    message: str = ""
    location: str = ""
    set_cookie: str = ""


ALLOW = Verdict(True)


@dataclass(frozen=True)
class HttpGuard:
    """The rules for one service: the names it is served under besides loopback, and the
    token it needs (None: no token, e.g. sign-in protects it). `token_place` says where the
    token is kept, in words for the refusal (never a path on the server: the refusal is a page)."""

    allowed_hosts: tuple[str, ...] = ()
    token: str | None = None
    token_place: str = ""

    def check(self, *, host: str | None, origin: str | None = None, path: str = "/", query: str = "",
              cookies: Mapping[str, str] | None = None, port: int | None = None, secure: bool = False,
              websocket: bool = False) -> Verdict:
        """The verdict on one request from its Host and Origin headers, path and query,
        cookies, the port it arrived on (which names the cookie: browsers share cookies
        between the ports of one host) and whether it came over TLS."""
        if not host_allowed(host, self.allowed_hosts):
            return Verdict(False, _wrong_host(host))
        if not origin_allowed(origin, host, self.allowed_hosts):
            return Verdict(False, _wrong_origin(origin))
        if self.token is None or path in OPEN_PATHS:
            return ALLOW
        pairs = parse_qsl(query, keep_blank_values=True)
        given = [value for key, value in pairs if key == TOKEN_PARAMETER]
        if websocket or not given or not _same(self.token, given[-1]):
            if _same(self.token, (cookies or {}).get(token_cookie_name(port))):
                return ALLOW
            return Verdict(False, self._token_needed())
        rest = urlencode([(key, value) for key, value in pairs if key != TOKEN_PARAMETER])
        cookie = (f"{token_cookie_name(port)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                  + ("; Secure" if secure else ""))
        return Verdict(True, location=path + (f"?{rest}" if rest else ""), set_cookie=cookie)

    def _token_needed(self) -> str:
        where = f" (the token is in {self.token_place})" if self.token_place else ""
        return ("This memsys dashboard needs its access token. Open the address it printed when it started, "
                f"which ends in ?{TOKEN_PARAMETER}=...{where}. On a machine nobody else uses, "
                "MEMSYS_DASHBOARD_TOKEN=off turns the token off.\n")


def token_cookie_name(port: int | None) -> str:
    return f"{TOKEN_COOKIE}_{port}" if port else TOKEN_COOKIE


def _same(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


def _shown(value: str | None) -> str:
    text = (value or "")[:200]
    return "".join(c if c.isprintable() else "?" for c in text) or "(none)"


def _wrong_host(host: str | None) -> str:
    return (f"memsys refused this request: it was sent to the name {_shown(host)}, which this memsys service "
            "(the dashboard, the API) is not served under. If people reach it by that name (a public name, or a "
            "reverse proxy's), add the name to MEMSYS_ALLOWED_HOSTS (comma-separated) and restart it.\n")


def _wrong_origin(origin: str | None) -> str:
    return (f"memsys refused this request: it came from a page of another site ({_shown(origin)}). Open the "
            "service by its own address. Behind a reverse proxy, have the proxy pass on the Host header the "
            "browser sent, and list that name in MEMSYS_ALLOWED_HOSTS.\n")


def read_or_create_token(path: Path) -> str:
    """The service's token, kept in `path` (mode 0600), created on first use. A file that
    others could read is replaced: its token may already be known."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode
        token = path.read_text(encoding="utf-8").strip()
        if token and not mode & (stat.S_IRWXG | stat.S_IRWXO) and len(token) >= 32:
            return token
        path.unlink()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use that one
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class GuardMiddleware:
    """An ASGI application in front of another: `HttpGuard.check` on every HTTP request
    and websocket handshake, and `SECURITY_HEADERS` on every HTTP answer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], guard: HttpGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[str, list[str]] = {}
        for raw_name, raw_value in scope.get("headers") or ():
            headers.setdefault(raw_name.decode("latin-1").lower(), []).append(raw_value.decode("latin-1"))
        hosts, origins = headers.get("host", []), headers.get("origin", [])
        websocket = scope["type"] == "websocket"
        if len(hosts) > 1 or len(origins) > 1:
            verdict = Verdict(False, "memsys refused this request: it names more than one Host or Origin.\n")
        else:
            server = scope.get("server") or (None, None)
            verdict = self.guard.check(
                host=hosts[0] if hosts else None, origin=origins[0] if origins else None,
                path=scope.get("path") or "/", query=(scope.get("query_string") or b"").decode("latin-1"),
                cookies=_cookies(headers.get("cookie", [])), port=server[1],
                secure=scope.get("scheme") in ("https", "wss"), websocket=websocket,
            )
        if not verdict.allowed:
            if websocket:
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})  # before accepting: the server answers 403
            else:
                await _answer(send, 403, verdict.message)
            return
        if verdict.location:
            await _answer(send, 303, "", [("Location", verdict.location), ("Set-Cookie", verdict.set_cookie)])
            return
        if websocket:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                present = {bytes(name).lower() for name, _ in message.get("headers") or ()}
                extra = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS
                         if name.lower().encode() not in present]
                message = {**message, "headers": [*(message.get("headers") or ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookies(values: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for value in values:
        for pair in value.split(";"):
            name, _, content = pair.strip().partition("=")
            if name and name not in found:
                found[name] = content.strip().strip('"')
    return found


async def _answer(send: Send, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> None:
    body = text.encode("utf-8")
    all_headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                   ("Cache-Control", "no-store"), *SECURITY_HEADERS, *headers]
    await send({"type": "http.response.start", "status": status,
                "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in all_headers]})
    await send({"type": "http.response.body", "body": body})

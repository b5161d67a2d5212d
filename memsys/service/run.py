"""Serving the API and the MCP server: on loopback unless told otherwise, and off loopback
only with API tokens (no anonymous service reachable from other machines); behind
memsys's HTTP guard (a request naming another Host is refused: no DNS rebinding) and a
bound on request bodies. The engine's memsys server is the data directory's, shared
with the dashboard and the CLI.
"""
from __future__ import annotations

import asyncio
import ipaddress
from typing import Any, Awaitable, Callable

import uvicorn

from memsys.config import Settings
from memsys.engine import Engine
from memsys.http_guard import LOOPBACK_NAMES, GuardMiddleware, HttpGuard
from memsys.service.callers import CallerCheck
from memsys.service.http import build_app
from memsys.service.mcp_server import build_mcp, mcp_http_app

_WILDCARDS = ("", "0.0.0.0", "::")  # noqa: S104 - names of "every interface", not an address to allow
# Paths whose bodies are files, bounded by MEMSYS_API_MAX_UPLOAD_BYTES instead.
_UPLOAD_PREFIX = "/v1/uploads/"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServiceRefused(SystemExit):
    """The service will not start as asked (the message says why and what to do)."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses (413) a request whose body is larger than `limit` bytes, by its
    Content-Length or as it arrives; upload paths are bounded where they are read."""

    def __init__(self, app: App, limit: int, exempt_prefix: str = _UPLOAD_PREFIX) -> None:
        self.app, self.limit, self.exempt = app, limit, exempt_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name.lower() == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send)
                return
        seen = 0
        started = False

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge()
            return message

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (f'{{"detail": "the request body is larger than this service takes ({self.limit} bytes); '
                'send files through /v1/uploads"}').encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def guard_for(host: str, settings: Settings) -> HttpGuard:
    """The Host check: loopback names, the configured public names (MEMSYS_ALLOWED_HOSTS)
    and the address the service listens on when it is one machine's address. Requests
    carry API tokens, not the dashboard's cookie token."""
    names = settings.allowed_hosts + (() if host in _WILDCARDS or host in LOOPBACK_NAMES else (host,))
    return HttpGuard(names, None)


def prepare(settings: Settings, host: str, what: str) -> tuple[Engine, bool]:
    """The engine to serve, after checking that it may be served on `host`."""
    loopback = is_loopback(host)
    engine = Engine(settings, program=what)
    if not loopback and not engine.tokens.required():
        engine.close()
        raise ServiceRefused(
            f"memsys {what}: refusing to listen on {host or 'every interface'} without API tokens: anyone who can "
            "reach it would act as admin. Make a token first (`memsys tokens create NAME --role ROLE`), or "
            "listen on 127.0.0.1.")
    return engine, loopback


def api_app(engine: Engine, host: str, loopback: bool) -> App:
    app = build_app(engine, loopback=loopback)
    return GuardMiddleware(BodyLimit(app, engine.settings.api_max_body_bytes), guard_for(host, engine.settings))


def mcp_app(engine: Engine, host: str, loopback: bool) -> App:
    server = build_mcp(engine, CallerCheck(engine, loopback=loopback))
    app = _TokenGate(mcp_http_app(server, engine.settings.api_max_body_bytes), CallerCheck(engine, loopback=loopback))
    return GuardMiddleware(BodyLimit(app, engine.settings.api_max_body_bytes), guard_for(host, engine.settings))


class _TokenGate:
    """Before the MCP transport: a request without a valid token (when tokens are needed)
    is refused with 401, so no session is opened for it."""

    def __init__(self, app: App, check: CallerCheck) -> None:
        self.app, self.check = app, check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != "/healthz":
            header = next((v.decode("latin-1") for k, v in scope.get("headers") or () if k.lower() == b"authorization"),
                          None)
            from_check = await asyncio.to_thread(self._verdict, header)
            if from_check:
                body = ('{"detail": "%s"}' % from_check.replace('"', "'")).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _verdict(self, header: str | None) -> str:
        """"" when the header may pass, else why not (rate limits are counted per tool call)."""
        if header is None:
            return "this memsys MCP server needs an API token" if self.check.tokens_required() else ""
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "the Authorization header must be `Bearer <token>`"
        return "" if self.check.engine.tokens.authenticate(token.strip()) is not None else \
            "this API token is not valid (unknown or revoked)"


def serve(app: App, host: str, port: int, banner: str) -> None:
    """Run `app` with uvicorn until interrupted; prints the address (never a token)."""
    shown = "127.0.0.1" if host in _WILDCARDS else (f"[{host}]" if ":" in host else host)
    print(f"{banner}: http://{shown}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False,
                server_header=False, timeout_graceful_shutdown=10)

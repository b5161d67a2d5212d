"""A fault-injecting HTTP proxy on loopback, in front of a real embeddings server.

Every `every`-th request fails, cycling through the kinds of failure a remote API has:
429 with Retry-After, 500, a response slower than the client's timeout, and a dropped
connection. Everything else is forwarded to the real server unchanged.

With `rpm`/`tpm` it is also a rate-limited provider: token buckets as OpenAI keeps them
(refilled at limit/60 per second, holding up to `burst_seconds` of it), a 429 with
Retry-After for a request past them, and `x-ratelimit-*` headers on every answer. With
`enforce=False` it forwards everything and only records how far the budget was overdrawn.
`transform="permute"` scrambles every vector: another model behind the same name.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import numpy as np

from memsys import tokens as token_counting
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULT_KINDS = ("429", "500", "slow", "reset")


class FaultProxy:
    def __init__(self, upstream: str, every: int = 5, kinds: tuple[str, ...] = FAULT_KINDS, slow_seconds: float = 3.0,
                 retry_after: float = 0.2, latency: float = 0.0, rpm: float | None = None, tpm: float | None = None,
                 burst_seconds: float = 60.0, enforce: bool = True, transform: str | None = None, port: int = 0) -> None:
        self.upstream = urlparse(upstream)
        self.burst_seconds = burst_seconds
        self.enforce = enforce
        self.transform = transform
        self.limits: dict[str, float | None] = {"requests": rpm, "tokens": tpm}
        self.levels: dict[str, float] = {k: (v or 0) * burst_seconds / 60 for k, v in self.limits.items()}
        self._refilled = time.monotonic()
        self.admitted: list[tuple[float, int]] = []  # (when, tokens) of every request let through
        self.over_limit = 0  # requests past the budget (answered 429 when enforcing)
        self.overdraft: list[tuple[float, float]] = []  # (when, tokens below zero) when not enforcing
        self.every = every
        self.kinds = kinds
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.latency = latency
        self.echo_key = False  # a 500's message quotes the API key it was sent (secret-scrubbing tests)
        self.requests = 0
        self.faults: dict[str, int] = {k: 0 for k in kinds}
        self.retry_after_honoured: list[float] = []  # seconds between a 429 and the same request again
        self._refused: dict[int, float] = {}  # hash of a refused body -> when it got its 429
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault(hash(body))
                limited = proxy._admit(body) if fault is None else None
                if proxy.latency:
                    time.sleep(proxy.latency)
                if limited is not None:
                    self._reply(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                {"Retry-After": f"{limited:.3f}", **proxy._rate_headers()})
                elif fault == "429":
                    self._reply(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                {"Retry-After": f"{proxy.retry_after:g}"})
                elif fault == "500":
                    key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                    said = f"internal error; key {key}" if proxy.echo_key else "internal error"
                    self._reply(500, json.dumps({"error": {"message": said, "type": "server_error"}}).encode())
                elif fault == "slow":
                    time.sleep(proxy.slow_seconds)
                    self._forward(body)
                elif fault == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    self.connection.close()
                    self.close_connection = True
                else:
                    self._forward(body)

            def _forward(self, body: bytes) -> None:
                up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=120)
                path = proxy.upstream.path.rstrip("/") + self.path.removeprefix("/v1")
                up.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = up.getresponse()
                data = resp.read()
                up.close()
                if proxy.transform == "permute" and resp.status == 200:
                    data = _permuted(data)
                try:
                    self._reply(resp.status, data, proxy._rate_headers())
                except OSError:
                    pass  # the client gave up (timeout) while we were slow

            def _reply(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _next_fault(self, body: int) -> str | None:
        with self._lock:
            now = time.monotonic()
            refused_at = self._refused.pop(body, None)
            if refused_at is not None:
                self.retry_after_honoured.append(now - refused_at)
            self.requests += 1
            if self.every and self.requests % self.every == 0:
                kind = self.kinds[(self.requests // self.every - 1) % len(self.kinds)]
                self.faults[kind] += 1
                if kind == "429":
                    self._refused[body] = now
                return kind
            return None

    # --- the rate limit -----------------------------------------------------------------
    def set_limits(self, rpm: float | None = None, tpm: float | None = None) -> None:
        """Change the limits now (a provider lowering an account's budget mid-import)."""
        with self._lock:
            self._refill(time.monotonic())
            for name, value in (("requests", rpm), ("tokens", tpm)):
                self.limits[name] = value
                if value:
                    self.levels[name] = min(self.levels[name], value * self.burst_seconds / 60)

    def _refill(self, now: float) -> None:
        elapsed, self._refilled = now - self._refilled, now
        for name, limit in self.limits.items():
            if limit:
                self.levels[name] = min(limit * self.burst_seconds / 60, self.levels[name] + elapsed * limit / 60)

    def _admit(self, body: bytes) -> float | None:
        """Take the request's cost from the buckets; None if admitted, else seconds to wait."""
        if not any(self.limits.values()):
            return None
        try:
            payload = json.loads(body)
            texts = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
            cost = sum(token_counting.count_tokens(t, "openai", payload.get("model", "")) for t in texts)
        except (ValueError, KeyError, TypeError):
            cost = 0
        with self._lock:
            now = time.monotonic()
            self._refill(now)
            costs = {"requests": 1, "tokens": cost}
            short = {n: costs[n] - self.levels[n] for n, limit in self.limits.items() if limit and costs[n] > self.levels[n]}
            if short:
                self.over_limit += 1
                if self.enforce:
                    return max(d / (self.limits[n] / 60) for n, d in short.items())  # type: ignore[operator]
            for name, limit in self.limits.items():
                if limit:
                    self.levels[name] -= costs[name]
            if not self.enforce and self.limits["tokens"] and self.levels["tokens"] < 0:
                self.overdraft.append((now, -self.levels["tokens"]))
            self.admitted.append((now, cost))
            return None

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            self._refill(time.monotonic())
            headers = {}
            for name, limit in self.limits.items():
                if limit:
                    level = self.levels[name]
                    full = limit * self.burst_seconds / 60
                    headers[f"x-ratelimit-limit-{name}"] = f"{limit:.0f}"
                    headers[f"x-ratelimit-remaining-{name}"] = f"{max(0.0, level):.0f}"
                    headers[f"x-ratelimit-reset-{name}"] = f"{max(0.0, full - level) / (limit / 60):.3f}s"
            return headers

    def tokens_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(n for t, n in self.admitted if start <= t < end)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def rate_limited(self) -> int:
        return self.over_limit

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        """Stop as a crashed server does: no more connections, open ones dropped."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _permuted(data: bytes) -> bytes:
    """The same answer with every vector's dimensions in another fixed order."""
    payload = json.loads(data)
    for item in payload.get("data", []):
        vector = np.asarray(item["embedding"], dtype=np.float32)
        item["embedding"] = vector[np.random.default_rng(7).permutation(vector.shape[0])].tolist()
    return json.dumps(payload).encode("utf-8")

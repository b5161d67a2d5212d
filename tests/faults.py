"""A fault-injecting HTTP proxy on loopback, in front of a real embeddings server.

Every `every`-th request fails, cycling through the kinds of failure a remote API has:
429 with Retry-After, 500, a response slower than the client's timeout, and a dropped
connection. Everything else is forwarded to the real server unchanged.
"""
from __future__ import annotations

import http.client
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

FAULT_KINDS = ("429", "500", "slow", "reset")


class FaultProxy:
    def __init__(self, upstream: str, every: int = 5, kinds: tuple[str, ...] = FAULT_KINDS, slow_seconds: float = 3.0,
                 retry_after: float = 0.2, latency: float = 0.0) -> None:
        self.upstream = urlparse(upstream)
        self.every = every
        self.kinds = kinds
        self.slow_seconds = slow_seconds
        self.retry_after = retry_after
        self.latency = latency
        self.requests = 0
        self.faults: dict[str, int] = {k: 0 for k in kinds}
        self.retry_after_honoured: list[float] = []  # seconds between a 429 and the same request again
        self._refused: dict[int, float] = {}  # hash of a refused body -> when it got its 429
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fault = proxy._next_fault(hash(body))
                if proxy.latency:
                    time.sleep(proxy.latency)
                if fault == "429":
                    self._reply(429, b'{"error": {"message": "rate limited", "type": "rate_limit"}}',
                                {"Retry-After": f"{proxy.retry_after:g}"})
                elif fault == "500":
                    self._reply(500, b'{"error": {"message": "internal error", "type": "server_error"}}')
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
                try:
                    self._reply(resp.status, data)
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

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def total_faults(self) -> int:
        return sum(self.faults.values())

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

"""HTTP as the website and WebDAV kinds use it: one host only (a redirect to another host
is refused, so a credential is never sent elsewhere), connect and read timeouts, bodies
read up to a size limit, and failures as `SourceProblem`s in plain words that name the
address's path but never a password (none is ever in the URL: basic auth goes in a header).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from memsys.ingest.readers.sources import ReadLimits
from memsys.ingest.sources.base import SourceProblem, SourceSpec

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_REDIRECTS = 5
USER_AGENT = "memsys-sources/1 (+https://github.com/memsys)"


def timeout_of(spec: SourceSpec) -> float:
    """The source's `timeout` option in seconds (connect, and each read), 30 s by default
    (`timeout_seconds` is read too)."""
    name = "timeout" if spec.option("timeout") else "timeout_seconds"
    raw = spec.option(name, "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_SECONDS
    except ValueError:
        raise SourceProblem(f"{name} is {raw!r}; it must be a number of seconds") from None
    if not 0 < value <= 600:
        raise SourceProblem(f"{name} is {raw!r}; it must be above 0 and at most 600")
    return value


def size_limit(spec: SourceSpec) -> int:
    """The most one document may weigh: the source's limit, else the reader's limit on one
    file (the same limit an upload meets)."""
    return spec.max_bytes or ReadLimits().max_file_bytes


def origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.netloc or "").lower()


def without_fragment(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def shown(url: str) -> str:
    """A URL as an error may show it: its path and query only (never user:password@host)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def scrubbed(text: str, secret: str | None) -> str:
    return text.replace(secret, "…") if secret else text


class OffHost(SourceProblem):
    """The server redirected to another host; memsys did not follow."""


@dataclass
class Response:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


class HostClient:
    """An httpx client bound to the host of `base_url`; `calls` counts the requests sent."""

    def __init__(self, base_url: str, spec: SourceSpec, auth: tuple[str, str] | None = None) -> None:
        scheme, netloc = origin_of(base_url)
        if scheme not in ("http", "https") or not netloc:
            raise SourceProblem("the location must be an http:// or https:// address")
        if "@" in netloc:
            raise SourceProblem("the location must not hold a user name or password; give them as the source's user and secret")
        self.origin = (scheme, netloc)
        self.timeout = timeout_of(spec)
        self.limit = size_limit(spec)
        self._secret = auth[1] if auth else None
        self.calls = 0
        self._client = httpx.Client(
            auth=httpx.BasicAuth(*auth) if auth else None,
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,
        )

    def same_host(self, url: str) -> bool:
        """The source's scheme, host and port; or the same host moved from http to https
        (its default port), which sends nothing anywhere else."""
        origin = origin_of(url)
        if origin == self.origin:
            return True
        parts, mine = urlsplit(url), urlsplit(f"{self.origin[0]}://{self.origin[1]}")
        return (self.origin[0] == "http" and origin[0] == "https" and parts.hostname == mine.hostname
                and parts.port in (None, 443) and mine.port in (None, 80))

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                content: bytes | None = None, limit: int | None = None, target: Path | None = None,
                name: str = "", types: tuple[str, ...] = ()) -> Response:
        """Send one request (following same-host redirects); the body is read up to `limit`
        bytes (the source's size limit by default) into memory, or into `target`; with
        `types`, a 200 answer of another content type is not read (its body comes back empty). Raises
        SourceProblem for another host, a timeout, an unreachable server or a body past the limit."""
        limit = self.limit if limit is None else limit
        for _ in range(MAX_REDIRECTS + 1):
            if not self.same_host(url):
                raise OffHost(f"{name or shown(url)}: the server sent memsys to another host; memsys stays on the source's host")
            self.calls += 1
            try:
                with self._client.stream(method, url, headers=dict(headers or {}), content=content) as r:
                    if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("location"):
                        url = urljoin(url, r.headers["location"])
                        if r.status_code == 303:
                            method, content = "GET", None
                        continue
                    content_type = r.headers.get("content-type", "").split(";")[0].strip().lower()
                    if types and r.status_code == 200 and content_type and content_type not in types:
                        return Response(str(r.url), r.status_code, dict(r.headers), b"")
                    declared = r.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise SourceProblem(f"{name or shown(url)} is larger than the limit of {limit} bytes; not read")
                    body = self._read(r, limit, name or shown(url), target)
                    return Response(str(r.url), r.status_code, dict(r.headers), body)
            except httpx.TimeoutException:
                raise SourceProblem(f"{name or shown(url)}: the server did not answer within {self.timeout:g} seconds") from None
            except httpx.TransportError as e:
                raise SourceProblem(f"{name or shown(url)}: the server could not be reached ({type(e).__name__})") from None
        raise SourceProblem(f"{name or shown(url)}: more than {MAX_REDIRECTS} redirects")

    def _read(self, r: httpx.Response, limit: int, name: str, target: Path | None) -> bytes:
        size = 0
        parts: list[bytes] = []
        out = target.open("wb") if target is not None else None
        try:
            for chunk in r.iter_bytes(1 << 16):
                size += len(chunk)
                if size > limit:
                    raise SourceProblem(f"{name} is larger than the limit of {limit} bytes; not read")
                if out is not None:
                    out.write(chunk)
                else:
                    parts.append(chunk)
        except SourceProblem:
            if out is not None:
                out.close()
                target.unlink(missing_ok=True)  # type: ignore[union-attr]
            raise
        finally:
            if out is not None:
                out.close()
        return b"".join(parts)

    def close(self) -> None:
        self._client.close()


__all__ = ["HostClient", "OffHost", "Response", "origin_of", "scrubbed", "shown", "size_limit", "timeout_of", "without_fragment"]

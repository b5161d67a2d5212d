"""Who is calling the HTTP API or the MCP server, and how often they may: an API token
(`Authorization: Bearer msk_...`) names a role and the knowledge bases it may reach; with
no token made yet, a service on loopback serves the people of this machine as admin, as
the CLI does. Each caller gets the engine as `AuthorizedEngine`, so every call is checked
against the caller's role and audited under its name, as a dashboard action is.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from memsys.access import AuthorizedEngine, Role, User
from memsys.engine import ApiToken, Engine
from memsys.errors import MemsysError

_REQUIRED_SECONDS = 1.0
# How a caller with no token is named and audited (only on loopback, before any token exists).
LOCAL_CALLER = User("API caller on this machine", "", Role.ADMIN)


class Unauthorized(MemsysError):
    """No valid token was presented. `malformed`: the Authorization header is not `Bearer <token>`."""

    def __init__(self, message: str, malformed: bool = False) -> None:
        self.malformed = malformed
        super().__init__(message)


class RateLimited(MemsysError):
    """The caller used up its requests per minute; `retry_after` seconds until the next."""

    def __init__(self, retry_after: float, per_minute: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"this token may make {per_minute} requests a minute; try again in "
                         f"{math.ceil(retry_after)} s")


@dataclass
class Caller:
    """One caller: the user it acts as, its token (None: local caller without token), the
    knowledge bases (projects) it may reach (() = all), and the engine as it may use it."""

    user: User
    token: ApiToken | None
    engine: AuthorizedEngine
    projects: tuple[str, ...] = field(default=())

    def may_reach(self, project: str | None) -> bool:
        return not self.projects or (project or "") in self.projects

    def project_for(self, project: str | None) -> str | None:
        """The project a read is limited to: the one asked for (refused, ValueError, when the
        caller may not reach it); with none asked, the caller's only project, if it has one.
        A caller limited to several projects must name one."""
        if project:
            if not self.may_reach(project):
                raise PermissionError(f"the knowledge base {project!r} is not one this token may reach")
            return project
        if not self.projects:
            return None
        if len(self.projects) == 1:
            return self.projects[0]
        raise PermissionError("this token reaches several knowledge bases; name one (project)")


class _Bucket:
    """A token bucket: `per_minute` requests a minute, up to a minute's worth at once."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.tokens = float(per_minute)
        self.at = time.monotonic()

    def take(self) -> float:
        """0 when the request may go now, else seconds until it may."""
        now = time.monotonic()
        rate = self.per_minute / 60.0
        self.tokens = min(float(self.per_minute), self.tokens + (now - self.at) * rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class CallerCheck:
    """Turns a request's Authorization header into a Caller, and counts its requests."""

    def __init__(self, engine: Engine, *, loopback: bool) -> None:
        self.engine = engine
        self.loopback = loopback
        self.default_rate = engine.settings.api_rate_limit
        self._buckets: dict[str, _Bucket] = {}
        self._required, self._required_until = True, 0.0
        self._lock = threading.Lock()

    def tokens_required(self) -> bool:
        """Off loopback always; on loopback once any API token exists (asked of the job
        database at most once a second: a token made elsewhere counts within a second)."""
        if not self.loopback:
            return True
        now = time.monotonic()
        if now >= self._required_until:
            self._required = self.engine.tokens.required()
            self._required_until = now + _REQUIRED_SECONDS
        return self._required

    def caller(self, authorization: str | None) -> Caller:
        """The caller a request's Authorization header names; raises Unauthorized or RateLimited."""
        token = _bearer(authorization)
        if token is None:
            if self.tokens_required():
                raise Unauthorized("this memsys API needs an API token: send `Authorization: Bearer <token>` "
                                   "(an admin makes one with `memsys tokens create`)", malformed=bool(authorization))
            self._count("local", self.default_rate)
            return Caller(LOCAL_CALLER, None, AuthorizedEngine(self.engine, LOCAL_CALLER))
        record = self.engine.tokens.authenticate(token)
        if record is None:
            raise Unauthorized("this API token is not valid (unknown or revoked)")
        user = User(f"API token {record.name} ({record.token_id})", "", Role[record.role.upper()])
        self._count(record.token_id, record.rate_per_minute or self.default_rate)
        return Caller(user, record, AuthorizedEngine(self.engine, user), record.projects)

    def _count(self, key: str, per_minute: int) -> None:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.per_minute != per_minute:
                bucket = self._buckets[key] = _Bucket(per_minute)
            wait = bucket.take()
        if wait:
            raise RateLimited(wait, per_minute)


def _bearer(header: str | None) -> str | None:
    """The token of `Bearer <token>`; None for no header; Unauthorized(malformed) otherwise."""
    if header is None or not header.strip():
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be `Bearer <token>`", malformed=True)
    return token.strip()

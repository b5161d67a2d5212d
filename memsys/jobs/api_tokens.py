"""API tokens of the HTTP API and the MCP server, kept in the job database: each with a
name, a role, optionally the knowledge bases (projects) it is limited to, and its own
request rate. Only the SHA-256 of a token is stored: a token is 256 random bits, so its
hash cannot be turned back into it, and the token itself is shown once, when it is made.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
import uuid
from dataclasses import dataclass

from memsys.jobs.schema import JobTables

# Every token starts with this, so a leaked one is recognisable (and scrubbable) as memsys's.
TOKEN_PREFIX = "msk_"


@dataclass(frozen=True)
class ApiToken:
    """What is known of one token (never the token itself)."""

    token_id: str
    name: str
    role: str  # viewer, operator or admin
    projects: tuple[str, ...]  # the knowledge bases it may reach; () = all
    rate_per_minute: int  # 0 = the server's MEMSYS_API_RATE_LIMIT
    created_at: dt.datetime
    created_by: str
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _when(value: float | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromtimestamp(value, dt.timezone.utc)


class ApiTokenTables(JobTables):
    """The api_tokens table. Thread-safe and process-safe, as the job database is."""

    def create(self, name: str, role: str, projects: tuple[str, ...] = (), rate_per_minute: int = 0,
               created_by: str = "") -> tuple[ApiToken, str]:
        """Make a token; returns its record and the token, which is not kept anywhere."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT INTO api_tokens (id, name, token_sha256, role, projects, rate_per_minute, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_id, name, token_hash(token), role, json.dumps(list(projects)), rate_per_minute, now, created_by),
            )
        return ApiToken(token_id, name, role, tuple(projects), rate_per_minute, _when(now), created_by,  # type: ignore[arg-type]
                        None, None), token

    def list(self, include_revoked: bool = True) -> list[ApiToken]:
        sql = "SELECT * FROM api_tokens" + ("" if include_revoked else " WHERE revoked_at IS NULL")
        return [self._record(r) for r in self._rows(sql + " ORDER BY created_at")]

    def get(self, token_id: str) -> ApiToken | None:
        row = self._one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        return self._record(row) if row is not None else None

    def any_active(self) -> bool:
        return self._one("SELECT 1 FROM api_tokens WHERE revoked_at IS NULL LIMIT 1") is not None

    def revoke(self, token_id: str) -> bool:
        """Revoke a token for good; False when no active token has that id."""
        with self._tx() as db:
            cur = db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (time.time(), token_id))
            return cur.rowcount > 0

    def find(self, token: str) -> ApiToken | None:
        """The active token `token` is, or None. Looked up by its hash: the comparison is of
        hashes in an index, so no timing tells how much of a guess was right."""
        row = self._one("SELECT * FROM api_tokens WHERE token_sha256 = ? AND revoked_at IS NULL", (token_hash(token),))
        return self._record(row) if row is not None else None

    def touch(self, token_id: str) -> None:
        """Record that the token was just used."""
        with self._tx() as db:
            db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (time.time(), token_id))

    @staticmethod
    def _record(row: object) -> ApiToken:
        r = row  # sqlite3.Row
        return ApiToken(r["id"], r["name"], r["role"], tuple(json.loads(r["projects"])), r["rate_per_minute"],  # type: ignore[index]
                        _when(r["created_at"]), r["created_by"], _when(r["last_used_at"]), _when(r["revoked_at"]))  # type: ignore[index,arg-type]

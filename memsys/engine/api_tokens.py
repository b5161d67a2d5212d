"""API tokens of the HTTP API and the MCP server: made, listed and revoked by admins,
and looked up when a request presents one."""
from __future__ import annotations

import time
from typing import Sequence

from memsys.access import Role, action
from memsys.audit import AuditAction
from memsys.engine.calls import ADMIN, VIEWER, Calls, audited
from memsys.jobs.api_tokens import ApiToken

# A token's last use is written at most this often (not once per request).
_TOUCH_SECONDS = 10.0


class ApiTokens(Calls):
    """Tokens for the HTTP API and the MCP server, each with a role and optionally limited
    to some knowledge bases (projects)."""

    @action(ADMIN, "making an API token", audit=AuditAction.API_TOKEN_CREATED)
    def create(self, name: str, role: str, projects: Sequence[str] = (), rate_per_minute: int = 0, *,
               actor: str | None = None) -> tuple[ApiToken, str]:
        """Make a token; returns its record and the token itself, which memsys does not
        keep (only its hash): show it once. Recorded in the audit trail (never the token)."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.API_TOKEN_CREATED, actor, name) as details:
            name = (name or "").strip()
            if not name:
                raise ValueError("an API token needs a name that says who or what uses it")
            role = (role or "").strip().lower()
            if role not in {r.label for r in Role}:
                raise ValueError(f"role {role!r} is not one of {', '.join(r.label for r in Role)}")
            clean = tuple(dict.fromkeys(p.strip() for p in projects if p and p.strip()))
            if not isinstance(rate_per_minute, int) or rate_per_minute < 0:
                raise ValueError(f"requests per minute must be a whole number 0 or more, got {rate_per_minute!r}")
            record, token = engine.api_tokens.create(name, role, clean, rate_per_minute, created_by=actor or "")
            details.update(token_id=record.token_id, role=role, projects=list(clean), rate_per_minute=rate_per_minute)
        return record, token

    @action(ADMIN, "listing API tokens")
    def list(self, include_revoked: bool = True) -> list[ApiToken]:
        return self._engine.api_tokens.list(include_revoked)

    @action(ADMIN, "revoking an API token", audit=AuditAction.API_TOKEN_REVOKED)
    def revoke(self, token_id: str, *, actor: str | None = None) -> ApiToken:
        """Revoke a token for good (ValueError naming the id when no active token has it);
        returns its record. Recorded in the audit trail."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.API_TOKEN_REVOKED, actor, token_id):
            if not engine.api_tokens.revoke(token_id):
                known = engine.api_tokens.get(token_id)
                raise ValueError(f"API token {token_id} is already revoked" if known else
                                 f"there is no API token {token_id}; `memsys tokens list` shows them")
        return engine.api_tokens.get(token_id)  # type: ignore[return-value]

    # Asked by the service before it knows who is calling: the answer is the caller.
    @action(VIEWER, "checking an API token")
    def authenticate(self, token: str) -> ApiToken | None:
        """The active token `token` is (its last use recorded), or None."""
        tokens = self._engine.api_tokens
        record = tokens.find(token) if token else None
        if record is not None:
            last = record.last_used_at.timestamp() if record.last_used_at else 0.0
            if time.time() - last > _TOUCH_SECONDS:
                tokens.touch(record.token_id)
        return record

    @action(VIEWER, "checking whether API tokens are in use")
    def required(self) -> bool:
        """Whether any active token exists (then every API call needs one)."""
        return self._engine.api_tokens.any_active()

"""Who may do what: three roles (viewer, operator, admin), the mapping from what a
signed-in person's ID token proves (a verified e-mail address or its domain, groups, the
provider's account id) to a role, and `AuthorizedEngine`, the engine as one user sees it:
every call is checked against that user's role where it happens, on the server, so a
hidden button or a forged rerun changes nothing. Refusals are logged (`memsys.access`)
with who tried what.
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping

from memsys.errors import JobStoreError, MemsysError

if TYPE_CHECKING:
    from memsys.config import Settings
    from memsys.engine import Engine

log = logging.getLogger(__name__)


class Role(enum.IntEnum):
    """Each role can do everything the ones below it can."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class AccessDenied(MemsysError):
    """The user's role does not allow the action; the message says which role would."""

    def __init__(self, user: "User", action: str, needed: Role) -> None:
        self.user, self.action, self.needed = user, action, needed
        super().__init__(
            f"{user.name} is signed in as {user.role.label}; {_describe(action)} needs the {needed.label} role. "
            "Ask an admin if you need it"
        )


@dataclass(frozen=True)
class User:
    """A person using memsys: a display name, the e-mail they signed in with (empty when
    sign-in is off) and their role."""

    name: str
    email: str
    role: Role

    def can(self, role: Role) -> bool:
        return self.role >= role


# Sign-in is off (a dashboard on loopback, the CLI, scripts): whoever runs it owns it.
LOCAL_ADMIN = User("local user", "", Role.ADMIN)


@dataclass(frozen=True)
class Identity:
    """What a signed-in person's ID token proves: an e-mail address only when the provider
    verified it (`email_verified: true`, or an issuer the operator trusts to verify every
    address it issues), the groups it names, and the provider's stable account id
    (`issuer|subject`)."""

    email: str
    groups: frozenset[str]
    account: str

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], verified_email_issuers: tuple[str, ...] = ()) -> "Identity":
        issuer = _issuer(claims.get("iss"))
        email = str(claims.get("email") or "").strip().lower()
        verified = claims.get("email_verified")
        if isinstance(verified, str):  # some providers send "true"
            verified = verified.strip().lower() == "true"
        if verified is None:  # the claim is absent: only an issuer the operator trusts vouches for it
            verified = bool(issuer) and issuer in {_issuer(i) for i in verified_email_issuers}
        if verified is not True:
            email = ""  # an address the provider has not verified proves nothing: anyone can type one
        groups = claims.get("groups") or ()
        groups = {str(g).strip().lower() for g in (groups if isinstance(groups, (list, tuple)) else [groups])}
        subject = str(claims.get("sub") or "").strip()
        return cls(email, frozenset(groups), f"{issuer}|{subject}" if issuer and subject else "")


def _issuer(value: Any) -> str:
    return str(value or "").strip().rstrip("/")


@dataclass(frozen=True)
class RoleMap:
    """Who gets which role. Each entry is a verified e-mail address (`ann@example.com`), a
    whole domain of verified addresses (`@example.com`), a group from the ID token's
    `groups` claim (`group:memsys-ops`) or one account of one provider
    (`sub:https://login.example.com|248289761001`: issuer, then the subject). The highest
    role that matches wins; no match means no access."""

    admins: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    verified_email_issuers: tuple[str, ...] = ()

    def role_for(self, claims: Mapping[str, Any]) -> Role | None:
        identity = Identity.from_claims(claims, self.verified_email_issuers)
        for role, entries in ((Role.ADMIN, self.admins), (Role.OPERATOR, self.operators), (Role.VIEWER, self.viewers)):
            if any(_matches(entry, identity) for entry in entries):
                return role
        return None

    @property
    def is_empty(self) -> bool:
        return not (self.admins or self.operators or self.viewers)

    @classmethod
    def from_settings(cls, settings: "Settings") -> "RoleMap":
        return cls(settings.admins, settings.operators, settings.viewers, settings.verified_email_issuers)


def _matches(entry: str, identity: Identity) -> bool:
    entry = entry.strip()
    if not entry:
        return False
    if entry.lower().startswith("sub:"):
        issuer, _, subject = entry[4:].partition("|")  # subjects may hold "|" (auth0|123); issuers do not
        return bool(identity.account and subject) and identity.account == f"{_issuer(issuer)}|{subject.strip()}"
    entry = entry.lower()
    if entry.startswith("group:"):
        return entry.removeprefix("group:") in identity.groups
    if entry.startswith("@"):
        return bool(identity.email) and identity.email.endswith(entry)
    return bool(identity.email) and identity.email == entry


def user_from_claims(claims: Mapping[str, Any], roles: RoleMap) -> User | None:
    """The signed-in person as memsys sees them, or None when no role is theirs. The
    e-mail they are known by (and audited as) is a verified one only."""
    role = roles.role_for(claims)
    if role is None:
        return None
    identity = Identity.from_claims(claims, roles.verified_email_issuers)
    name = str(claims.get("name") or identity.email or identity.account or claims.get("sub") or "someone")
    return User(name, identity.email, role)


# The role each engine call needs. A call that is not listed is refused for everyone
# (deny by default); tests/test_access.py checks that every public Engine method is here.
VIEWER_CALLS = {
    "store_status", "embedder_status", "batch_config_path", "saved_batch_config", "job", "require_job",
    "recent_jobs", "failed_items", "iter_failed_items", "failed_counts", "failed_items_csv", "job_warnings", "batches", "errors_by_type", "metrics", "follow", "wait", "search", "browse",
    "count", "get_memory", "cache_dir", "cache_info", "task", "start_task", "is_structured", "columns_in",
    "cluster_status", "browse_page", "documents", "export", "server_status", "collections", "needs_reembed",
    "weaviate_problems",
}
OPERATOR_CALLS = {
    "preview", "start_preview", "cancel_task", "new_spool", "spool_upload", "spool_paths", "create_import", "start_import", "run", "cancel",
    "resume", "retry_failed", "warm_up", "check_embedding_endpoints", "record_import_started",
    # Reads only, but asks every node for every memory of a job: an operator's check.
    "verify_job",
    # Writes memories back from an export, as an import would.
    "restore",
}
ADMIN_CALLS = {
    "delete", "delete_job", "clear_cache", "save_batch_config", "check_connections",
    # Stopping (or starting) the shared memsys server affects every user of the data directory.
    "server_start", "server_stop",
    # A re-embed moves what every search uses; dropping a collection deletes its memories.
    "create_reembed", "start_reembed", "drop_collection",
    # The Logs page and the audit trail; settings changes are recorded from the admin's Settings page.
    "read_logs", "follow_logs", "log_components", "audit_trail", "record_settings_change", "record_refusal",
}
# Calls that record who made them in the audit trail (`actor=`).
AUDITED_CALLS = {"cancel", "resume", "retry_failed", "delete", "delete_job", "check_cache", "clear_cache",
                 "record_settings_change", "record_import_started", "start_import", "start_reembed", "drop_collection",
                 "restore", "server_start", "server_stop"}
# Calls whose role depends on their arguments.
ARGUMENT_CALLS: dict[str, Callable[..., Role]] = {
    # A check is an operator's; a repair (fix=True) removes entries and is an admin's.
    "check_cache": lambda fix=False, **_: Role.ADMIN if fix else Role.OPERATOR,
}
# What each page is for, and the least role that may open it.
PAGE_ROLES = {
    "home": Role.VIEWER, "memories": Role.VIEWER, "metrics": Role.VIEWER, "cache": Role.VIEWER,
    "import": Role.OPERATOR, "batch_settings": Role.ADMIN, "settings": Role.ADMIN, "logs": Role.ADMIN,
}


def role_needed(action: str, kwargs: Mapping[str, Any] | None = None) -> Role | None:
    """The role a call needs; None when the call is not one a user may make at all."""
    if action in ARGUMENT_CALLS:
        return ARGUMENT_CALLS[action](**dict(kwargs or {}))
    if action in VIEWER_CALLS:
        return Role.VIEWER
    if action in OPERATOR_CALLS:
        return Role.OPERATOR
    if action in ADMIN_CALLS:
        return Role.ADMIN
    return None


_DESCRIPTIONS = {
    "delete": "deleting memories", "delete_job": "deleting memories", "restore": "restoring memories",
    "clear_cache": "clearing the cache", "check_cache": "this cache action",
    "save_batch_config": "saving batch settings", "check_connections": "checking the connections",
    "start_import": "starting an import", "create_import": "starting an import", "preview": "previewing an import",
    "start_preview": "previewing an import", "cancel_task": "cancelling a task",
    "cancel": "cancelling an import", "resume": "resuming an import", "retry_failed": "retrying failed items",
    "warm_up": "warming up the cache", "spool_upload": "uploading files",
    "check_embedding_endpoints": "checking the embedding endpoints",
    "create_reembed": "re-embedding the memories", "start_reembed": "re-embedding the memories",
    "drop_collection": "dropping a collection",
}


def _describe(action: str) -> str:
    return _DESCRIPTIONS.get(action, action.replace("_", " "))


class AuthorizedEngine:
    """The engine as one user may use it: the same methods, each checked against the
    user's role before it runs. Imports record who started them."""

    def __init__(self, engine: "Engine", user: User, on_refusal: Callable[[User, str], None] | None = None) -> None:
        self._engine = engine
        self.user = user
        self._on_refusal = on_refusal

    @property
    def actor(self) -> str:
        """How the audit trail names this user."""
        return self.user.email or self.user.name

    def can(self, action: str, **kwargs: Any) -> bool:
        """Whether this user may make the call (for drawing only what they may use)."""
        needed = role_needed(action, kwargs)
        return needed is not None and self.user.can(needed)

    def require(self, role: Role, action: str) -> None:
        """Refuse (AccessDenied, logged) unless the user has `role`; for checks that are not
        an engine call, such as changing this session's connection settings."""
        if not self.user.can(role):
            self._refuse(action, role)

    def _refuse(self, action: str, needed: Role) -> None:
        log.warning("refused: %s (%s, %s) tried %s, which needs %s", self.user.name, self.user.email or "no e-mail",
                    self.user.role.label, action, needed.label)
        try:
            self._engine.record_refusal(action, actor=self.actor,
                                        reason=f"signed in as {self.user.role.label}; {action} needs {needed.label}")
        except JobStoreError as e:  # the refusal stands whether or not it could be recorded
            log.error("the refusal of %s to %s could not be recorded: %s", action, self.actor, e)
        if self._on_refusal is not None:
            self._on_refusal(self.user, action)
        raise AccessDenied(self.user, action, needed)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._engine, name)
        if not callable(target):
            needed = role_needed(name)
            if needed is None or not self.user.can(needed):
                self._refuse(name, needed or Role.ADMIN)
            return target

        def checked(*args: Any, **kwargs: Any) -> Any:
            needed = role_needed(name, kwargs)
            if needed is None or not self.user.can(needed):
                self._refuse(name, needed or Role.ADMIN)
            if name in ("create_import", "start_import", "create_reembed", "start_reembed"):
                kwargs.setdefault("started_by", self.actor)
            if name in AUDITED_CALLS:
                kwargs.setdefault("actor", self.actor)
            return target(*args, **kwargs)

        checked.__name__ = name
        return checked

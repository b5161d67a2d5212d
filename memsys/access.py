"""Who may do what: three roles (viewer, operator, admin), the mapping from what a
signed-in person's ID token proves (a verified e-mail address or its domain, groups, the
provider's account id) to a role, the `Action` record each engine call declares on itself
(its role, whether it is audited, how a refusal describes it), and `AuthorizedEngine`, the
engine as one user sees it: every call is checked against that user's role where it
happens, on the server, so a hidden button or a forged rerun changes nothing. Refusals are
logged (`memsys.access`) with who tried what.
"""
from __future__ import annotations

import enum
import functools
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generic, Mapping, TypeVar, overload

from memsys.errors import JobStoreError, MemsysError

if TYPE_CHECKING:
    from memsys.config import Settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
G = TypeVar("G")


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

    def __init__(self, user: "User", action: str, needed: Role, description: str = "") -> None:
        self.user, self.action, self.needed = user, action, needed
        super().__init__(
            f"{user.name} is signed in as {user.role.label}; {description or action} needs the {needed.label} role. "
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


@dataclass(frozen=True)
class Action:
    """What one engine call is, declared once on the call itself (`@action(...)`): the
    least role that may make it, how a refused user is told what they tried, the audit
    trail's name for it when it is audited (a refusal is recorded under that name too),
    and, when its arguments decide the role, the rule that does."""

    role: Role
    description: str
    audit: str = ""
    role_for: Callable[..., Role] | None = None

    def needs(self, arguments: Mapping[str, Any]) -> Role:
        return self.role_for(**arguments) if self.role_for is not None else self.role


def action(role: Role, description: str, *, audit: str = "",
           role_for: Callable[..., Role] | None = None) -> Callable[[F], F]:
    """Attach the call's `Action` record. Under `@property` or `@staticmethod`, as the
    innermost decorator. A call without one is refused to every user."""

    def attach(call: F) -> F:
        call.__action__ = Action(role, description, audit, role_for)  # type: ignore[attr-defined]
        return call

    return attach


def action_of(member: Any) -> Action | None:
    """The record of a class member: a method, a property or a static method."""
    if isinstance(member, property):
        member = member.fget
    elif isinstance(member, staticmethod):
        member = member.__func__
    return getattr(member, "__action__", None)


class CallGroup(Generic[G]):
    """One group of an engine's calls (`engine.jobs`, `engine.cache`, ...): built on first
    use for each engine, and readable from the engine's class, so every call's record can
    be listed without an engine."""

    def __init__(self, calls: type[G]) -> None:
        self.calls = calls
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, engine: None, owner: type) -> "CallGroup[G]": ...

    @overload
    def __get__(self, engine: object, owner: type) -> G: ...

    def __get__(self, engine: object | None, owner: type) -> "CallGroup[G] | G":
        if engine is None:
            return self
        # Stored under the same name, the group shadows this descriptor from then on.
        made = engine.__dict__.get(self.name)
        if made is None:
            made = engine.__dict__[self.name] = self.calls(engine)  # type: ignore[call-arg]
        return made


@functools.cache
def action_table(engine_type: type) -> dict[str, Action]:
    """Every call of every group of `engine_type` that has a record, as "group.call"."""
    table = {}
    for group in vars(engine_type).values():
        if isinstance(group, CallGroup):
            for name, member in vars(group.calls).items():
                record = action_of(member)
                if record is not None and not name.startswith("_"):
                    table[f"{group.name}.{name}"] = record
    return table


# Arguments of an audited call that name who acts: the signed-in user unless given.
_ACTOR_ARGUMENTS = ("started_by", "actor")


class AuthorizedEngine:
    """The engine as one user may use it: the same groups and calls (`engine.jobs.cancel`),
    each checked against the user's role before it runs, by its record; a call with no
    record, and anything that is not a group's call, is refused to everyone. Audited calls
    record who made them, and imports who started them."""

    def __init__(self, engine: Any, user: User, on_refusal: Callable[[User, str], None] | None = None) -> None:
        self._engine = engine
        self.user = user
        self._on_refusal = on_refusal
        self._actions = action_table(type(engine))

    @property
    def actor(self) -> str:
        """How the audit trail names this user."""
        return self.user.email or self.user.name

    def can(self, call: str, **arguments: Any) -> bool:
        """Whether this user may make the call "group.call" (for drawing only what they may use)."""
        record = self._actions.get(call)
        return record is not None and self.user.can(record.needs(arguments))

    def require(self, role: Role, action: str) -> None:
        """Refuse (AccessDenied, logged) unless the user has `role`; for checks that are not
        an engine call, such as changing this session's connection settings."""
        if not self.user.can(role):
            self._refuse(action, role, action)

    def _check(self, call: str, arguments: Mapping[str, Any]) -> None:
        record = self._actions.get(call)
        needed = record.needs(arguments) if record is not None else None
        if needed is None or not self.user.can(needed):
            self._refuse(call, needed or Role.ADMIN, record.description if record else call)

    def _refuse(self, call: str, needed: Role, description: str) -> None:
        log.warning("refused: %s (%s, %s) tried %s, which needs %s", self.user.name, self.user.email or "no e-mail",
                    self.user.role.label, call, needed.label)
        try:
            reason = f"signed in as {self.user.role.label}; {call} needs {needed.label}"
            self._engine.audit.record_refusal(call, actor=self.actor, reason=reason)
        except JobStoreError as e:  # the refusal stands whether or not it could be recorded
            log.error("the refusal of %s to %s could not be recorded: %s", call, self.actor, e)
        if self._on_refusal is not None:
            self._on_refusal(self.user, call)
        raise AccessDenied(self.user, call, needed, description)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if not isinstance(inspect.getattr_static(type(self._engine), name, None), CallGroup):
            self._refuse(name, Role.ADMIN, name)  # the engine's own parts: no user reaches them
        checked = _CheckedGroup(self, name, getattr(self._engine, name))
        self.__dict__[name] = checked
        return checked


class _CheckedGroup:
    """One group of the engine as `AuthorizedEngine`'s user may use it."""

    def __init__(self, owner: AuthorizedEngine, name: str, calls: Any) -> None:
        self._owner, self._name, self._calls = owner, name, calls

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        call = f"{self._name}.{name}"
        member = inspect.getattr_static(type(self._calls), name, None)
        record = action_of(member)
        if record is None:
            self._owner._check(call, {})  # no record: refused to everyone
        if isinstance(member, property):
            self._owner._check(call, {})
            return getattr(self._calls, name)
        target = getattr(self._calls, name)
        signature = inspect.signature(target)
        stamped = [a for a in _ACTOR_ARGUMENTS if a in signature.parameters] if record.audit else []
        owner = self._owner

        def checked(*args: Any, **kwargs: Any) -> Any:
            try:
                arguments = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:  # the call itself will say what is wrong, once it may be made
                arguments = kwargs
            owner._check(call, arguments)
            for argument in stamped:
                kwargs.setdefault(argument, owner.actor)
            return target(*args, **kwargs)

        checked.__name__ = name
        return checked

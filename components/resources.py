"""The process-wide resources behind every page, and this browser session's choices.

One Engine (memory system, job store, job runner) is built per process for each distinct
set of settings and shared by every session using those settings, so reruns, page
switches, several tabs and closed tabs never stop, duplicate or lose an import. An engine
for a session's own embedding settings reaches the same embedded Weaviate: the store
connects to one that is already running on its ports."""
from __future__ import annotations

import logging

import streamlit as st

from components.explain import settings_secrets
from components.session_settings import SECRET_FIELDS, fingerprint, load_settings
from memsys.access import LOCAL_ADMIN, AuthorizedEngine, Identity, RoleMap, User, user_from_claims
from memsys.config import ConfigError, Settings, url_password
from memsys.engine import Engine

OVERRIDES = "settings_overrides"
log = logging.getLogger("memsys.dashboard")


def session_overrides() -> dict[str, str]:
    """This session's changes to the settings (Settings page), field -> value."""
    return st.session_state.setdefault(OVERRIDES, {})


def current_settings() -> Settings:
    return load_settings(session_overrides())


def current_secrets() -> list[str]:
    """Secrets to scrub from anything shown; includes keys typed into this session."""
    overrides = session_overrides()
    typed = [v for k, v in overrides.items() if k in SECRET_FIELDS and v]
    typed += [p for p in (url_password(overrides.get("base_url")), url_password(overrides.get("weaviate_url"))) if p]
    try:
        loaded = settings_secrets(Settings.load())
    except ConfigError:
        loaded = []  # settings that do not load: the error names a setting, not a key
    return typed + loaded


@st.cache_resource(show_spinner=False, on_release=lambda engine: engine.close())
def _engine_for(key: str, _settings: Settings) -> Engine:
    return Engine.from_settings(_settings, program="dashboard")


_LOOPBACK = ("127.", "localhost", "::1", "[::1]")


def served_openly() -> bool:
    """True when the dashboard listens on an address other machines can reach."""
    address = str(st.get_option("server.address") or "")
    return not address.startswith(_LOOPBACK)


def sign_in_configured() -> bool:
    """Sign-in is on when secrets.toml has an [auth] section (Streamlit's st.login)."""
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets file at all
        return False


def current_user() -> User:
    """Who uses this session. With sign-in on: the signed-in person with the role the
    server's settings give them; a visitor who has not signed in, or has no role, gets the
    sign-in or refusal page and this run ends there. With sign-in off (the dashboard on
    loopback only): the local user, an admin."""
    if not sign_in_configured():
        return LOCAL_ADMIN
    if not st.user.is_logged_in:
        _sign_in_page()
        st.stop()
    claims = st.user.to_dict()
    roles = RoleMap.from_settings(Settings.load())  # the server's own settings, never a session's
    user = user_from_claims(claims, roles)
    if user is None:
        identity = Identity.from_claims(claims, roles.verified_email_issuers)
        log.warning("refused sign-in: %s (account %s, e-mail %s) has no role", claims.get("email") or "no e-mail",
                    identity.account or "unknown", "verified" if identity.email else "not verified")
        _no_role_page(str(claims.get("email") or claims.get("name") or "this account"), identity.account)
        st.stop()
    return user


def _sign_in_page() -> None:
    st.title("memsys")
    st.markdown("Sign in to see and import memories.")
    st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login)


def _no_role_page(who: str, account: str) -> None:
    """The refusal says what gives a role, never which rule this account missed."""
    st.title("memsys")
    st.error(f"{who} is signed in but has no role in memsys. Ask an admin to add you.", icon=":material/block:")
    st.markdown(
        "memsys gives roles to the accounts its admins list: e-mail addresses and domains your sign-in "
        "provider has verified, groups it names, or single accounts. An admin can add this account with "
        "the entry:"
    )
    st.code(f"sub:{account}" if account else "(the provider sent no account id)", language=None)
    st.button("Sign out", on_click=st.logout)


def engine() -> AuthorizedEngine:
    """The engine as this session's user may use it: every call is checked against their role."""
    settings = current_settings()
    return AuthorizedEngine(_engine_for(fingerprint(settings), settings), current_user())

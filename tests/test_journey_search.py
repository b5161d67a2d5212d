"""A newcomer's first steps in a real browser (Debian's Chromium, Playwright) against
`streamlit run app.py` with its own embedded Weaviate and the local embedder: Home on an
empty store offers the next step before any server detail; after an import, a search
marks its words, and a keyword search for a word one memory holds shows that one and
says nothing else holds it; Batch settings name every problem at once by its label; no
page shows a traceback or a server path.

One dashboard for the module; the tests run in the file's order (the first looks at the
empty store, the `imported` fixture then imports five short articles with the CLI)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import run_memsys
from dashboard_support import DashboardServer, home_page, serve_dashboard, settle
from dashboard_support import browser  # noqa: F401  (the shared fixture)
from test_glossary import navigation_pages

LONG = 180_000  # ms: the first visit starts embedded Weaviate and loads the model
ARTICLES = {
    "zirconium.md": "# Zirconium\n\nZirconium is a chemical element with the symbol Zr. It is a lustrous, grey-white, "
                    "strong transition metal that resembles hafnium and, to a lesser extent, titanium.\n",
    "titanium.md": "# Titanium\n\nTitanium is a chemical element with the symbol Ti. It is a lustrous transition metal "
                   "with a silver colour, low density and high strength, resistant to corrosion in sea water.\n",
    "harbour.md": "# Harbour\n\nA harbour is a sheltered body of water where ships, boats and barges can be docked.\n",
    "cedar.md": "# Cedar\n\nCedrus is a genus of coniferous trees in the plant family Pinaceae, native to the "
                "mountains of the western Himalayas and the Mediterranean region.\n",
    "river.md": "# River\n\nA river is a natural flowing watercourse, usually freshwater, flowing towards an ocean, "
                "sea, lake or another river.\n",
}
# What a page must never show: a Python traceback or a path on the server.
SERVER_DETAILS = re.compile(r"Traceback \(most recent call last\)|File \"/|/tmp/|/work/|site-packages")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    yield from serve_dashboard(tmp_path_factory, "journey-search")


@pytest.fixture
def page(browser: Browser, server: DashboardServer) -> Iterator[Page]:
    with home_page(browser, server, height=1000) as opened:
        settle(opened)
        yield opened


@pytest.fixture(scope="module")
def imported(server: DashboardServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("articles")
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    done = run_memsys(["import", str(folder), "--project", "journey", "--repo", "articles", "--agent", "newcomer"],
                      server.env)
    assert done.returncode == 0, done.stdout + done.stderr
    return "journey"


def open_page(page: Page, path: str) -> None:
    page.goto(page.url.split("?")[0].rsplit("/", 1)[0] + "/" + path)
    settle(page)


def search(page: Page, words: str, match_by: str) -> None:
    open_page(page, "memories")
    page.get_by_label("Search for", exact=True).fill(words)
    page.get_by_test_id("stSelectbox").filter(has_text="Match by").click()
    page.get_by_role("option", name=match_by, exact=True).click()
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text(re.compile(r"(found|contains?|No memory contains)"))).not_to_have_count(0, timeout=LONG)
    settle(page)


def test_home_on_an_empty_store_offers_the_import_before_any_server_detail(page: Page) -> None:
    step = page.get_by_role("button", name="Import documents")
    expect(step).to_be_visible()
    expect(page.get_by_text("Nothing has been imported yet")).to_be_visible()
    operators = page.get_by_test_id("stExpander").filter(has_text="For operators")
    expect(operators).to_be_visible()
    assert step.bounding_box()["y"] < operators.bounding_box()["y"]  # type: ignore[index]
    expect(page.get_by_text("Weaviate nodes")).not_to_be_visible()  # folded until an operator opens it
    operators.get_by_text("For operators").click()
    expect(page.get_by_text("Weaviate nodes")).to_be_visible()
    step.click()
    expect(page.get_by_role("heading", level=1, name="Import", exact=True)).to_be_visible(timeout=LONG)
    expect(page.get_by_text("drag files (or a zip of them) here")).to_be_visible()


def test_a_keyword_search_for_a_word_one_memory_holds_shows_that_one(page: Page, imported: str) -> None:
    search(page, "zirconium", "keywords only")
    expect(page.get_by_text('1 memory contains "zirconium"; no other memory does')).to_be_visible()
    hits = page.get_by_text(re.compile(r"^match \d+%"))
    expect(hits).to_have_count(1)
    expect(hits).to_contain_text(re.compile(r"^match 100% · contains zirconium · [^·]*zirconium\.md"))
    expect(page.get_by_text("titanium.md")).to_have_count(0)


def test_a_search_marks_the_words_it_found(page: Page, imported: str) -> None:
    search(page, "the symbol of titanium", "meaning and keywords")
    summary = page.get_by_text(re.compile(r"memories found, best match first"))
    expect(summary).to_contain_text('"symbol" and "titanium"')
    marked = page.locator("strong").filter(has_text=re.compile(r"^(Titanium|titanium|symbol)$"))
    expect(marked.first).to_be_visible()
    assert {t.lower() for t in marked.all_inner_texts()} <= {"titanium", "symbol"}
    assert "titanium" in {t.lower() for t in marked.all_inner_texts()}
    # One scale in every mode: the best hit is 100%, the rest below it.
    shares = [int(m) for m in re.findall(r"match (\d+)%", page.get_by_test_id("stMain").inner_text())]
    assert shares[0] == 100 and all(0 <= s <= 100 for s in shares), shares
    expect(page.get_by_text(re.compile(r"^match \d+% · contains (symbol and )?titanium"))).not_to_have_count(0)


def test_batch_settings_name_every_problem_at_once_by_its_label(page: Page) -> None:
    open_page(page, "batch_settings")
    expect(page.get_by_text("Gentler on the provider")).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Smallest batch")).not_to_be_visible()  # folded: an expert's knob
    for label, value in (("Retries per batch", "-2"), ("First wait (seconds)", "100")):
        field = page.get_by_role("spinbutton", name=label)
        field.fill(value)
        field.press("Tab")
    page.get_by_text("Expert settings").click()
    smallest = page.get_by_role("spinbutton", name="Smallest batch")
    smallest.fill("300")
    smallest.press("Tab")
    page.get_by_role("button", name="Use these settings").click()
    problems = page.get_by_test_id("stAlert").filter(has_text="cannot be used yet")
    expect(problems).to_be_visible(timeout=LONG)
    text = problems.inner_text()
    assert "“Retries per batch” is -2; it must be a whole number of at least 0." in text
    assert "“Smallest batch” (300) is larger than “Largest batch” (200)." in text
    assert "“First wait (seconds)” (100.0) is larger than “Longest wait (seconds)” (60.0)." in text
    assert "max_retries" not in text and "secrets.toml" not in text and "Settings page" not in text


def test_no_page_shows_a_traceback_or_a_server_path(page: Page, server: DashboardServer, imported: str) -> None:
    for path in navigation_pages():
        open_page(page, "" if path == "pages/home.py" else Path(path).stem)
        expect(page.get_by_role("heading", level=1)).to_be_visible(timeout=LONG)
        shown = page.get_by_test_id("stMain").inner_text()
        if path == "pages/settings.py":  # an admin's page: the data folder is a setting they chose
            shown = shown.replace(server.env["MEMSYS_DATA_DIR"], "(the data folder)")
        assert not SERVER_DETAILS.search(shown), (path, SERVER_DETAILS.search(shown))

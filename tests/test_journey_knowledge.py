"""A newcomer's journey through knowledge bases and documents, in Chromium against the real
dashboard (embedded Weaviate, the local embedder): the first import goes into a new
knowledge base picked through "New…", which is then listed with its documents, memories
and last import; typing the name in another case picks the same knowledge base (and a
"New…" of it is refused, offering the existing one); a document opens to its memories in
order; an edited document re-imported from its view shows its new content, the document
count unchanged; a document is removed after a confirmation. No page shows a traceback.

The tests share one dashboard and one first import (made by the `encyclopedia` fixture
through the Import page, as a newcomer would)."""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard_support import DashboardServer, home_page, serve_dashboard, settle
from dashboard_support import browser  # noqa: F401  (the shared fixture)

LONG = 180_000  # ms: the first visit starts Weaviate and loads the embedder
_PLACES = ["harbour", "quarry", "foundry", "workshop", "laboratory", "mine", "refinery", "museum"]


def paragraph(lead: str, subject: str) -> str:
    """A paragraph of about 300 model tokens opening with `lead`: three of them make a
    document of several memories (the local model's chunks hold 400 tokens)."""
    return " ".join([lead] + [f"Note {i} about {subject}: a sample was weighed at the {_PLACES[i % 8]} and the "
                              f"result, {i * 37 % 101} grams, was written into the ledger." for i in range(14)])


LEADS = ["Zirconium is a lustrous grey transition metal named after the mineral zircon.",
         "Zirconium resists corrosion in seawater, so pumps and valves are made of it.",
         "Zirconium oxide is white and hard and is used for ceramic knives and crowns."]
ZIRCONIUM = [paragraph(lead, subject) for lead, subject in zip(LEADS, ("zircon", "pumps", "ceramics"))]
TITANIUM = ["Titanium is light and strong, and aircraft frames are built from it.",
            "Titanium implants join with bone, so surgeons use them for new hips."]
EDITED = [ZIRCONIUM[0], ZIRCONIUM[1],
          paragraph("Zirconium alloys clad the uranium fuel rods of nuclear reactors.", "fuel rods")]


def markdown(paragraphs: list[str], title: str) -> bytes:
    return (f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n").encode("utf-8")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    yield from serve_dashboard(tmp_path_factory, "journey-knowledge")


@pytest.fixture
def page(browser: Browser, server: DashboardServer) -> Iterator[Page]:
    with home_page(browser, server, ready=None) as opened:
        settle(opened)
        yield opened
        no_traceback(opened)


def no_traceback(page: Page) -> None:
    settle(page)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text(re.compile("Traceback|File \""))).to_have_count(0)


def go(page: Page, name: str) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=name, exact=True)).to_be_visible(timeout=LONG)
    settle(page)


def choose(page: Page, label: str, option: str | re.Pattern[str]) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option).click()
    settle(page)


def type_and_enter(page: Page, label: str, text: str) -> None:
    page.get_by_label(label, exact=True).fill(text)
    page.keyboard.press("Enter")
    settle(page)


def upload(page: Page, files: dict[str, bytes], test_id: str = "stFileUploaderDropzoneInput") -> None:
    page.get_by_test_id(test_id).last.set_input_files(
        [{"name": n, "mimeType": "text/markdown", "buffer": b} for n, b in files.items()])


def open_knowledge_base(page: Page, name: str) -> None:
    go(page, "Knowledge bases")
    choose(page, "Open a knowledge base", name)
    expect(page.get_by_role("heading", level=2, name=name)).to_be_visible()


def open_document(page: Page, name: str) -> None:
    choose(page, "Open a document", re.compile(f"^{re.escape(name)}: "))
    expect(page.get_by_role("heading", level=3, name=name)).to_be_visible()


@pytest.fixture(scope="module")
def encyclopedia(browser: Browser, server: DashboardServer) -> str:
    """The newcomer's first import: two files into a new knowledge base, "encyclopedia",
    picked through "New…" on the Import page; returns its name once both are ready."""
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(server.address())
    expect(page.get_by_role("heading", level=1)).to_be_visible(timeout=LONG)
    go(page, "Import")
    upload(page, {"zirconium.md": markdown(ZIRCONIUM, "Zirconium"), "titanium.md": markdown(TITANIUM, "Titanium")})
    expect(page.get_by_role("button", name="Remove", exact=True)).to_have_count(2, timeout=30_000)
    settle(page)
    choose(page, "Knowledge base", "New…")
    type_and_enter(page, "Name of the new knowledge base", "encyclopedia")
    expect(page.get_by_text("A new knowledge base, “encyclopedia”")).to_be_visible()
    page.get_by_role("button", name="Start import").click()
    expect(page.get_by_role("heading", name=re.compile("Import(ing)? (of )?zirconium.md and titanium.md"))).to_be_visible(
        timeout=60_000)
    no_traceback(page)
    go(page, "Knowledge bases")
    # The documents section follows the import until both documents are ready.
    expect(page.get_by_text("Documents: 2 ready")).to_be_visible(timeout=LONG)
    no_traceback(page)
    context.close()
    return "encyclopedia"


def test_the_first_import_lists_the_new_knowledge_base_with_its_documents_and_last_import(
        page: Page, encyclopedia: str) -> None:
    go(page, "Knowledge bases")
    table = page.get_by_test_id("stTable")
    expect(table).to_contain_text("encyclopedia")
    expect(page.get_by_role("heading", level=2, name=encyclopedia)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^2 documents, \d+ memories; last import .* \(completed\)\.$"))).to_be_visible()
    expect(page.get_by_text("Documents: 2 ready")).to_be_visible()
    # The next import starts from what this one used (remembered on the server, so a
    # new browser session gets it too).
    go(page, "Import")
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("encyclopedia")


def test_typing_the_name_in_another_case_picks_the_existing_knowledge_base(page: Page, encyclopedia: str) -> None:
    go(page, "Import")
    page.get_by_label("Knowledge base", exact=True).click()
    page.keyboard.type("Encyclopedia ")
    page.keyboard.press("Enter")
    settle(page)
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("encyclopedia")
    expect(page.get_by_text(re.compile(r"^2 documents, \d+ memories; last import"))).to_be_visible()
    # A new knowledge base of the same name in other capitals is refused, offering the one there is.
    choose(page, "Knowledge base", "New…")
    type_and_enter(page, "Name of the new knowledge base", " ENCYCLOPEDIA")
    expect(page.get_by_text(re.compile("A knowledge base called “encyclopedia” already exists"))).to_be_visible()
    page.get_by_role("button", name="Use encyclopedia").click()
    settle(page)
    expect(page.get_by_label("Knowledge base", exact=True)).to_have_value("encyclopedia")
    go(page, "Knowledge bases")
    expect(page.get_by_test_id("stTable").get_by_text(re.compile("^encyclopedia$", re.I))).to_have_count(1)


def test_a_document_opens_to_its_memories_in_order(page: Page, encyclopedia: str) -> None:
    open_knowledge_base(page, encyclopedia)
    open_document(page, "zirconium.md")
    expect(page.get_by_text(re.compile(r"^ready · [3-9] memories · part main"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Memory 1 · zirconium\.md"))).to_be_visible()
    settle(page)
    text = " ".join(page.get_by_test_id("stMain").inner_text().split())
    positions = [text.find(lead) for lead in LEADS]
    assert -1 not in positions and positions == sorted(positions), (positions, text[:3000])


def test_an_edited_document_reimported_from_its_view_shows_its_new_content(page: Page, encyclopedia: str) -> None:
    open_knowledge_base(page, encyclopedia)
    open_document(page, "zirconium.md")
    page.get_by_text("Re-import this document").click()
    upload(page, {"zirconium-edited.md": markdown(EDITED, "Zirconium")})
    button = page.get_by_role("button", name="Re-import", exact=True)
    expect(button).to_be_enabled(timeout=30_000)
    button.click()
    expect(page.get_by_text(re.compile(r"^Re-imported: \d+ memories written"))).to_be_visible(timeout=LONG)
    expect(page.get_by_text("Zirconium alloys clad the uranium fuel rods").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("ceramic knives and crowns")).to_have_count(0)
    expect(page.get_by_text("Documents: 2 ready")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^2 documents, \d+ memories"))).to_be_visible()


def test_a_document_is_removed_after_a_confirmation(page: Page, encyclopedia: str) -> None:
    open_knowledge_base(page, encyclopedia)
    open_document(page, "titanium.md")
    page.get_by_text("Remove this document", exact=True).first.click()
    remove = page.get_by_role("button", name="Remove this document")
    expect(remove).to_be_disabled()
    page.get_by_text(re.compile(r"^Yes, remove titanium\.md and its \d+ memor")).click()
    expect(remove).to_be_enabled()
    remove.click()
    expect(page.get_by_text(re.compile(r"^Removed titanium\.md \(\d+ memor"))).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Documents: 1 ready, 1 removed")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^1 document, \d+ memor(y|ies);"))).to_be_visible()

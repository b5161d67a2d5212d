"""A newcomer's steps in Chromium, asserting what the screen says: three notes imported,
the same three again (the preview and the result say there is nothing to do and no cost,
the Cache page lists the re-import), one note edited (the preview names one changed
document and its memories, the rest unchanged), and the Metrics page: where the first
import's time went, and "nothing to embed or write" (no empty chart) for the re-import.
No page shows a traceback."""
from __future__ import annotations

import re
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard_support import DashboardServer, home_page, serve_dashboard, settle
from dashboard_support import browser  # noqa: F401  (the shared fixture)
from test_dashboard_e2e import LONG, fill_fields, go, shoot, upload

PROJECT = "journey-preview"
NOTES = {
    "harbor.md": "The harbor master opens the north gate at six every morning.\n\nBoats pay the mooring fee at the office.",
    "cedar.md": "Cedar shingles on the boathouse are replaced every twelve years.\n\nSpare shingles are kept in the loft.",
    "garden.md": "The community garden waters its beds on Tuesdays and Fridays.\n\nCompost goes in the bins behind the shed.",
}
EDITED_CEDAR = "Cedar shingles on the boathouse are now replaced every ten years.\n\nSpare shingles are kept in the loft."
NOTHING_TO_DO = "Nothing to do: all 3 memories are already stored and unchanged. No provider calls, no cost."


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    yield from serve_dashboard(tmp_path_factory, "journey-preview")


@pytest.fixture(scope="module")
def page(browser: Browser, server: DashboardServer) -> Iterator[Page]:
    with home_page(browser, server) as opened:
        yield opened


def files(notes: dict[str, str]) -> list[tuple[str, bytes, str]]:
    return [(name, text.encode("utf-8"), "text/markdown") for name, text in notes.items()]


def no_traceback(page: Page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    text = page.get_by_test_id("stMain").inner_text()
    assert "Traceback" not in text and 'File "/' not in text, text[:2000]


def preview(page: Page, notes: dict[str, str]) -> None:
    """Add the files, say whose they are, and press Preview; wait for its answer."""
    upload(page, files(notes))
    fill_fields(page, PROJECT)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_text("Estimated time", exact=True)).to_be_visible(timeout=120_000)
    settle(page)
    no_traceback(page)


def start_and_finish(page: Page) -> None:
    page.get_by_role("button", name="Start import").click()
    expect(page.get_by_role("button", name="Start another import")).to_be_visible(timeout=LONG)
    no_traceback(page)


def another(page: Page) -> None:
    page.get_by_role("button", name="Start another import").click()
    expect(page.get_by_text("1. Files")).to_be_visible(timeout=60_000)
    settle(page)


def metrics_of(page: Page, option: int) -> None:
    """The Metrics page's "One import" tab for the `option`-th import (newest first)."""
    go(page, "Metrics")
    settle(page)
    page.get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option").nth(option).click()
    settle(page)
    no_traceback(page)


def test_a_reimport_of_unchanged_files_says_nothing_to_do_and_costs_nothing(page: Page) -> None:
    go(page, "Import")
    preview(page, NOTES)
    expect(page.get_by_text("3 new documents (3 memories).")).to_be_visible()
    # No import has run here yet: the estimate says so rather than guessing.
    expect(page.get_by_text(re.compile("no estimate yet"))).to_be_visible()
    start_and_finish(page)
    expect(page.get_by_text(re.compile(r"Import finished in .*: 3 written"))).to_be_visible()
    another(page)

    preview(page, NOTES)
    expect(page.get_by_text(NOTHING_TO_DO)).to_be_visible()
    expect(page.get_by_text(re.compile(r"Estimated time: about "))).to_be_visible()  # measured by the first import
    shoot(page, "journey-preview-nothing-to-do")
    start_and_finish(page)
    expect(page.get_by_text(re.compile(r"Import finished in .*\. " + re.escape(NOTHING_TO_DO)))).to_be_visible()
    expect(page.get_by_text("with failures")).to_have_count(0)
    shoot(page, "journey-preview-nothing-done")
    another(page)

    go(page, "Cache")
    settle(page)
    no_traceback(page)
    per_import = page.get_by_test_id("stDataFrame").nth(1)
    expect(per_import).to_contain_text("$0 (no provider calls)")  # the re-import, listed with its cost
    expect(per_import).to_contain_text("3 documents: harbor.md, cedar.md and 1 more")


def test_an_edited_document_is_previewed_as_one_changed_document(page: Page) -> None:
    go(page, "Import")
    preview(page, {**NOTES, "cedar.md": EDITED_CEDAR})
    expect(page.get_by_text("1 changed document (1 memory to write, 1 stored memory it no longer has to remove) "
                            "and 2 unchanged documents (2 memories already stored, left as they are).")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Changed: cedar\.md"))).to_be_visible()
    shoot(page, "journey-preview-edited")
    remove = page.get_by_role("button", name="Remove", exact=True)
    for left in range(len(NOTES) - 1, -1, -1):  # leave the form empty for the next step
        for _ in range(3):  # a click during the rerun of the one before can be lost: click again
            settle(page)
            if remove.count() == left:
                break
            remove.first.click()
            try:
                expect(remove).to_have_count(left, timeout=20_000)
                break
            except AssertionError:
                continue
        expect(remove).to_have_count(left)
    settle(page)


def test_the_metrics_say_where_the_time_went_and_that_the_reimport_did_nothing(page: Page) -> None:
    metrics_of(page, 1)  # the first import
    expect(page.get_by_role("heading", name="Where the time went")).to_be_visible()
    for stage in ("Total time", "Reading", "Checking", "Embedding", "Writing", "Waiting"):
        expect(page.get_by_test_id("stMetricLabel").filter(has_text=re.compile(f"^{stage}$"))).to_have_count(1)
    expect(page.get_by_text(re.compile(r"^One batch, "))).to_be_visible()
    stages = page.get_by_test_id("stDataFrame").first
    expect(stages).to_contain_text("memories/s")
    shoot(page, "journey-preview-metrics")

    metrics_of(page, 0)  # the re-import
    expect(page.get_by_text(re.compile("^Nothing to embed or write: all 3 memories were already stored"))).to_be_visible()
    one_import = page.get_by_role("tabpanel", name="One import")
    expect(one_import).to_contain_text("Nothing to embed or write")
    expect(one_import.locator(".js-plotly-plot")).to_have_count(0)  # no empty chart
    shoot(page, "journey-preview-metrics-nothing")

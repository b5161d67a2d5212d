"""Imports people can follow, as a newcomer's steps in Chromium against `streamlit run
app.py` (embedded Weaviate, the local embedder), asserting what the screen says:

- Start an import: the progress moves before the first batch is written and sits in
  view; Cancel mid-batch stops it, says truthfully what was written and what was not
  started, nothing more is written after, and Resume imports exactly the rest.
- A file that could not be read is followed from Home's link to its reason.
- A past import is opened from the Imports page, with its documents and its log lines.

No page shows a traceback."""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import run_memsys
from dashboard_support import DashboardServer, home_page, jsonl, serve_dashboard, settle, weaviate_count
from dashboard_support import browser  # noqa: F401  (the shared fixture)
from test_dashboard_e2e import LONG, fill_fields, upload

WORDS = """
time year people way day man thing woman life child world school state family student group country
problem hand part place case week company system program question work government number night point
home water room mother area money story fact month lot right study book eye job word business issue
side kind head house service friend father power hour game line end member law car city community
name president team minute idea kid body information back parent face others level office door
health person art war history party result change morning reason research girl guy moment air
teacher force education foot boy age policy music market sense nation plan college interest death
experience effect class control care field development role effort rate heart drug show leader light
voice wife police mind price report decision son view relationship town road arm difference value
building action model season society tax director position player record paper space ground form
event official matter center couple site project activity star table need court oil situation cost
industry figure street image phone data picture practice piece land product doctor wall patient
worker news test movie north love support technology step baby computer type attention film tree
source organization hair window evidence population site
""".split()
BROKEN_PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> damaged beyond reading"
CANCELLED = re.compile(r"Import cancelled: ([\d,]+) memor(?:y|ies) written, ([\d,]+) not started")
MOVING = re.compile(r"Importing: ([\d,]+) of ([\d,]+) memories stored, ([\d,]+) more embedded")


def passages(n: int, subject: str) -> list[str]:
    """n distinct passages of about 1.1 KB, one chunk each (25 to a batch by the default
    batch settings)."""
    out = []
    for i in range(n):
        pick = random.Random(f"{subject} {i}")
        words = [pick.choice(WORDS) for _ in range(165)]
        out.append(f"Passage {i} on {subject}. " + " ".join(" ".join(words[j:j + 11]).capitalize() + "."
                                                          for j in range(0, len(words), 11)))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    yield from serve_dashboard(tmp_path_factory, "journey-imports")


@pytest.fixture
def page(browser: Browser, server: DashboardServer) -> Iterator[Page]:
    with home_page(browser, server, height=900) as opened:
        yield opened


@pytest.fixture(scope="module")
def broken_import(server: DashboardServer, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An import made with the CLI beside the dashboard: a good file and a damaged PDF."""
    context = browser.new_context()
    home = context.new_page()
    home.goto(server.address())  # the dashboard has started Weaviate; the CLI shares it
    expect(home.get_by_role("heading", name="Recent imports")).to_be_visible(timeout=LONG)
    context.close()
    folder = tmp_path_factory.mktemp("broken")
    (folder / "field-notes.jsonl").write_bytes(jsonl([f"Field note {i}: the jetty by the lagoon." for i in range(4)]))
    (folder / "broken-scan.pdf").write_bytes(BROKEN_PDF)
    result = run_memsys(["import", str(folder / "field-notes.jsonl"), str(folder / "broken-scan.pdf"),
                         "--project", "journey-broken", "--repo", "notes", "--agent", "cli"], server.env)
    assert "4 written, 0 unchanged, 1 failed" in result.stdout, result.stdout + result.stderr
    return result.stdout.split()[1]


def no_traceback(page: Page) -> None:
    text = page.locator("body").inner_text()
    assert "Traceback" not in text and 'File "/' not in text, text[:2000]


def in_view(page: Page, test_id: str) -> bool:
    return bool(page.evaluate(
        "(id) => { const e = document.querySelector(`[data-testid=${id}]`); if (!e) return false;"
        " const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }", test_id))


def test_cancel_mid_batch_says_what_was_written_and_resume_imports_exactly_the_rest(page: Page, server: DashboardServer) -> None:
    files = [(f"chapter-{n}.jsonl", jsonl(passages(30, f"chapter {n}")), "application/json") for n in (1, 2, 3)]
    page.goto(server.address("import"))
    expect(page.get_by_role("heading", level=1, name="Import", exact=True)).to_be_visible(timeout=LONG)
    upload(page, files)
    fill_fields(page, "journey-cancel")
    start = page.get_by_role("button", name="Start import")
    start.scroll_into_view_if_needed()
    start.click()
    # The bar moves while the first batches are still being embedded: nothing stored yet,
    # memories embedded. (Batches of 25; two are embedded at once before any is written.)
    bar = page.get_by_test_id("stProgress").first
    expect(bar).to_contain_text(MOVING, timeout=LONG)
    stored, total, embedded = (int(g.replace(",", "")) for g in MOVING.search(bar.inner_text()).groups())  # type: ignore[union-attr]
    assert total == 90 and stored < total and embedded > 0
    assert in_view(page, "stProgress")  # brought into view after Start
    expect(page.get_by_test_id("stTable").get_by_text(re.compile("embedding|writing|queued")).first).to_be_visible()
    no_traceback(page)

    page.get_by_role("button", name="Cancel").click()
    summary = page.get_by_text(CANCELLED)
    expect(summary).to_be_visible(timeout=60_000)  # within seconds, not batches
    written, not_started = (int(g.replace(",", "")) for g in CANCELLED.search(summary.inner_text()).groups())  # type: ignore[union-attr]
    at_stop = weaviate_count(server.env, "journey-cancel")
    assert written == at_stop and written + not_started == 90 and not_started > 0
    expect(page.get_by_text(re.compile(r"not started"))).not_to_have_count(0)
    no_traceback(page)
    # Nothing is written after the import said it stopped: the page again, then the store.
    page.reload()
    expect(page.get_by_text(CANCELLED)).to_be_visible(timeout=LONG)
    assert weaviate_count(server.env, "journey-cancel") == at_stop

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_text(re.compile(r"3 documents imported"))).to_be_visible(timeout=LONG)
    expect(page.get_by_text(re.compile(r"Import finished in .*: 90 written"))).to_be_visible()
    assert weaviate_count(server.env, "journey-cancel") == 90  # exactly the rest: nothing lost, nothing twice
    no_traceback(page)


def test_a_file_that_could_not_be_read_is_followed_from_home_to_its_reason(page: Page, broken_import: str) -> None:
    link = page.get_by_role("link", name=re.compile(r"has 1 failure: see why"))
    expect(link).to_be_visible(timeout=LONG)
    link.click()
    expect(page.get_by_role("heading", level=1, name="Imports", exact=True)).to_be_visible(timeout=LONG)
    expect(page).to_have_url(re.compile(f"job={broken_import}"))
    expect(page.get_by_text(re.compile(r"1 document imported, 1 file could not be read: broken-scan\.pdf, ")))\
        .to_be_visible(timeout=LONG)
    expect(page.get_by_test_id("stTable").get_by_text(re.compile(r"failed: .+"))).to_have_count(1)  # the file's reason
    expect(page.get_by_text(re.compile(r'marked "no \(fix the file\)" could not be read at all'))).to_be_visible()
    # A file to fix is not offered a retry.
    expect(page.get_by_role("button", name=re.compile("Retry failed"))).to_have_count(0)
    no_traceback(page)


def test_a_past_import_opens_from_the_imports_page(page: Page, server: DashboardServer, broken_import: str) -> None:
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Imports", exact=True).click()
    expect(page.get_by_role("heading", level=1, name="Imports", exact=True)).to_be_visible(timeout=LONG)
    settle(page)
    page.get_by_role("link", name="field-notes.jsonl, broken-scan.pdf").first.click()
    expect(page.get_by_role("heading", name="Import of field-notes.jsonl, broken-scan.pdf")).to_be_visible(timeout=LONG)
    expect(page).to_have_url(re.compile(f"job={broken_import}"))
    expect(page.get_by_text(re.compile(r"Import finished in .* with failures: 4 written"))).to_be_visible()
    no_traceback(page)
    page.get_by_role("link", name="This import's log lines").click()
    expect(page.get_by_role("heading", level=1, name="Logs", exact=True)).to_be_visible(timeout=LONG)
    settle(page)
    expect(page.get_by_label("Job", exact=True)).to_have_value(broken_import)
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=30_000)  # its lines, filtered by the job
    no_traceback(page)

"""The Logs page: under AppTest (filters, a job's lines from its link, the audit trail) and
in Chromium (filtering, following a new line live, downloading exactly the lines shown).
The log and the audit trail are written by memsys itself into the page's data folder."""
from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import REPO
from dashboard_support import CHROMIUM_ARGS, DashboardServer, memsys_env, require_chromium
from memsys.audit import AuditAction, AuditOutcome, AuditTrail
from memsys.config import Settings
from memsys.logs import configure_logging, event, get_logger, job_context

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

JOB_A = "20260101-000000-aaaaaa"
JOB_B = "20260101-000000-bbbbbb"


def write_history(data_dir: Path) -> None:
    """Lines of two jobs at several levels, and two audit records, as memsys writes them."""
    configure_logging(Settings(data_dir=data_dir))
    pipeline, retry = get_logger("pipeline"), get_logger("retry")
    with job_context(JOB_A):
        pipeline.info("import %s planned: 20 items", JOB_A, extra=event("import.planned", items=20))
        with job_context(JOB_A, batch=1):
            retry.warning("retrying an embedding request in 0.40 s after a 429", extra=event("retry", wait_seconds=0.4))
    with job_context(JOB_B):
        pipeline.error("rows.csv row 7: the embedding service failed (500)", extra=event("item.failed"))
    trail = AuditTrail(data_dir / "jobs.sqlite3")
    trail.record(AuditAction.MEMORIES_DELETED, "alice", target="Memory", details={"filter": {"project": "old"}, "count": 12})
    trail.record(AuditAction.CACHE_CLEARED, "bob", outcome=AuditOutcome.REFUSED, details={"reason": "a test"})
    trail.close()


@pytest.fixture(scope="module")
def page_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("logs-page-data")
    write_history(data_dir)
    env = memsys_env(data_dir)
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(tmp_path_factory.mktemp("logs-page-cwd"))
        yield env
        st.cache_resource.clear()


def logs_page(job: str = "") -> AppTest:
    # The page alone: it needs the job database and the log, not Weaviate.
    at = AppTest.from_file(str(REPO / "pages" / "logs.py"), default_timeout=120)
    if job:
        at.query_params["job"] = job
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest, column: str, table: int = 0) -> list[str]:
    return list(at.dataframe[table].value[column])


def test_the_page_shows_info_and_above_newest_first(page_env: dict[str, str]) -> None:
    at = logs_page()
    # The two audit records are logged too (component "audit"), after the jobs' lines.
    assert shown(at, "Component") == ["audit", "audit", "pipeline", "retry", "pipeline"]
    assert shown(at, "Level") == ["WARNING", "INFO", "ERROR", "WARNING", "INFO"]
    assert shown(at, "Job") == ["", "", JOB_B, JOB_A, JOB_A]
    assert shown(at, "Batch")[3] == "1"


def test_the_level_component_and_text_filters_narrow_the_lines(page_env: dict[str, str]) -> None:
    at = logs_page()
    [level] = [s for s in at.selectbox if s.label == "Level"]
    level.set_value("WARNING").run()
    assert shown(at, "Level") == ["WARNING", "ERROR", "WARNING"]
    [component] = [m for m in at.multiselect if m.label == "Component"]
    component.set_value(["retry"]).run()
    assert shown(at, "Component") == ["retry"]
    component.set_value([]).run()
    [text] = [t for t in at.text_input if t.label == "Containing"]
    text.input("ROWS.CSV").run()
    assert shown(at, "Message") == ["rows.csv row 7: the embedding service failed (500)"]


def test_a_jobs_link_opens_the_page_on_that_jobs_lines(page_env: dict[str, str]) -> None:
    at = logs_page(job=JOB_A)
    assert [t.value for t in at.text_input if t.label == "Job"] == [JOB_A]
    assert set(shown(at, "Job")) == {JOB_A} and len(shown(at, "Job")) == 2


def test_a_filter_that_matches_nothing_says_so(page_env: dict[str, str]) -> None:
    at = logs_page(job="20990101-000000-none00")
    assert "No log lines match these filters." in [i.value for i in at.info]


def test_the_audit_trail_is_shown_read_only(page_env: dict[str, str]) -> None:
    at = logs_page()
    audit = at.dataframe[1].value
    assert list(audit["Who"]) == ["bob", "alice"] and list(audit["Outcome"]) == ["refused", "done"]
    assert json.loads(audit["Details"][1]) == {"filter": {"project": "old"}, "count": 12}
    assert not [b for b in at.button if "delete" in b.label.lower() or "edit" in b.label.lower()]


# --- in Chromium ------------------------------------------------------------------------------


def test_in_chromium_the_page_filters_follows_and_downloads_the_lines_shown(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = require_chromium()
    data_dir = tmp_path_factory.mktemp("logs-e2e-data")
    write_history(data_dir)
    server = DashboardServer(memsys_env(data_dir), tmp_path / "streamlit.log")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            page = browser.new_page(accept_downloads=True)
            page.goto(server.address(f"logs?job={JOB_A}"), wait_until="domcontentloaded")
            grid = page.get_by_test_id("stDataFrame").first
            expect(grid).to_contain_text("retrying an embedding request", timeout=120_000)
            expect(grid).not_to_contain_text("rows.csv row 7")

            page.get_by_text("Follow live").click()
            with job_context(JOB_A):  # the test process writes to the same log, as a CLI import would
                configure_logging(Settings(data_dir=data_dir))
                get_logger("pipeline").info("a line written while the page follows")
            expect(grid).to_contain_text("a line written while the page follows", timeout=60_000)
            page.get_by_text("Follow live").click()

            level = page.get_by_test_id("stSelectbox").filter(has_text="Level")
            level.click()
            page.get_by_role("option", name="WARNING", exact=True).click()
            expect(grid).not_to_contain_text("a line written while the page follows", timeout=30_000)
            with page.expect_download() as download_info:
                page.get_by_role("button", name="Download these lines").click()
            download = download_info.value
            assert download.suggested_filename == f"memsys-log-{JOB_A}.jsonl"
            lines = [json.loads(line) for line in Path(download.path()).read_text(encoding="utf-8").splitlines()]
            assert [(line["job_id"], line["level"], line["event"]) for line in lines] == [(JOB_A, "WARNING", "retry")]
            browser.close()
    finally:
        server.stop()


def test_home_shows_weaviates_disk_pressure_and_failed_start(page_env: dict[str, str]) -> None:
    server_dir = Path(page_env["MEMSYS_DATA_DIR"]) / "server"
    server_dir.mkdir(exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    stamp = (now - dt.timedelta(minutes=5)).isoformat()
    (server_dir / "weaviate.log").write_text(
        f'{{"level":"warning","msg":"Set READONLY, disk usage currently at 97.10%, threshold set to 90.00%","time":"{stamp}"}}\n'
        f'{{"level":"info","msg":"an ordinary line","time":"{stamp}"}}\n'
        f"{(now - dt.timedelta(days=3)).strftime('%Y-%m-%dT%H:%M:%S%z')} memsys-supervisor: Weaviate did not become ready\n",
        encoding="utf-8",
    )
    at = AppTest.from_file(str(REPO / "pages" / "home.py"), default_timeout=300)
    at.run()
    warnings = [str(w.value) for w in at.warning]
    assert any("short of disk space" in w and "disk usage currently at 97.10%" in w for w in warnings), warnings
    assert not any("failed to start" in w for w in warnings)  # three days old: not shown

"""The Import page through database trouble, under Streamlit's AppTest on real
components: the job database locked by another process past the timeout, and the data
directory's disk filling up during an import and then freed. The page shows a sentence,
never a traceback, and the same app process carries on once the cause is gone.

The data directory is a tmpfs made by the test (root only; skipped without root unless
CI is set). Weaviate's own folder in it is a link to the big disk: Weaviate turns its
shards read-only by itself at 90 % disk use, which is Weaviate's guard, not memsys's."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st

from conftest import REPO
from dashboard_support import jsonl, memsys_env, sentences, weaviate_count
from test_job_store_faults import WriteLockHolder, fill_disk, tiny_filesystem
from test_pages import CLEARED, button, finished, open_page, rerun_until, start_import, texts

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("pages-faults")
    with tiny_filesystem(root / "tiny", "96m") as tiny:
        data_dir = tiny / "data"
        data_dir.mkdir()
        (root / "weaviate").mkdir()
        (data_dir / "weaviate").symlink_to(root / "weaviate")
        env = {**memsys_env(data_dir), "MEMSYS_JOBS_DB_TIMEOUT": "1"}
        with pytest.MonkeyPatch.context() as mp:
            for name in CLEARED:
                mp.delenv(name, raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            mp.chdir(root)
            try:
                yield env, tiny
            finally:
                st.cache_resource.clear()  # closes the engine: stops embedded Weaviate


def test_a_locked_job_database_is_told_on_the_page_and_the_next_try_works(tiny_data: tuple[dict[str, str], Path]) -> None:
    env, _ = tiny_data
    at = open_page("pages/import.py")
    with WriteLockHolder(Path(env["MEMSYS_DATA_DIR"]) / "jobs.sqlite3"):
        start_import(at, [("locked.jsonl", jsonl(sentences(3, "the lock test")), "application/json")], "pages-locked")
        assert not at.exception
        assert any("locked by another process" in e for e in texts(at, "error")), texts(at, "error")
    button(at, "Start import").click()
    at.run()
    rerun_until(at, finished)
    assert any("3 written, 0 unchanged, 0 failed of 3 items" in s for s in texts(at, "success"))
    assert weaviate_count(env, "pages-locked") == 3


def test_a_full_disk_stops_the_import_with_a_sentence_and_resume_finishes_once_freed(tiny_data: tuple[dict[str, str], Path]) -> None:
    env, tiny = tiny_data
    at = open_page("pages/import.py")
    start_import(at, [("full.jsonl", jsonl(sentences(300, "the full disk test")), "application/json")], "pages-full")
    filler = fill_disk(tiny)
    try:
        rerun_until(at, lambda at: any("is full" in e for e in texts(at, "error")), timeout=180)
    finally:
        filler.unlink()
    button(at, "Resume").click()
    at.run()
    rerun_until(at, finished, timeout=300)
    assert any("300 written" in s and "0 failed of 300 items" in s for s in texts(at, "success")), texts(at, "success")
    assert weaviate_count(env, "pages-full") == 300


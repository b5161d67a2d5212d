"""The pages through database trouble, under Streamlit's AppTest on real components: the
job database locked by another process past the timeout, the data directory's disk
filling up during an import and then freed, and the data directory made read-only. The
pages show a sentence, never a traceback, and the same app process carries on once the
cause is gone.

The data directory is a tmpfs made by the test (root only; skipped without root unless
CI is set). Weaviate's own folder in it is a link to the big disk: Weaviate turns its
shards read-only by itself at 90 % disk use, which is Weaviate's guard, not memsys's. So
is the memsys server's folder (its detached supervisor keeps its log open for writing,
which would keep the tmpfs from being remounted read-only)."""
from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st

from conftest import REPO
from dashboard_support import jsonl, memsys_env, sentences, wait_until, weaviate_count
from test_job_store_faults import WriteLockHolder, fill_disk, remount, tiny_filesystem
from test_pages import CLEARED, button, finished, open_page, rerun_until, start_import, texts

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    root = tmp_path_factory.mktemp("pages-faults")
    with tiny_filesystem(root / "tiny", "96m") as tiny:
        data_dir = tiny / "data"
        data_dir.mkdir()
        for outside in ("weaviate", "server"):
            (root / outside).mkdir()
            (data_dir / outside).symlink_to(root / outside)
        env = {**memsys_env(data_dir), "MEMSYS_JOBS_DB_TIMEOUT": "1"}
        with pytest.MonkeyPatch.context() as mp:
            for name in CLEARED:
                mp.delenv(name, raising=False)
            for name, value in env.items():
                mp.setenv(name, value)
            mp.chdir(root)
            st.config.set_option("server.address", "127.0.0.1")  # as `make run` serves it: loopback only
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
    assert any("3 written, 0 unchanged, 0 failed of 3 memories" in s for s in texts(at, "success"))
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
    assert any("300 written" in s and "0 failed of 300 memories" in s for s in texts(at, "success")), texts(at, "success")
    assert weaviate_count(env, "pages-full") == 300



def _open_in(where: Path) -> list[str]:
    """Files under `where` some process has open (for the message when it stays busy)."""
    found = []
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        try:
            target = str(fd.readlink())
        except OSError:
            continue  # the process or descriptor went away meanwhile
        if target.startswith(str(where)):
            found.append(f"{fd.parts[2]}: {target}")
    return found


def _remounted(where: Path, options: str) -> bool:
    # Script runs that have ended leave their cache connections (diskcache keeps one per
    # thread) as garbage in reference cycles: collected, they close their files.
    gc.collect()
    try:
        remount(where, options)
    except subprocess.CalledProcessError:
        return False  # busy: a file there is still open for writing (a connection closing)
    return True


READ_ONLY_PAGES = ("pages/home.py", "pages/import.py", "pages/metrics.py")


def test_pages_on_a_read_only_data_directory_say_so_and_work_again_once_writable(tiny_data: tuple[dict[str, str], Path]) -> None:
    env, tiny = tiny_data
    at = open_page("pages/import.py")
    start_import(at, [("before.jsonl", jsonl(sentences(2, "before read-only")), "application/json")], "pages-ro-before")
    rerun_until(at, finished)
    # The engine lets go of its files (as a dashboard started on a read-only volume has
    # none open), then the data directory turns read-only under the same app process.
    st.cache_resource.clear()
    try:
        wait_until(lambda: _remounted(tiny, "ro"), timeout=60, what="the tmpfs remounted read-only")
    except AssertionError as e:
        raise AssertionError(f"{e}; open there: {_open_in(tiny)}") from e
    try:
        opened = {}
        for page in READ_ONLY_PAGES:
            opened[page] = page_at = open_page(None if page == "pages/home.py" else page)
            told = texts(page_at, "error")
            assert any("The data folder is read-only" in e and "writable again" in e for e in told), (page, told)
    finally:
        remount(tiny, "rw")
    # Writable again: the same app process, no restart; the pages read and import again.
    for page, page_at in opened.items():
        page_at.run()
        assert not page_at.exception and not any("read-only" in e for e in texts(page_at, "error")), (page, texts(page_at, "error"))
    at = open_page("pages/import.py")
    start_import(at, [("after.jsonl", jsonl(sentences(3, "after read-only")), "application/json")], "pages-ro-after")
    rerun_until(at, finished)
    assert any("3 written, 0 unchanged, 0 failed of 3 memories" in s for s in texts(at, "success"))
    assert weaviate_count(env, "pages-ro-after") == 3

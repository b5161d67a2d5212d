"""Backups on the dashboard (Streamlit's AppTest over the real app, its own data folder and
embedded Weaviate): a failed scheduled backup is said on Home and on Settings, and an admin
deletes a backup on Settings once they have ticked that they mean it."""
from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from conftest import REPO
from dashboard_support import memsys_env
from memsys.config import Settings
from memsys.engine import Engine
from memsys.store import backup as weaviate_backup
from memsys.store import server as memsys_server

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STARTUP = 180
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "WEAVIATE_URL", "WEAVIATE_URLS", "WEAVIATE_API_KEY", "MEMSYS_COLLECTION")
FAILED_NAME = "scheduled-20260101-000000"


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A data folder with a backup made by hand and a scheduled one that failed."""
    env = {**memsys_env(tmp_path_factory.mktemp("backup-page-data")), "MEMSYS_BACKUP_EVERY_HOURS": "24"}
    settings = Settings.load(env=env, secrets_path=Path("/nonexistent"))
    engine = Engine(settings, program="cli")
    with pytest.MonkeyPatch.context() as mp:
        try:
            engine.backups.create("by-hand")

            def full_disk(*args: object, **kwargs: object) -> None:  # the fault
                raise weaviate_backup.WeaviateBackupError("Weaviate's backup failed: no space left on device")

            mp.setattr(weaviate_backup, "create_backup", full_disk)
            engine.backups.run_due(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
        finally:
            engine.close()
        mp.undo()
        for name in CLEARED:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(tmp_path_factory.mktemp("backup-page-cwd"))
        st.config.set_option("server.address", "127.0.0.1")
        yield env
        st.cache_resource.clear()
        memsys_server.stop_server(settings)


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def warnings(at: AppTest) -> list[str]:
    return [str(w.value) for w in at.warning]


def test_a_failed_scheduled_backup_is_said_on_home_and_settings(app_env: dict[str, str]) -> None:
    said = (f"The scheduled backup {FAILED_NAME} failed: Weaviate's backup failed: no space left on device "
            "(see the Logs page; the next one is tried on schedule).")
    assert said in warnings(open_page())
    at = open_page("pages/settings.py")
    assert said in warnings(at)
    assert any("makes one every 24 hours and keeps the newest 7" in str(c.value) for c in at.caption)


def test_an_admin_deletes_a_backup_once_ticked(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled  # nothing is deleted before the box is ticked
    at.selectbox(key="backup_delete_name").select("by-hand").run()
    at.checkbox(key="backup_delete_sure").check().run()
    next(b for b in at.button if b.label == "Delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Backup by-hand deleted." in [str(s.value) for s in at.success]
    assert at.selectbox(key="backup_delete_name").options == [FAILED_NAME]

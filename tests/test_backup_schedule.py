"""Scheduled backups, as the memsys server's companion makes them (memsys/cli/scheduler.py),
on a data directory of the test's own with its real embedded Weaviate: the schedule's clock
is the `now` handed to each tick, so hours pass without waiting. A due schedule makes a
backup, one not yet due makes none, the scheduled ones beyond MEMSYS_BACKUP_KEEP complete
ones are deleted (a backup made by hand never is), and a scheduled backup that fails is
kept as failed, said in the log and shown to operators until the next one succeeds."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import pytest

from conftest import free_port, settings_for
from memsys.cli.scheduler import Scheduler
from memsys.config import Settings
from memsys.engine import Engine
from memsys.engine.backups import COMPLETE, FAILED
from memsys.store import backup as weaviate_backup
from memsys.store import server as memsys_server

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    found = settings_for(tmp_path / "data", MEMSYS_BACKUP_EVERY_HOURS="1", MEMSYS_BACKUP_KEEP="2",
                         MEMSYS_WEAVIATE_PORT=str(free_port()), MEMSYS_WEAVIATE_GRPC_PORT=str(free_port()))
    yield found
    memsys_server.stop_server(found)


def states(engine: Engine) -> dict[str, str]:
    return {s.name: s.state for s in engine.backups.list()}


def test_a_due_schedule_makes_a_backup_and_deletes_those_beyond_the_keep_count(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(settings, program="cli")
    scheduler = Scheduler(settings)
    try:
        engine.backups.create("by-hand")
        scheduler.step(T0)
        assert states(engine) == {"by-hand": COMPLETE, "scheduled-20260101-000000": COMPLETE}
        scheduler.step(T0 + dt.timedelta(minutes=59))  # not due yet
        assert len(states(engine)) == 2
        scheduler.step(T0 + dt.timedelta(hours=1))
        scheduler.step(T0 + dt.timedelta(hours=2))
        # Three made, two kept: the oldest scheduled one is deleted, the one made by hand stays.
        assert states(engine) == {"by-hand": COMPLETE, "scheduled-20260101-010000": COMPLETE,
                                  "scheduled-20260101-020000": COMPLETE}
        assert engine.backups.schedule_problem() == ""

        def full_disk(*args: object, **kwargs: object) -> None:  # the fault: Weaviate cannot write its part
            raise weaviate_backup.WeaviateBackupError("Weaviate's backup failed: no space left on device")

        with monkeypatch.context() as faults:
            faults.setattr(weaviate_backup, "create_backup", full_disk)
            scheduler.step(T0 + dt.timedelta(hours=3))
        assert states(engine)["scheduled-20260101-030000"] == FAILED
        assert engine.backups.schedule_problem() == ("The scheduled backup scheduled-20260101-030000 failed: "
                                                     "Weaviate's backup failed: no space left on device")
        log = (settings.log_dir / "memsys.log").read_text(encoding="utf-8")
        assert "the scheduled backup scheduled-20260101-030000 failed" in log
        # A failed one does not count towards the kept ones, and the next tick is due an hour later.
        scheduler.step(T0 + dt.timedelta(hours=3, minutes=30))
        assert "scheduled-20260101-033000" not in states(engine)
        scheduler.step(T0 + dt.timedelta(hours=4))
        assert states(engine) == {"by-hand": COMPLETE, "scheduled-20260101-020000": COMPLETE,
                                  "scheduled-20260101-030000": FAILED, "scheduled-20260101-040000": COMPLETE}
        assert engine.backups.schedule_problem() == ""
        deleted = engine.audit_trail.records(action="backup.deleted")
        assert sorted(r.target for r in deleted) == ["scheduled-20260101-000000", "scheduled-20260101-010000"]
        assert {r.actor for r in deleted} == {"scheduler"}
        failed = engine.audit_trail.records(action="backup.created", target="scheduled-20260101-030000")
        assert [r.outcome for r in failed] == ["failed"]
    finally:
        scheduler.stop()
        scheduler._release()
        engine.close()


def test_no_schedule_no_backup(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    assert settings.backup_every_hours == 0
    engine = Engine(settings, program="cli")
    try:
        run = engine.backups.run_due(T0)
        assert (run.made, run.failed, run.deleted) == (None, "", [])
        assert engine.backups.list() == []
    finally:
        engine.close()

"""Backups on a data directory of the tests' own, with its real embedded Weaviate (its
backup-filesystem module), the real local embedder and a real import: a backup cut short by
a memsys server killed with SIGKILL is marked failed and never restored; a complete one,
restored into the wiped data directory, gives back the same memories (uuids, fields,
vectors), jobs and audit trail; the restore drill says so; the CLI asks before a restore."""
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import pytest

from memsys.config import Settings
from memsys.engine import Engine, MemoryDefaults
from memsys.engine.backups import COMPLETE, FAILED, BackupError
from memsys.errors import StoreUnavailableError
from memsys.store import server as memsys_server

from conftest import free_port, run_memsys, settings_for

NOTES = {
    "deploys.txt": "Deploys happen on Tuesdays after the change advisory board has approved the release notes.",
    "rollbacks.txt": "Rollbacks need two approvals from the on-call engineers and a ticket in the incident tracker.",
    "staging.txt": "The staging cluster is rebuilt every night from the main branch so tests run on fresh data.",
}


def env_for(root: Path) -> dict[str, str]:
    return {"MEMSYS_DATA_DIR": str(root / "data"), "MEMSYS_BACKUP_DIR": str(root / "backups"),
            "MEMSYS_WEAVIATE_PORT": str(free_port()), "MEMSYS_WEAVIATE_GRPC_PORT": str(free_port()),
            "MEMSYS_SERVER_IDLE_SECONDS": "60"}


def memories_in(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every object of every collection: uuid -> (collection, fields, vectors)."""
    client, _ = memsys_server.connect_client(settings)
    try:
        found = {}
        for name in client.collections.list_all(simple=True):
            for o in client.collections.get(name).iterator(include_vector=True):
                found[str(o.uuid)] = {"collection": name, "fields": dict(o.properties), "vector": dict(o.vector)}
        return found
    finally:
        client.close()
        memsys_server.release_client(settings)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(str(db))
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A data directory with one import done, a backup cut short by a killed server, then a
    complete backup; what the live store held at that moment."""
    root = tmp_path_factory.mktemp("backups")
    env = env_for(root)
    settings = settings_for(root / "data", **{k: v for k, v in env.items() if k != "MEMSYS_DATA_DIR"})
    docs = root / "docs"
    docs.mkdir()
    for name, text in NOTES.items():
        (docs / name).write_text(text, encoding="utf-8")
    engine = Engine(settings, program="cli")
    try:
        job = engine.jobs.wait(engine.imports.start(engine.imports.spool_paths([docs]), MemoryDefaults("ops", "handbook", "a")),
                               timeout=300)
        assert job.state == "completed" and job.written == len(NOTES)

        def kill_server(phase: str) -> None:
            if phase == "weaviate started":  # Weaviate has taken the request and is copying
                state = memsys_server.running_state(settings)
                assert state is not None
                os.killpg(os.getpgid(state.pid), signal.SIGKILL)

        with pytest.raises(StoreUnavailableError):
            engine.backups.create("cut", on_phase=kill_server)
        made = engine.backups.create("good")
        live = memories_in(settings)
        yield {"root": root, "env": env, "settings": settings, "engine": engine, "made": made, "live": live,
               "jobs": rows(settings.jobs_db, "SELECT * FROM jobs ORDER BY id"),
               "audit": rows(settings.jobs_db, "SELECT * FROM audit ORDER BY id")}
    finally:
        engine.close()
        memsys_server.stop_server(settings)


def test_a_backup_cut_short_by_a_killed_server_is_marked_failed(backed_up: dict[str, Any]) -> None:
    engine = backed_up["engine"]
    states = {s.name: s for s in engine.backups.list()}
    assert states["cut"].state == FAILED
    assert "stopped answering" in states["cut"].error
    assert states["good"].state == COMPLETE


def test_a_failed_backup_is_never_restored(backed_up: dict[str, Any], tmp_path: Path) -> None:
    empty = Engine(settings_for(tmp_path / "empty", MEMSYS_BACKUP_DIR=str(backed_up["root"] / "backups")), program="cli")
    try:
        with pytest.raises(BackupError, match="backup cut is failed .*: it is never restored"):
            empty.backups.restore("cut")
    finally:
        empty.close()


def test_the_manifest_counts_the_store_and_checksums_each_part(backed_up: dict[str, Any]) -> None:
    made = backed_up["made"]
    assert made.memories == len(backed_up["live"]) == len(NOTES)
    assert made.jobs == len(backed_up["jobs"]) == 1
    # The set's own record is written after its copy of the trail was taken.
    assert made.audit_records == len(backed_up["audit"]) - 1
    assert set(made.parts) == {"weaviate", "jobs", "files", "spool"}
    assert all(len(p["sha256"]) == 64 and p["bytes"] > 0 for name, p in made.parts.items() if name != "files")


def test_the_cli_asks_before_a_restore(backed_up: dict[str, Any], tmp_path: Path) -> None:
    env = {**backed_up["env"], "MEMSYS_DATA_DIR": str(tmp_path / "other")}
    result = run_memsys(["backup", "restore", "good"], env)
    assert result.returncode == 2, result.stderr
    assert "would restore backup good (3 memories, 1 imports" in result.stdout
    assert not (tmp_path / "other" / "jobs.sqlite3").exists() or not rows(tmp_path / "other" / "jobs.sqlite3",
                                                                          "SELECT * FROM jobs")


def test_the_restore_drill_compares_a_sample_with_the_live_store(backed_up: dict[str, Any]) -> None:
    report = backed_up["engine"].backups.verify("good")
    assert report.ok, report.differences
    assert report.sampled == len(NOTES)
    assert report.verdict.startswith("backup good restores: 3 memories")


def test_restore_into_the_wiped_data_directory_gives_everything_back(backed_up: dict[str, Any]) -> None:
    settings: Settings = backed_up["settings"]
    backed_up["engine"].close()
    memsys_server.stop_server(settings)
    shutil.rmtree(settings.data_dir)
    engine = Engine(settings, program="cli")
    try:
        restored = engine.backups.restore("good")
        assert sum(restored.values()) == len(NOTES)
        assert memories_in(settings) == backed_up["live"]
        assert rows(settings.jobs_db, "SELECT * FROM jobs ORDER BY id") == backed_up["jobs"]
        audit = rows(settings.jobs_db, "SELECT * FROM audit ORDER BY id")
        assert audit[:-1] == backed_up["audit"][:-1]  # all but the new set's own record, which came after its copy
        assert audit[-1][3] == "backup.restored"
        # A second restore into the now full data directory is refused with a sentence.
        with pytest.raises(BackupError, match="already holds 1 jobs: a backup is restored into an empty data directory"):
            engine.backups.restore("good")
    finally:
        engine.close()

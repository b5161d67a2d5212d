"""Where the space goes: each part's figure is what `du` counts for its files and folders,
the rest of the data directory is counted once, and the warning comes before Weaviate's
disk-pressure thresholds."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from memsys.space import WEAVIATE_READONLY_PERCENT, WEAVIATE_WARNING_PERCENT, SpaceReport, part_paths, space_report

from conftest import settings_for


def du(paths: list[Path]) -> int:
    present = [str(p) for p in paths if p.exists()]
    if not present:
        return 0
    out = subprocess.run(["du", "-s", "-B1", "-c", *present], capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1].split()[0])


def fill(path: Path, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(n))


def test_each_part_is_what_du_counts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data")
    fill(settings.weaviate_data_dir / "memory_v1" / "lsm" / "segment-1.db", 300_000)
    fill(settings.weaviate_data_dir / "raft" / "raft.db", 40_000)
    fill(settings.cache_dir / "cache.db", 120_000)
    fill(settings.cache_dir / "ab" / "cd" / "value.val", 70_000)
    fill(settings.jobs_db, 90_000)
    fill(settings.jobs_db.with_name("jobs.sqlite3-wal"), 20_000)
    fill(settings.spool_dir / "upload-1" / "notes.md", 55_555)
    fill(settings.log_dir / "memsys.log", 12_345)
    fill(settings.data_dir / "server" / "weaviate.log", 6_000)
    fill(settings.backups_dir / "memsys-1" / "jobs.sqlite3", 80_000)
    fill(settings.batch_config_path, 500)
    os.link(settings.spool_dir / "upload-1" / "notes.md", settings.spool_dir / "notes-again.md")  # counted once

    report = space_report(settings)
    for name, paths in part_paths(settings).items():
        assert report.parts[name] == du(paths), name
    assert report.total_bytes == du([settings.data_dir])
    assert not report.outside


def test_backups_spool_and_logs_kept_elsewhere_are_named_so_and_not_in_the_data_directory_total(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "data", MEMSYS_BACKUP_DIR=str(tmp_path / "elsewhere"),
                            MEMSYS_SPOOL_DIR=str(tmp_path / "shared-spool"), MEMSYS_LOG_DIR=str(tmp_path / "shared-logs"))
    assert settings.spool_dir == tmp_path / "shared-spool"
    fill(settings.jobs_db, 10_000)
    fill(settings.backups_dir / "memsys-1" / "jobs.sqlite3", 50_000)
    fill(settings.spool_dir / "upload-1" / "notes.md", 20_000)
    fill(settings.log_dir / "memsys.log", 30_000)
    fill(settings.data_dir / "server" / "weaviate.log", 4_000)
    report = space_report(settings)
    assert report.outside == {"backups", "spool", "logs"}
    assert report.parts["logs"] == du([settings.log_dir]) > 0
    assert report.parts["backups"] == du([settings.backups_dir])
    assert report.parts["spool"] == du([settings.spool_dir]) > 0
    assert report.total_bytes == du([settings.data_dir])


def test_the_warning_comes_before_weaviates_thresholds(tmp_path: Path) -> None:
    def at(percent: float) -> SpaceReport:
        return SpaceReport(tmp_path, {}, 0, disk_total=100_000, disk_free=int(100_000 * (100 - percent) / 100))

    assert at(50).warning == ""
    assert "Weaviate warns at 80%" in at(WEAVIATE_WARNING_PERCENT - 4).warning
    assert "read-only" in at(WEAVIATE_READONLY_PERCENT).warning

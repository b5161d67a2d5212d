"""Where a data directory's space goes: the size on disk of each of its parts (Weaviate's
data, the embedding cache, the job database, the spool, the logs, the backups), counted as
`du` counts (allocated blocks, each hard-linked file once), and the free space on its disk,
with a warning before Weaviate's own disk-pressure thresholds are reached.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from memsys.config import Settings

# Weaviate's defaults (DISK_USE_WARNING_PERCENTAGE, DISK_USE_READONLY_PERCENTAGE): at the
# first it logs warnings, at the second it turns every shard read-only (imports fail).
WEAVIATE_WARNING_PERCENT = 80
WEAVIATE_READONLY_PERCENT = 90
# memsys warns this many points before Weaviate does.
WARN_MARGIN_PERCENT = 5


@dataclass(frozen=True)
class SpaceReport:
    """The parts' sizes in bytes (in the order people read them), the rest of the data
    directory, and the disk the data directory is on."""

    data_dir: Path
    parts: dict[str, int]
    other_bytes: int
    disk_total: int
    disk_free: int
    # The parts kept on a path of their own, outside the data directory (MEMSYS_BACKUP_DIR,
    # MEMSYS_SPOOL_DIR, MEMSYS_LOG_DIR): listed, not in its total.
    outside: frozenset[str] = frozenset()
    paths: dict[str, list[Path]] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        inside = sum(n for name, n in self.parts.items() if name not in self.outside)
        return inside + self.other_bytes

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.disk_total - self.disk_free) / self.disk_total if self.disk_total else 0.0

    @property
    def warning(self) -> str:
        """A sentence when the disk is close to Weaviate's thresholds; "" otherwise."""
        used = self.used_percent
        if used >= WEAVIATE_READONLY_PERCENT:
            return (f"the data directory's disk is {used:.0f}% full: Weaviate has turned its shards read-only at "
                    f"{WEAVIATE_READONLY_PERCENT}% and imports fail; free space (`memsys jobs prune`, `memsys cache "
                    "prune`, old backups) or move the data directory")
        if used >= WEAVIATE_WARNING_PERCENT - WARN_MARGIN_PERCENT:
            return (f"the data directory's disk is {used:.0f}% full: Weaviate warns at {WEAVIATE_WARNING_PERCENT}% and "
                    f"stops taking writes at {WEAVIATE_READONLY_PERCENT}%; free space before then")
        return ""


def part_paths(settings: Settings) -> dict[str, list[Path]]:
    """The files and folders of each part."""
    db = settings.jobs_db
    return {
        "Weaviate data": [settings.weaviate_data_dir],
        "embedding cache": [settings.cache_dir],
        "job database": [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")],
        "spool": [settings.spool_dir],
        # The memsys server's own files count as logs, unless the log is kept elsewhere.
        "logs": [settings.log_dir] if settings.log_folder else [settings.log_dir, settings.data_dir / "server"],
        "backups": [settings.backups_dir],
    }


def _du(paths: list[Path], seen: set[tuple[int, int]]) -> int:
    """Allocated bytes of the paths and everything under them, as `du -s -B1` counts."""
    total = 0
    for top in paths:
        if not top.exists() and not top.is_symlink():
            continue
        walk = [top]
        while walk:
            path = walk.pop()
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue  # removed while counting
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
            if path.is_dir() and not path.is_symlink():
                try:
                    walk.extend(path.iterdir())
                except OSError:
                    continue
    return total


def space_report(settings: Settings) -> SpaceReport:
    """Sizes of the data directory's parts, the rest of it, and its disk's free space."""
    data_dir = settings.data_dir
    paths = part_paths(settings)
    seen: set[tuple[int, int]] = set()
    parts = {name: _du(found, seen) for name, found in paths.items()}
    # The rest: whatever else is in the data directory (settings files, a token).
    other = _du([data_dir], seen) if data_dir.exists() else 0
    probe = data_dir if data_dir.exists() else data_dir.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    inside = os.path.abspath(data_dir) + os.sep
    outside = frozenset(name for name, folder in (("backups", settings.backups_dir), ("spool", settings.spool_dir),
                                                                   ("logs", settings.log_dir))
                        if not os.path.abspath(folder).startswith(inside))
    return SpaceReport(data_dir, parts, other, usage.total, usage.free, outside, paths)

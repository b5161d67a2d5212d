"""`engine.backups`: backup sets of a data directory and the way back. A set is one folder
under the backups folder (MEMSYS_BACKUP_DIR, default `<data dir>/backups`) holding
Weaviate's own backup of every collection (`weaviate/`), a consistent copy of the job
database with its audit trail (`jobs.sqlite3`, SQLite's online backup: imports may run),
the saved settings files (`files/`), the spool (`spool/`) and `manifest.json`: name,
times, versions, counts, sizes, a checksum per part and the state (running, complete,
failed). Only a complete set whose checksums still match is ever restored.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from memsys import __version__
from memsys.access import action
from memsys.audit import AuditAction
from memsys.config import WEAVIATE_VERSION, Settings
from memsys.engine.calls import ADMIN, OPERATOR, VIEWER, Calls, audited
from memsys.logs import default_actor, event, get_logger
from memsys.store import backup as weaviate_backup
from memsys.store.server import stop_server
from memsys.store import supervisor as sup

log = get_logger("backups")

MANIFEST = "manifest.json"
COMPLETE, FAILED, RUNNING = "complete", "failed", "running"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# Files at the top of the data directory that are not settings: the job database (copied
# through SQLite) and the dashboard's token (a credential of this machine's dashboard).
_NOT_SETTINGS = ("jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm", "jobs.sqlite3-journal", "dashboard_token")
_PARTS = ("weaviate", "jobs", "files", "spool")
VERIFY_SAMPLE = 50
_WRITTEN_BY_RESTORES = ("restore_config.json",)


class BackupError(ValueError):
    """A backup set that cannot be made or restored; the message says why."""


@dataclass
class BackupSet:
    """One backup set as its manifest describes it."""

    name: str
    folder: Path
    state: str
    created: str = ""
    finished: str = ""
    error: str = ""
    memsys_version: str = ""
    weaviate_version: str = ""
    node: str = ""
    collections: dict[str, int] = field(default_factory=dict)
    jobs: int = 0
    audit_records: int = 0
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    pid: int = 0
    pid_start: str = ""

    @property
    def memories(self) -> int:
        return sum(self.collections.values())

    @property
    def size_bytes(self) -> int:
        return sum(int(p.get("bytes", 0)) for p in self.parts.values())

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "folder"}
        data["memories"] = self.memories
        data["size_bytes"] = self.size_bytes
        return data

    @classmethod
    def read(cls, folder: Path) -> "BackupSet":
        try:
            data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            return cls(folder.name, folder, FAILED, error=f"its manifest cannot be read ({type(e).__name__})")
        names = cls.__dataclass_fields__
        found = cls(folder=folder, **{k: v for k, v in data.items() if k in names and k != "folder"})
        if found.state == RUNNING and not sup.is_alive(found.pid, found.pid_start):
            # Whoever made it stopped before finishing (killed, or its machine went down).
            found.state = FAILED
            found.error = found.error or "it was never finished: the process making it stopped"
        return found

    def write(self) -> None:
        sup.write_json(self.folder / MANIFEST, self.to_json())


@dataclass(frozen=True)
class VerifyReport:
    """What a restore drill found: the set restored into a scratch data directory and
    compared with the manifest and the live store."""

    name: str
    ok: bool
    restored: dict[str, int]
    live: dict[str, int]
    jobs: int
    audit_records: int
    sampled: int
    differences: list[str]
    seconds: float

    @property
    def verdict(self) -> str:
        memories = sum(self.restored.values())
        if not self.ok:
            return f"backup {self.name} does NOT restore as it should: " + "; ".join(self.differences[:5])
        said = (f"backup {self.name} restores: {memories:,} memories in {len(self.restored)} collection(s), "
                f"{self.jobs:,} imports, {self.audit_records:,} audit records")
        if self.sampled:
            said += f"; {self.sampled} sampled memories equal to the live store (fields and vectors)"
        changed = sum(self.live.values()) - memories
        if changed:
            said += f"; the live store has {abs(changed):,} memories {'more' if changed > 0 else 'fewer'} since"
        return said


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _hash_folder(folder: Path) -> dict[str, Any]:
    """Files, bytes and one sha256 over every file's relative path and content."""
    digest = hashlib.sha256()
    files = size = 0
    if folder.exists():
        # Weaviate writes restore_config.json into a backup it restores from: not part of it.
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _WRITTEN_BY_RESTORES):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            files += 1
            size += path.stat().st_size
    return {"files": files, "bytes": size, "sha256": digest.hexdigest()}


def _hash_file(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"files": 1, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _part_checksum(folder: Path, part: str) -> dict[str, Any]:
    return _hash_file(folder / "jobs.sqlite3") if part == "jobs" else _hash_folder(folder / part)


def _count(db: Path, table: str) -> int:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        found = connection.execute("SELECT name FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone()
        return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) if found else 0
    finally:
        connection.close()


def _copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while other processes write."""
    src = sqlite3.connect(str(source), timeout=60)
    dst = sqlite3.connect(str(target), timeout=60)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_name() -> str:
    return "memsys-" + dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")


def sets_folder(settings: Settings) -> Path:
    return settings.backups_dir


def find_set(settings: Settings, name: str) -> BackupSet:
    """A set by name (in the backups folder) or by the path of its folder."""
    path = Path(name)
    folder = path if (path / MANIFEST).is_file() else settings.backups_dir / name
    if not (folder / MANIFEST).is_file():
        known = ", ".join(s.name for s in list_sets(settings)[:5])
        raise BackupError(f"there is no backup {name!r} in {settings.backups_dir}"
                          + (f" (there are: {known})" if known else " (there are none)"))
    return BackupSet.read(folder)


def list_sets(settings: Settings) -> list[BackupSet]:
    """Every set in the backups folder, newest first."""
    folder = settings.backups_dir
    if not folder.is_dir():
        return []
    found = [BackupSet.read(p) for p in folder.iterdir() if (p / MANIFEST).is_file()]
    return sorted(found, key=lambda s: s.created, reverse=True)


def create_set(settings: Settings, name: str, on_phase: Callable[[str], None] | None = None) -> BackupSet:
    """Make a backup set named `name`; on any failure its manifest says failed (with why)
    and the error is raised."""
    if not _NAME.fullmatch(name):
        raise BackupError(f"{name!r} cannot name a backup: use lower-case letters, digits, - and _ (at most 64)")
    folder = settings.backups_dir / name
    if folder.exists():
        raise BackupError(f"there is already a backup {name!r} in {settings.backups_dir}; pick another name")
    folder.mkdir(parents=True)
    pid = os.getpid()
    made = BackupSet(name, folder, RUNNING, created=_now(), memsys_version=__version__,
                     weaviate_version=WEAVIATE_VERSION, pid=pid, pid_start=sup.process_start(pid) or "")
    made.write()
    phase = on_phase or (lambda _: None)
    try:
        phase("jobs")
        if settings.jobs_db.exists():
            _copy_database(settings.jobs_db, folder / "jobs.sqlite3")
        else:
            sqlite3.connect(str(folder / "jobs.sqlite3")).close()
        made.jobs = _count(folder / "jobs.sqlite3", "jobs")
        made.audit_records = _count(folder / "jobs.sqlite3", "audit")
        phase("files")
        (folder / "files").mkdir()
        if settings.data_dir.is_dir():
            for path in settings.data_dir.iterdir():
                if path.is_file() and path.name not in _NOT_SETTINGS:
                    shutil.copy2(path, folder / "files" / path.name)
        phase("spool")
        if settings.spool_dir.is_dir():
            shutil.copytree(settings.spool_dir, folder / "spool", symlinks=True)
        phase("weaviate")
        found = weaviate_backup.create_backup(settings, name, folder / "weaviate", on_started=lambda: phase("weaviate started"))
        made.node, made.collections = found.node, found.collections
        phase("checksums")
        made.parts = {part: _part_checksum(folder, part) for part in _PARTS}
        made.state, made.finished = COMPLETE, _now()
        made.write()
    except BaseException as e:
        made.state, made.finished = FAILED, _now()
        made.error = str(e) or type(e).__name__
        made.write()
        raise
    return made


def check_set(found: BackupSet) -> list[str]:
    """What is wrong with a set for a restore: not complete, or a part whose files no
    longer match their checksum; [] when it can be restored."""
    if found.state != COMPLETE:
        return [f"backup {found.name} is {found.state}" + (f" ({found.error})" if found.error else "")
                + ": it is never restored"]
    problems = []
    for part, recorded in found.parts.items():
        now = _part_checksum(found.folder, part)
        if now["sha256"] != recorded.get("sha256"):
            problems.append(f"its {part} part has changed since it was made ({now['files']} files, "
                            f"{now['bytes']:,} bytes now; {recorded.get('files')} files, {recorded.get('bytes'):,} bytes then)")
    return problems


def _audit_rows(db: Path) -> list[tuple[Any, ...]]:
    if not db.exists() or not _count(db, "audit"):
        return []
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT at, actor, action, target, outcome, details FROM audit ORDER BY id").fetchall()
    finally:
        connection.close()


def _append_audit(db: Path, rows: list[tuple[Any, ...]]) -> None:
    """The empty data directory's own audit records (a refused restore, say) kept after the
    restored trail: the trail is append-only, a restore does not erase it."""
    if not rows:
        return
    connection = sqlite3.connect(str(db), timeout=60)
    try:
        with connection:
            connection.executemany("INSERT INTO audit (at, actor, action, target, outcome, details) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", rows)
    finally:
        connection.close()


def restore_set(settings: Settings, found: BackupSet) -> dict[str, int]:
    """Restore a complete, intact set into the (empty) data directory of `settings`:
    Weaviate's collections, then the job database with its audit trail, the settings files
    and the spool. Returns the objects per collection restored."""
    problems = check_set(found)
    if problems:
        raise BackupError("; ".join(problems))
    jobs = _count(settings.jobs_db, "jobs") if settings.jobs_db.exists() else 0
    if jobs:
        raise BackupError(f"the data directory {settings.data_dir} already holds {jobs:,} jobs: a backup is "
                          "restored into an empty data directory (set MEMSYS_DATA_DIR to a new folder)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    restored = weaviate_backup.restore_backup(settings, found.name, found.folder / "weaviate", found.node) \
        if found.collections else {}
    own_audit = _audit_rows(settings.jobs_db)
    _copy_database(found.folder / "jobs.sqlite3", settings.jobs_db)
    _append_audit(settings.jobs_db, own_audit)
    for path in (found.folder / "files").iterdir():
        shutil.copy2(path, settings.data_dir / path.name)
    if (found.folder / "spool").is_dir():
        shutil.copytree(found.folder / "spool", settings.spool_dir, symlinks=True, dirs_exist_ok=True)
    return restored


def verify_set(settings: Settings, found: BackupSet, sample: int = VERIFY_SAMPLE) -> VerifyReport:
    """The restore drill: restore the set into a scratch data directory with its own
    embedded Weaviate (on free ports, stopped afterwards), compare its counts with the
    manifest and the live store, and a random sample of memories (uuid, fields, vector)
    with the live store."""
    began = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="memsys-verify-"))
    drill = settings.replace(data_dir=scratch, weaviate_port=_free_port(), weaviate_grpc_port=_free_port(),
                             backup_dir=None, weaviate_url=None, weaviate_urls=())
    differences: list[str] = []
    try:
        restored = restore_set(drill, found)
        live = weaviate_backup.store_counts(settings)
        for name, count in found.collections.items():
            if restored.get(name) != count:
                differences.append(f"collection {name}: {restored.get(name, 0):,} memories restored, "
                                   f"{count:,} in the backup")
        jobs, audit = _count(drill.jobs_db, "jobs"), _count(drill.jobs_db, "audit")
        if (jobs, audit) != (found.jobs, found.audit_records):
            differences.append(f"{jobs:,} jobs and {audit:,} audit records restored, {found.jobs:,} and "
                               f"{found.audit_records:,} in the backup")
        sampled = 0
        if restored:
            sampled, unlike = weaviate_backup.compare_samples(settings, drill, sample)
            differences += [f"memory {d.uuid} of {d.collection}: {d.problem}" for d in unlike]
        return VerifyReport(found.name, not differences, restored, live, jobs, audit, sampled, differences,
                            time.monotonic() - began)
    finally:
        stop_server(drill)
        shutil.rmtree(scratch, ignore_errors=True)


class Backups(Calls):
    """Backup sets: make one, list them, restore one into an empty data directory, and the
    restore drill that proves one works."""

    @property
    @action(VIEWER, "reading the backups folder")
    def directory(self) -> Path:
        return sets_folder(self._engine.settings)

    @action(OPERATOR, "listing the backups")
    def list(self) -> list[BackupSet]:
        return list_sets(self._engine.settings)

    @action(OPERATOR, "reading a backup")
    def get(self, name: str) -> BackupSet:
        return find_set(self._engine.settings, name)

    @action(ADMIN, "making a backup", audit=AuditAction.BACKUP_CREATED)
    def create(self, name: str | None = None, *, on_phase: Callable[[str], None] | None = None,
               actor: str | None = None) -> BackupSet:
        """A new backup set (named by the time when no name is given); recorded in the audit
        trail, failed or done. The record of this backup itself is in the next one."""
        name = name or default_name()
        settings = self._engine.settings
        with audited(self._engine.audit_trail, AuditAction.BACKUP_CREATED, actor, name) as details:
            began = time.monotonic()
            made = create_set(settings, name, on_phase)
            details.update(memories=made.memories, jobs=made.jobs, bytes=made.size_bytes,
                           seconds=round(time.monotonic() - began, 2))
        log.info("backup %s made: %d memories, %d jobs, %d bytes", name, made.memories, made.jobs, made.size_bytes,
                 extra=event("backup.created", backup=name, memories=made.memories, bytes=made.size_bytes))
        return made

    @action(ADMIN, "restoring a backup", audit=AuditAction.BACKUP_RESTORED)
    def restore(self, name: str, *, actor: str | None = None) -> dict[str, int]:
        """Restore a complete set into this (empty) data directory; refused with a sentence
        for a failed, unfinished or changed set, or a data directory that is not empty."""
        settings = self._engine.settings
        found = find_set(settings, name)
        restored = restore_set(settings, found)
        # Recorded after the restore, so it lands in the restored trail.
        self._engine.audit_trail.record(AuditAction.BACKUP_RESTORED, actor or default_actor(), target=found.name,
                                        details={"memories": sum(restored.values()), "jobs": found.jobs})
        log.info("backup %s restored into %s", found.name, settings.data_dir,
                 extra=event("backup.restored", backup=found.name, memories=sum(restored.values())))
        return restored

    @action(OPERATOR, "checking a backup")
    def verify(self, name: str, sample: int = VERIFY_SAMPLE) -> VerifyReport:
        """The restore drill (see `verify_set`)."""
        return verify_set(self._engine.settings, find_set(self._engine.settings, name), sample)

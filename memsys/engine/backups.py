"""`engine.backups`: backup sets of a data directory and the way back. A set is one folder
under the backups folder (MEMSYS_BACKUP_DIR, default `<data dir>/backups`), or with
MEMSYS_BACKUP_BACKEND=s3 one folder of the bucket (MEMSYS_BACKUP_S3_*: Weaviate's
backup-s3 writes its part there itself, memsys puts the others), holding
Weaviate's own backup of every collection (`weaviate/`), a consistent copy of the job
database with its audit trail (`jobs.sqlite3`, SQLite's online backup: imports may run),
the saved settings files (`files/`), the spool (`spool/`) and `manifest.json`: name,
times, versions, counts, sizes, a checksum per part and the state (running, complete,
failed). Only a complete set whose checksums still match is ever restored. A set is
deleted on request, unless it is being made, restored or checked; the memsys server can
make one on a schedule and keep the newest few (`scheduled_*`, `Backups.run_due`).
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
from memsys.bucket import Bucket, BucketError
from memsys.config import WEAVIATE_VERSION, Settings
from memsys.errors import scrub
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


SCHEDULED = "scheduled-"  # the names of the sets the schedule makes
_IN_USE = "in-use-"  # a marker file (folder) or object (bucket) per process restoring a set


class BackupError(ValueError):
    """A backup set that cannot be made or restored; the message says why."""


@dataclass
class BackupSet:
    """One backup set as its manifest describes it."""

    name: str
    folder: Path | None  # None for a set in a bucket
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
    where: str = ""  # the folder, or s3://bucket/path/name

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
        return cls.from_manifest(data, folder, str(folder))

    @classmethod
    def from_manifest(cls, data: dict[str, Any], folder: Path | None, where: str) -> "BackupSet":
        names = cls.__dataclass_fields__
        found = cls(folder=folder, **{k: v for k, v in data.items() if k in names and k not in ("folder", "where")})
        found.where = where
        if found.state == RUNNING and not sup.is_alive(found.pid, found.pid_start):
            # Whoever made it stopped before finishing (killed, or its machine went down).
            found.state = FAILED
            found.error = found.error or "it was never finished: the process making it stopped"
        return found

    @property
    def scheduled(self) -> bool:
        return self.name.startswith(SCHEDULED)


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
    restored_here: bool = True  # False: a bucket's set, checked without restoring its memories

    @property
    def verdict(self) -> str:
        memories = sum(self.restored.values())
        if not self.ok:
            return f"backup {self.name} does NOT restore as it should: " + "; ".join(self.differences[:5])
        if not self.restored_here:
            return (f"backup {self.name} is whole: its checksums match, its job database holds {self.jobs:,} imports "
                    f"and {self.audit_records:,} audit records, and Weaviate says its backup of {memories:,} memories "
                    f"in {len(self.restored)} collection(s) succeeded (a cluster's memories are restored only by "
                    "`memsys backup restore`)")
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


class _Folder:
    """Sets as folders under the backups folder; a set's folder is its own staging place."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.backups_dir

    @property
    def where(self) -> str:
        return str(self.root)

    def names(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if (p / MANIFEST).is_file()] if self.root.is_dir() else []

    def read(self, name: str) -> BackupSet | None:
        path = Path(name)
        folder = path if (path / MANIFEST).is_file() else self.root / name
        return BackupSet.read(folder) if (folder / MANIFEST).is_file() else None

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def begin(self, name: str) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True)
        return folder

    def write(self, made: BackupSet, staging: Path) -> None:
        sup.write_json(staging / MANIFEST, made.to_json())

    def weaviate_where(self, name: str, staging: Path) -> Path:
        return staging / "weaviate"

    def publish(self, staging: Path, name: str) -> None:
        """The parts are in place already."""

    def end(self, staging: Path) -> None:
        """The set's folder stays."""

    def checksum(self, name: str, staging: Path, part: str) -> dict[str, Any]:
        return _part_checksum(staging, part)

    def fetch(self, found: BackupSet, scratch: Path) -> Path:
        assert found.folder is not None
        return found.folder

    def mark(self, found: BackupSet, what: str) -> Callable[[], None]:
        assert found.folder is not None
        marker = found.folder / f"{_IN_USE}{os.getpid()}.json"
        sup.write_json(marker, {"pid": os.getpid(), "pid_start": sup.process_start(os.getpid()) or "", "what": what})
        return lambda: marker.unlink(missing_ok=True)

    def users(self, found: BackupSet) -> list[dict[str, Any]]:
        assert found.folder is not None
        return [data for p in found.folder.glob(f"{_IN_USE}*.json") if (data := sup.read_json(p))]

    def remove(self, found: BackupSet) -> None:
        assert found.folder is not None
        shutil.rmtree(found.folder)


class _InBucket:
    """Sets as folders of the bucket: Weaviate writes its part there itself; the other parts
    are made in a local staging folder and put there, the manifest last."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = Bucket.for_backups(settings)

    @property
    def where(self) -> str:
        return self.bucket.where

    def names(self) -> list[str]:
        return self.bucket.folders()

    def read(self, name: str) -> BackupSet | None:
        if not _NAME.fullmatch(name):
            return None
        data = self.bucket.read_json(name, MANIFEST)
        return None if data is None else BackupSet.from_manifest(data, None, f"{self.where}/{name}")

    def exists(self, name: str) -> bool:
        return self.bucket.read_json(name, MANIFEST) is not None

    def begin(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"memsys-backup-{name}-"))

    def write(self, made: BackupSet, staging: Path) -> None:
        self.bucket.write_json(made.to_json(), made.name, MANIFEST)

    def weaviate_where(self, name: str, staging: Path) -> str:
        return self.bucket.key(name, "weaviate")

    def publish(self, staging: Path, name: str) -> None:
        self.bucket.put_folder(staging, name)

    def end(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def checksum(self, name: str, staging: Path, part: str) -> dict[str, Any]:
        prefix = self.bucket.key(name, "jobs.sqlite3") if part == "jobs" else self.bucket.key(name, part) + "/"
        return self.bucket.checksum(prefix)

    def fetch(self, found: BackupSet, scratch: Path) -> Path:
        """The memsys parts (not Weaviate's: it reads those from the bucket itself)."""
        for part in ("files", "spool"):
            (scratch / part).mkdir(parents=True, exist_ok=True)
            self.bucket.get_folder(scratch / part, found.name, part)
        self.bucket.get_file(scratch / "jobs.sqlite3", found.name, "jobs.sqlite3")
        return scratch

    def mark(self, found: BackupSet, what: str) -> Callable[[], None]:
        key = f"{_IN_USE}{socket.gethostname()}-{os.getpid()}.json"
        self.bucket.write_json({"pid": os.getpid(), "pid_start": sup.process_start(os.getpid()) or "",
                                "host": socket.gethostname(), "what": what}, found.name, key)
        return lambda: self.bucket.delete_key(found.name, key)

    def users(self, found: BackupSet) -> list[dict[str, Any]]:
        markers = [key for key in self.bucket.keys(found.name, _IN_USE)]
        return [data for key in markers if (data := self.bucket.read_json(found.name, key))]

    def remove(self, found: BackupSet) -> None:
        self.bucket.delete(found.name)


def _place(settings: Settings) -> _Folder | _InBucket:
    return _InBucket(settings) if settings.backup_backend == "s3" else _Folder(settings)


def default_name(now: dt.datetime | None = None, prefix: str = "memsys-") -> str:
    return prefix + (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def sets_folder(settings: Settings) -> str:
    """Where the sets are: the backups folder, or s3://bucket/path."""
    return _place(settings).where


def find_set(settings: Settings, name: str) -> BackupSet:
    """A set by name (in the backups folder or the bucket) or by the path of its folder."""
    place = _place(settings)
    try:
        found = place.read(name)
        if found is None:
            known = ", ".join(s.name for s in list_sets(settings)[:5])
            raise BackupError(f"there is no backup {name!r} in {place.where}"
                              + (f" (there are: {known})" if known else " (there are none)"))
    except BucketError as e:
        raise BackupError(str(e)) from None
    return found


def list_sets(settings: Settings) -> list[BackupSet]:
    """Every set in the backups folder or the bucket, newest first."""
    place = _place(settings)
    try:
        found = [s for s in (place.read(name) for name in place.names()) if s is not None]
    except BucketError as e:
        raise BackupError(str(e)) from None
    return sorted(found, key=lambda s: s.created, reverse=True)


def create_set(settings: Settings, name: str, on_phase: Callable[[str], None] | None = None,
               created: dt.datetime | None = None) -> BackupSet:
    """Make a backup set named `name`; on any failure its manifest says failed (with why)
    and the error is raised."""
    if not _NAME.fullmatch(name):
        raise BackupError(f"{name!r} cannot name a backup: use lower-case letters, digits, - and _ (at most 64)")
    place = _place(settings)
    try:
        if place.exists(name):
            raise BackupError(f"there is already a backup {name!r} in {place.where}; pick another name")
    except BucketError as e:
        raise BackupError(str(e)) from None
    folder = place.begin(name)
    pid = os.getpid()
    made = BackupSet(name, folder if isinstance(place, _Folder) else None, RUNNING,
                     created=created.isoformat(timespec="seconds") if created else _now(), memsys_version=__version__,
                     weaviate_version=WEAVIATE_VERSION, pid=pid, pid_start=sup.process_start(pid) or "",
                     where=str(folder) if isinstance(place, _Folder) else f"{place.where}/{name}")
    phase = on_phase or (lambda _: None)
    try:
        place.write(made, folder)
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
        found = weaviate_backup.create_backup(settings, name, place.weaviate_where(name, folder),
                                              on_started=lambda: phase("weaviate started"))
        made.node, made.collections = found.node, found.collections
        place.publish(folder, name)
        phase("checksums")
        made.parts = {part: place.checksum(name, folder, part) for part in _PARTS}
        made.state, made.finished = COMPLETE, _now()
        place.write(made, folder)
    except BaseException as e:
        made.state, made.finished = FAILED, _now()
        made.error = scrub(str(e) or type(e).__name__, settings.secrets)
        try:
            place.write(made, folder)
        except BucketError:
            pass  # the bucket is what failed: the running manifest there reads as failed once this process ends
        raise
    finally:
        place.end(folder)
    return made


def check_set(settings: Settings, found: BackupSet) -> list[str]:
    """What is wrong with a set for a restore: not complete, or a part whose files no
    longer match their checksum; [] when it can be restored."""
    if found.state != COMPLETE:
        return [f"backup {found.name} is {found.state}" + (f" ({found.error})" if found.error else "")
                + ": it is never restored"]
    place = _place(settings)
    problems = []
    for part, recorded in found.parts.items():
        try:
            now = place.checksum(found.name, found.folder or Path(), part)
        except BucketError as e:
            return [str(e)]
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
    problems = check_set(settings, found)
    if problems:
        raise BackupError("; ".join(problems))
    jobs = _count(settings.jobs_db, "jobs") if settings.jobs_db.exists() else 0
    if jobs:
        raise BackupError(f"the data directory {settings.data_dir} already holds {jobs:,} jobs: a backup is "
                          "restored into an empty data directory (set MEMSYS_DATA_DIR to a new folder)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    place = _place(settings)
    done = place.mark(found, "restore")
    scratch = Path(tempfile.mkdtemp(prefix="memsys-restore-"))
    try:
        try:
            folder = place.fetch(found, scratch)
        except BucketError as e:
            raise BackupError(str(e)) from None
        restored = weaviate_backup.restore_backup(settings, found.name, place.weaviate_where(found.name, folder),
                                                  found.node) if found.collections else {}
        own_audit = _audit_rows(settings.jobs_db)
        _copy_database(folder / "jobs.sqlite3", settings.jobs_db)
        _append_audit(settings.jobs_db, own_audit)
        for path in (folder / "files").iterdir():
            shutil.copy2(path, settings.data_dir / path.name)
        if (folder / "spool").is_dir():
            shutil.copytree(folder / "spool", settings.spool_dir, symlinks=True, dirs_exist_ok=True)
        return restored
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        done()


def verify_set(settings: Settings, found: BackupSet, sample: int = VERIFY_SAMPLE) -> VerifyReport:
    """The restore drill: restore the set into a scratch data directory with its own
    embedded Weaviate (on free ports, stopped afterwards), compare its counts with the
    manifest and the live store, and a random sample of memories (uuid, fields, vector)
    with the live store. A set in a bucket (a cluster's) is checked without a second
    cluster: its checksums, its job database's counts and Weaviate's own word that its
    backup succeeded with the same collections."""
    if settings.backup_backend == "s3":
        return _verify_in_bucket(settings, found)
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


def _verify_in_bucket(settings: Settings, found: BackupSet) -> VerifyReport:
    began = time.monotonic()
    differences = check_set(settings, found)
    place = _InBucket(settings)
    scratch = Path(tempfile.mkdtemp(prefix="memsys-verify-"))
    jobs = audit = 0
    seen: dict[str, int] = {}
    try:
        if not differences:
            folder = place.fetch(found, scratch)
            jobs, audit = _count(folder / "jobs.sqlite3", "jobs"), _count(folder / "jobs.sqlite3", "audit")
            if (jobs, audit) != (found.jobs, found.audit_records):
                differences.append(f"{jobs:,} jobs and {audit:,} audit records in its job database, {found.jobs:,} "
                                   f"and {found.audit_records:,} in its manifest")
            if found.collections:
                status = weaviate_backup.backup_status(settings, found.name, place.weaviate_where(found.name, folder))
                if status.get("status") != "SUCCESS":
                    differences.append(f"Weaviate says its part is {status.get('status')}")
                # Weaviate's own descriptor of the backup names the collections each node holds.
                described = place.bucket.read_json(found.name, "weaviate", found.name, "backup_config.json") or {}
                nodes = described.get("nodes") or {}
                classes = {c for node in nodes.values() for c in (node.get("classes") or [])}
                missing = sorted(set(found.collections) - classes)
                if missing:
                    differences.append(f"Weaviate's part lacks {', '.join(missing)}")
                unfinished = sorted(n for n, node in nodes.items() if node.get("status") != "SUCCESS")
                if unfinished:
                    differences.append(f"Weaviate's part of {', '.join(unfinished)} did not succeed")
                seen = {name: count for name, count in found.collections.items() if name in classes}
    except (BucketError, weaviate_backup.WeaviateBackupError) as e:
        differences.append(str(e))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    live = weaviate_backup.store_counts(settings)
    return VerifyReport(found.name, not differences, seen, live, jobs, audit, 0, differences, time.monotonic() - began,
                        restored_here=False)


def delete_set(settings: Settings, found: BackupSet) -> None:
    """Delete a set, refused with a sentence while it is being made, restored or checked."""
    if found.state == RUNNING:
        raise BackupError(f"backup {found.name} is being made (by process {found.pid}): it can be deleted once "
                          "it has finished or failed")
    place = _place(settings)
    try:
        users = [u for u in place.users(found) if u.get("host", socket.gethostname()) != socket.gethostname()
                 or sup.is_alive(int(u.get("pid", 0)), str(u.get("pid_start", "")))]
        if users:
            raise BackupError(f"backup {found.name} is in use (a {users[0].get('what', 'restore')} by process "
                              f"{users[0].get('pid')}): it can be deleted once that has ended")
        place.remove(found)
    except BucketError as e:
        raise BackupError(str(e)) from None


@dataclass(frozen=True)
class ScheduleRun:
    """What one look at the backup schedule did."""

    made: BackupSet | None
    failed: str
    deleted: list[str]


def schedule_due(settings: Settings, sets: list[BackupSet], now: dt.datetime) -> bool:
    """Whether a scheduled backup is due at `now`: the schedule is on and the newest set it
    made (complete or failed) was made at least the interval before."""
    if settings.backup_every_hours <= 0:
        return False
    last = max((s.created for s in sets if s.scheduled), default="")
    if not last:
        return True
    return now - dt.datetime.fromisoformat(last) >= dt.timedelta(hours=settings.backup_every_hours)


def scheduled_beyond_keep(settings: Settings, sets: list[BackupSet]) -> list[BackupSet]:
    """The scheduled sets to delete: every one older than the newest `backup_keep` complete
    scheduled sets (complete or failed; never one still being made, nor one made by hand)."""
    complete = sorted((s for s in sets if s.scheduled and s.state == COMPLETE), key=lambda s: s.created, reverse=True)
    if len(complete) < settings.backup_keep:
        return []
    oldest_kept = complete[settings.backup_keep - 1].created
    return [s for s in sets if s.scheduled and s.state != RUNNING and s.created < oldest_kept]


def scheduled_problem(sets: list[BackupSet]) -> str:
    """A sentence when the newest scheduled backup failed, else ""."""
    scheduled = sorted((s for s in sets if s.scheduled), key=lambda s: s.created, reverse=True)
    if scheduled and scheduled[0].state == FAILED:
        newest = scheduled[0]
        return f"The scheduled backup {newest.name} failed: {newest.error or 'no reason was recorded'}"
    return ""


class Backups(Calls):
    """Backup sets: make one, list them, restore one into an empty data directory, and the
    restore drill that proves one works."""

    @property
    @action(VIEWER, "reading the backups folder")
    def directory(self) -> str:
        """The backups folder, or s3://bucket/path."""
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

    @action(ADMIN, "deleting a backup", audit=AuditAction.BACKUP_DELETED)
    def delete(self, name: str, *, actor: str | None = None) -> BackupSet:
        """Delete a backup set; refused with a sentence for an unknown one, or one being
        made, restored or checked."""
        settings = self._engine.settings
        with audited(self._engine.audit_trail, AuditAction.BACKUP_DELETED, actor, name) as details:
            found = find_set(settings, name)
            delete_set(settings, found)
            details.update(state=found.state, memories=found.memories, bytes=found.size_bytes)
        log.info("backup %s deleted", name, extra=event("backup.deleted", backup=name))
        return found

    @property
    @action(OPERATOR, "reading the backup schedule")
    def schedule(self) -> tuple[float, int]:
        """Every how many hours the memsys server makes a backup (0: never), and how many it keeps."""
        return self._engine.settings.backup_every_hours, self._engine.settings.backup_keep

    @action(OPERATOR, "reading the backup schedule's last outcome")
    def schedule_problem(self) -> str:
        """A sentence when the newest scheduled backup failed, else "" (Home, Settings)."""
        if self._engine.settings.backup_every_hours <= 0:
            return ""
        try:
            return scheduled_problem(list_sets(self._engine.settings))
        except BackupError as e:
            return f"The scheduled backups cannot be read: {e}"

    @action(ADMIN, "running the backup schedule", audit=AuditAction.BACKUP_CREATED)
    def run_due(self, now: dt.datetime | None = None, *, actor: str = "scheduler") -> ScheduleRun:
        """When a scheduled backup is due at `now` (MEMSYS_BACKUP_EVERY_HOURS), make one
        (named scheduled-<time>), then delete the scheduled ones beyond the newest
        MEMSYS_BACKUP_KEEP complete ones. A failure is logged as an error and kept as a
        failed set, which Home and Settings show to operators."""
        settings = self._engine.settings
        now = now or dt.datetime.now(dt.timezone.utc)
        sets = list_sets(settings)
        made, failed = None, ""
        if schedule_due(settings, sets, now):
            name = default_name(now, SCHEDULED)
            try:
                with audited(self._engine.audit_trail, AuditAction.BACKUP_CREATED, actor, name) as details:
                    made = create_set(settings, name, created=now)
                    details.update(memories=made.memories, jobs=made.jobs, bytes=made.size_bytes, scheduled=True)
                log.info("scheduled backup %s made: %d memories", name, made.memories,
                         extra=event("backup.created", backup=name, memories=made.memories, bytes=made.size_bytes))
            except Exception as e:  # noqa: BLE001 - a failed backup is reported, the schedule goes on
                failed = scrub(str(e) or type(e).__name__, settings.secrets)
                log.error("the scheduled backup %s failed: %s", name, failed,
                          extra=event("backup.failed", backup=name))
            sets = list_sets(settings)
        deleted = []
        for old in scheduled_beyond_keep(settings, sets):
            try:
                delete_set(settings, old)
                deleted.append(old.name)
                self._engine.audit_trail.record(AuditAction.BACKUP_DELETED, actor, target=old.name,
                                                details={"scheduled": True, "keep": settings.backup_keep})
            except BackupError as e:
                log.warning("an old scheduled backup was kept: %s", e, extra=event("backup.prune.skipped"))
        if deleted:
            log.info("scheduled backups deleted beyond the newest %d: %s", settings.backup_keep, ", ".join(deleted),
                     extra=event("backup.pruned", deleted=len(deleted)))
        return ScheduleRun(made, failed, deleted)

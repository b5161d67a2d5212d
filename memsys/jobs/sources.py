"""Saved sources in the job database: what each source says (`SavedSource`), the version of
every document its last successful sync fetched (for incremental syncs), and its history of
syncs (`SyncRecord`, one row each, with counts and errors). Also what a sync decides from a
listing (`plan_sync`), the schedules (`parse_schedule`, `next_run`, `backoff_seconds`) and
the credentials file (`SourceSecrets`, 0600 in the data directory).

The sync itself (list, fetch the changed documents, run a mirror import, settle) is the
engine's (memsys/engine/sources.py): it holds the job runner.
"""
from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from croniter import croniter

from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.sources.base import KINDS, Listing, RemoteEntry, SourceSpec
from memsys.jobs.schema import JobTables

# Sync states: running while it lists and fetches, importing while its job runs, then one of
# done, failed (listing incomplete, the job failed), cancelled, interrupted.
SYNC_ACTIVE = ("running", "importing")
ON_CHANGE = "on change"
_EVERY = re.compile(r"^every\s+(\d+)\s*(m|min|minutes?|h|hours?)$", re.IGNORECASE)
_MIN_INTERVAL = 60.0
BACKOFF_FIRST = 60.0
BACKOFF_CAP = 6 * 3600.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def parse_schedule(text: str) -> str:
    """The schedule in its saved form: '' (only when asked), 'every 15m', 'every 2h',
    'cron */10 * * * *' or 'on change'. Raises ValueError saying what to write."""
    text = " ".join((text or "").split())
    low = text.lower()
    if low in ("", "manual", "none", "off"):
        return ""
    if low in (ON_CHANGE, "on-change", "onchange", "watch"):
        return ON_CHANGE
    match = _EVERY.match(low)
    if match:
        n, unit = int(match.group(1)), match.group(2)[0]
        if n <= 0:
            raise ValueError(f"schedule {text!r}: the interval must be at least 1 minute")
        return f"every {n}{unit}"
    if low.startswith("cron "):
        expression = text[5:].strip()
        if not croniter.is_valid(expression):
            raise ValueError(f"schedule {text!r}: {expression!r} is not a cron expression (write e.g. 'cron */15 * * * *')")
        return f"cron {expression}"
    raise ValueError(f"schedule {text!r} is not one memsys knows: write 'every 30m', 'every 2h', "
                     "'cron 0 * * * *', 'on change' or nothing (sync only when asked)")


def next_run(schedule: str, after: float) -> float | None:
    """When a source with `schedule` is next due after `after` (None: only when asked; 'on
    change' is driven by the folder watch, so it has no time)."""
    if not schedule or schedule == ON_CHANGE:
        return None
    if schedule.startswith("every "):
        amount = schedule[6:]
        seconds = int(amount[:-1]) * (60 if amount.endswith("m") else 3600)
        return after + max(seconds, _MIN_INTERVAL)
    if schedule.startswith("cron "):
        return float(croniter(schedule[5:], after).get_next(float))
    return None


def backoff_seconds(failures: int) -> float:
    """How long a source that failed `failures` times in a row waits: one minute, doubling,
    at most six hours."""
    if failures <= 0:
        return 0.0
    return min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_CAP)


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.match(name):
        raise ValueError(f"source name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit")
    return name


def folder_name(name: str) -> str:
    """The folder a source's documents are fetched into: its documents are named
    '<folder>/<key>' (stable across syncs, so a changed document replaces itself)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "source"


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(who: str) -> bool:
    host, _, pid = who.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's: trust it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class SavedSource:
    """A saved source as the job database keeps it (no secret in it)."""

    id: str
    name: str
    spec: SourceSpec
    defaults: MemoryDefaults
    schedule: str = ""
    paused: bool = False
    credential_env: str = ""
    created_at: float = 0.0
    created_by: str = ""
    last_sync_at: float | None = None
    last_success_at: float | None = None
    next_due_at: float | None = None
    failures: int = 0
    last_error: str = ""
    cursor: str = ""

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def location(self) -> str:
        return self.spec.location

    @property
    def origin(self) -> str:
        """What the mirror imports of this source share: a document the source no longer
        has is removed by the next sync."""
        return json.dumps([self.defaults.project, self.defaults.repo, [f"source:{self.id}"]], ensure_ascii=False)

    @property
    def folder(self) -> str:
        return folder_name(self.name)


@dataclass(frozen=True)
class SyncRecord:
    """One sync of a source: when, why (trigger), how it ended, the counts of documents and
    the reason it failed."""

    id: str
    source_id: str
    started_at: float
    finished_at: float | None
    trigger: str
    state: str
    job_id: str = ""
    listed: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: int = 0
    error: str = ""

    @property
    def active(self) -> bool:
        return self.state in SYNC_ACTIVE


@dataclass(frozen=True)
class StoredEntry:
    version: str
    documents: tuple[str, ...] = ()


@dataclass
class SyncPlan:
    """What a sync does with a complete listing: fetch `fetch` (new and changed documents),
    keep the documents of `unchanged` entries without fetching them, and remove `gone`."""

    fetch: list[RemoteEntry] = field(default_factory=list)
    new: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    unchanged: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    keep_documents: set[str] = field(default_factory=set)


def plan_sync(listing: Listing, spec: SourceSpec, stored: Mapping[str, StoredEntry]) -> SyncPlan:
    """Compare a complete listing with the versions the last successful syncs fetched."""
    plan = SyncPlan()
    seen: set[str] = set()
    for entry in listing.entries:
        if entry.key in seen or not spec.wants(entry.key):
            continue
        seen.add(entry.key)
        before = stored.get(entry.key)
        if before is None:
            plan.new.add(entry.key)
            plan.fetch.append(entry)
        elif before.version != entry.version:
            plan.changed.add(entry.key)
            plan.fetch.append(entry)
        else:
            plan.unchanged.add(entry.key)
            plan.keep_documents.update(before.documents)
    plan.gone = set(stored) - seen
    return plan


def _spec_json(spec: SourceSpec) -> str:
    return json.dumps({"include": list(spec.include), "exclude": list(spec.exclude), "max_bytes": spec.max_bytes,
                       "options": dict(spec.options)}, ensure_ascii=False)


def _spec(kind: str, location: str, raw: str) -> SourceSpec:
    data = json.loads(raw or "{}")
    return SourceSpec(kind, location, tuple(data.get("include") or ()), tuple(data.get("exclude") or ()),
                      data.get("max_bytes"), dict(data.get("options") or {}))


def _defaults(raw: str) -> MemoryDefaults:
    data = json.loads(raw or "{}")
    data["tags"] = tuple(data.get("tags") or ())
    return MemoryDefaults(**data)


class SourceTables(JobTables):
    """Sources, their documents' versions and their syncs, in the job database."""

    # --- sources -----------------------------------------------------------------
    def add(self, name: str, spec: SourceSpec, defaults: MemoryDefaults, *, schedule: str = "",
            credential_env: str = "", created_by: str = "") -> SavedSource:
        name = check_name(name)
        if spec.kind not in KINDS:
            raise ValueError(f"source kind {spec.kind!r}: memsys reads {', '.join(KINDS)}")
        if self.by_name(name) is not None:
            raise ValueError(f"a source called {name!r} exists already; pick another name")
        source_id = uuid.uuid4().hex[:12]
        now = time.time()
        schedule = parse_schedule(schedule)
        with self._tx() as db:
            db.execute(
                "INSERT INTO sources (id, name, kind, location, spec, defaults, schedule, credential_env, created_at,"
                " created_by, next_due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (source_id, name, spec.kind, spec.location, _spec_json(spec),
                 json.dumps(_defaults_json(defaults), ensure_ascii=False), schedule, credential_env, now, created_by,
                 now if schedule else None),
            )
        return self.require(source_id)

    def _source(self, r: Any) -> SavedSource:
        return SavedSource(
            id=r["id"], name=r["name"], spec=_spec(r["kind"], r["location"], r["spec"]), defaults=_defaults(r["defaults"]),
            schedule=r["schedule"], paused=bool(r["paused"]), credential_env=r["credential_env"],
            created_at=r["created_at"], created_by=r["created_by"], last_sync_at=r["last_sync_at"],
            last_success_at=r["last_success_at"], next_due_at=r["next_due_at"], failures=r["failures"],
            last_error=r["last_error"], cursor=r["cursor"],
        )

    def get(self, source_id: str) -> SavedSource | None:
        rows = self._rows("SELECT * FROM sources WHERE id = ?", (source_id,))
        return self._source(rows[0]) if rows else None

    def by_name(self, name: str) -> SavedSource | None:
        rows = self._rows("SELECT * FROM sources WHERE name = ? OR id = ?", (name, name))
        return self._source(rows[0]) if rows else None

    def require(self, name_or_id: str) -> SavedSource:
        source = self.by_name(name_or_id)
        if source is None:
            raise ValueError(f"no source called {name_or_id!r}; `memsys sources list` shows them")
        return source

    def all(self) -> list[SavedSource]:
        return [self._source(r) for r in self._rows("SELECT * FROM sources ORDER BY name")]

    def update(self, source_id: str, **values: Any) -> SavedSource:
        """Change saved fields: spec (a SourceSpec), defaults, schedule, paused,
        credential_env, next_due_at, failures, last_error, cursor, last_sync_at, last_success_at."""
        columns: dict[str, Any] = {}
        for key, value in values.items():
            if key == "spec":
                columns.update(location=value.location, spec=_spec_json(value))
            elif key == "defaults":
                columns["defaults"] = json.dumps(_defaults_json(value), ensure_ascii=False)
            elif key == "schedule":
                columns["schedule"] = parse_schedule(value)
            elif key == "paused":
                columns["paused"] = int(bool(value))
            elif key in ("credential_env", "next_due_at", "failures", "last_error", "cursor", "last_sync_at",
                         "last_success_at"):
                columns[key] = value
            else:
                raise TypeError(f"a source has no field {key!r}")
        if columns:
            with self._tx() as db:
                db.execute(f"UPDATE sources SET {', '.join(f'{k} = ?' for k in columns)} WHERE id = ?",
                           (*columns.values(), source_id))
        return self.require(source_id)

    def remove(self, source_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM source_entries WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM source_syncs WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM sources WHERE id = ?", (source_id,))

    def due(self, now: float) -> list[SavedSource]:
        """Unpaused sources whose next run is at or before `now`, oldest due first."""
        rows = self._rows("SELECT * FROM sources WHERE paused = 0 AND next_due_at IS NOT NULL AND next_due_at <= ?"
                          " ORDER BY next_due_at", (now,))
        return [self._source(r) for r in rows]

    # --- documents' versions -----------------------------------------------------
    def entries(self, source_id: str) -> dict[str, StoredEntry]:
        return {r["key"]: StoredEntry(r["version"], tuple(json.loads(r["documents"] or "[]")))
                for r in self._rows("SELECT key, version, documents FROM source_entries WHERE source_id = ?", (source_id,))}

    def apply_entries(self, source_id: str, fetched: Mapping[str, tuple[str, int | None, list[str]]],
                      gone: Iterable[str]) -> None:
        """After a successful sync: the fetched documents' versions (and the document ids they
        made), and the keys the source no longer has dropped."""
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO source_entries VALUES (?, ?, ?, ?, ?)",
                           [(source_id, key, version, size, json.dumps(docs)) for key, (version, size, docs) in fetched.items()])
            db.executemany("DELETE FROM source_entries WHERE source_id = ? AND key = ?", [(source_id, k) for k in gone])

    # --- syncs -------------------------------------------------------------------
    def claim_sync(self, source_id: str, trigger: str) -> SyncRecord | None:
        """Start a sync of the source unless one is under way by a live process (one sync
        per source at a time); None when one is."""
        sync_id = uuid.uuid4().hex[:12]
        me = owner()
        with self._tx() as db:
            for r in db.execute("SELECT id, owner FROM source_syncs WHERE source_id = ? AND state IN ('running', 'importing')",
                                (source_id,)).fetchall():
                if owner_alive(r["owner"]):
                    return None
                db.execute("UPDATE source_syncs SET state = 'interrupted', finished_at = ?,"
                           " error = CASE WHEN error = '' THEN 'the process that ran it stopped' ELSE error END WHERE id = ?",
                           (time.time(), r["id"]))
            db.execute("INSERT INTO source_syncs (id, source_id, started_at, trigger, state, owner) VALUES (?, ?, ?, ?, 'running', ?)",
                       (sync_id, source_id, time.time(), trigger, me))
        return self.sync(sync_id)

    def _sync(self, r: Any) -> SyncRecord:
        return SyncRecord(r["id"], r["source_id"], r["started_at"], r["finished_at"], r["trigger"], r["state"], r["job_id"],
                          r["listed"], r["new"], r["changed"], r["unchanged"], r["removed"], r["failed"], r["error"])

    def sync(self, sync_id: str) -> SyncRecord:
        return self._sync(self._rows("SELECT * FROM source_syncs WHERE id = ?", (sync_id,))[0])

    def syncs(self, source_id: str, limit: int = 20) -> list[SyncRecord]:
        return [self._sync(r) for r in self._rows(
            "SELECT * FROM source_syncs WHERE source_id = ? ORDER BY started_at DESC LIMIT ?", (source_id, limit))]

    def update_sync(self, sync_id: str, **values: Any) -> SyncRecord:
        allowed = {"state", "job_id", "listed", "new", "changed", "unchanged", "removed", "failed", "error", "finished_at"}
        if set(values) - allowed:
            raise TypeError(f"a sync has no field {sorted(set(values) - allowed)}")
        if values:
            with self._tx() as db:
                db.execute(f"UPDATE source_syncs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?",
                           (*values.values(), sync_id))
        return self.sync(sync_id)

    def set_pending(self, sync_id: str, pending: Mapping[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE source_syncs SET pending = ? WHERE id = ?", (json.dumps(pending), sync_id))

    def pending(self, sync_id: str) -> dict[str, Any]:
        rows = self._rows("SELECT pending FROM source_syncs WHERE id = ?", (sync_id,))
        return json.loads(rows[0]["pending"] or "{}") if rows else {}

    def unsettled(self, source_id: str) -> list[SyncRecord]:
        """Syncs whose import job was left running by a process that stopped (the job may
        have been resumed and finished since)."""
        return [self._sync(r) for r in self._rows(
            "SELECT * FROM source_syncs WHERE source_id = ? AND state IN ('importing', 'interrupted') AND job_id != ''"
            " ORDER BY started_at", (source_id,)) if r["state"] == "interrupted" or not owner_alive(r["owner"])]


def _defaults_json(defaults: MemoryDefaults) -> dict[str, Any]:
    return {"project": defaults.project, "repo": defaults.repo, "agent": defaults.agent, "tags": list(defaults.tags),
            "source": defaults.source}


class SourceSecrets:
    """Source credentials, in the data directory's `secrets/sources.json` (folder 0700, file
    0600), by source id. Nothing else keeps them: not the job database, the logs or the audit."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "secrets" / "sources.json"

    def _read(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text("utf-8")))
        except (FileNotFoundError, ValueError):
            return {}

    def _write(self, data: Mapping[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dict(data), out)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def get(self, source_id: str) -> str | None:
        return self._read().get(source_id)

    def has(self, source_id: str) -> bool:
        return source_id in self._read()

    def set(self, source_id: str, secret: str) -> None:
        data = self._read()
        data[source_id] = secret
        self._write(data)

    def drop(self, source_id: str) -> bool:
        data = self._read()
        if source_id not in data:
            return False
        del data[source_id]
        self._write(data)
        return True


def resolve_secret(secrets: SourceSecrets, source: SavedSource) -> str | None:
    """The credential a sync uses: the stored one, else the environment variable the source
    names (read when the sync runs, never saved)."""
    stored = secrets.get(source.id)
    if stored:
        return stored
    if source.credential_env:
        return os.environ.get(source.credential_env) or None
    return None

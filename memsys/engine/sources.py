"""Saved sources: adding, listing, syncing, pausing and removing them, their credentials,
and the schedule's calls (what is due, what is watched, which sources keep failing).

A sync lists the source; a listing that is not complete (unreachable, refused, partial,
capped) fails the sync with its reason and removes nothing. From a complete listing it
fetches only the documents whose version changed since the last successful sync, into a
spool folder, and runs a mirror import job of them (listed, followed, cancellable and
resumable like any import); the documents it did not fetch because they did not change
are kept by the mirror, the ones the source no longer has are removed. Once the job
completes, the versions it imported are remembered for the next sync.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from memsys.access import action
from memsys.audit import AuditAction, AuditOutcome
from memsys.config import BatchConfig
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.sources.base import SourceProblem, SourceSpec, host_of, open_connector
from memsys.ingest.sources.git import WORK_DIR_OPTION
from memsys.ingest.sources.kinds import KINDS
from memsys.jobs import JobProgress
from memsys.jobs.request import ImportRequest, embedder_name
from memsys.jobs.sources import (
    ON_CHANGE,
    SavedSource,
    SourceSecrets,
    SyncRecord,
    backoff_seconds,
    next_run,
    parse_schedule,
    plan_sync,
    resolve_secret,
)
from memsys.logs import default_actor, event, get_logger
from memsys.units import plural
from memsys.store import MemoryFilter
from memsys.engine.calls import ADMIN, OPERATOR, VIEWER, Calls
from memsys.engine.records import find_name, tidy_name

log = get_logger("sources")
_RESERVED_OPTION = "_"
_LOCAL_URL_KINDS = ("git",)


def _clean_options(options: Mapping[str, str] | None) -> dict[str, str]:
    """A person's options: strings, none of the engine's own (those start with '_')."""
    return {str(k).strip(): str(v).strip() for k, v in (options or {}).items()
            if str(k).strip() and not str(k).startswith(_RESERVED_OPTION)}


def split_credential(location: str) -> tuple[str, str, str]:
    """(location without a password, the user name in it, the password): a URL written
    with its password keeps the password only in the secrets file."""
    parts = urlsplit(location)
    if not parts.scheme or parts.password is None:
        return location, "", ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), parts.username or "", parts.password


class Sources(Calls):
    """Saved sources and their syncs."""

    # --- where a source may read from ----------------------------------------------
    def _roots(self) -> list[Path]:
        settings = self._engine.settings
        return [settings.data_dir.resolve()] + [Path(r).expanduser().resolve() for r in settings.source_roots]

    def _check_location(self, kind: str, location: str) -> str:
        location = (location or "").strip()
        if not location:
            raise ValueError("a source needs a location: a folder, or the address of what it reads")
        local: Path | None = None
        if kind == "folder":
            local = Path(location).expanduser()
        elif kind in _LOCAL_URL_KINDS and (location.startswith("file://") or location.startswith("/")):
            local = Path(urlsplit(location).path if location.startswith("file://") else location)
        elif kind in _LOCAL_URL_KINDS and "://" not in location and "@" not in location:
            raise ValueError(f"{location!r} is not an address git can clone (write https://…, git://…, ssh://… or file:///…)")
        if local is not None:
            if not local.is_absolute():
                raise ValueError(f"{location!r}: write the folder's full path (it is read on the server)")
            resolved = local.resolve()
            if not any(resolved == root or resolved.is_relative_to(root) for root in self._roots()):
                raise ValueError(f"{location!r} is outside the folders sources may read on this server "
                                 "(the data directory and the folders the operator lists in MEMSYS_SOURCE_ROOTS)")
        return location

    def _connector_spec(self, source: SavedSource) -> SourceSpec:
        options = dict(source.spec.options)
        if source.kind in ("git", "website"):  # a clone; a website's page validators
            options[WORK_DIR_OPTION] = str(self._work_dir(source))
        return SourceSpec(source.kind, source.location, source.spec.include, source.spec.exclude,
                          source.spec.max_bytes, options)

    def _work_dir(self, source: SavedSource) -> Path:
        return self._engine.settings.data_dir / "sources" / source.id

    @property
    def _secrets(self) -> SourceSecrets:
        return SourceSecrets(self._engine.settings.data_dir)

    def _audit(self, what: AuditAction, actor: str | None, target: str, details: Mapping[str, Any],
               outcome: AuditOutcome = AuditOutcome.DONE) -> None:
        self._engine.audit_trail.record(what, actor or default_actor(), target=target, outcome=outcome, details=dict(details))

    # --- reading -------------------------------------------------------------------
    @action(VIEWER, "listing sources")
    def list(self) -> list[SavedSource]:
        return self._engine.source_store.all()

    @action(VIEWER, "reading a source")
    def get(self, name: str) -> SavedSource:
        """The source called `name` (or with that id); ValueError when there is none."""
        return self._engine.source_store.require(name)

    @action(VIEWER, "reading a source's syncs")
    def history(self, name: str, limit: int = 20) -> list[SyncRecord]:
        """The source's syncs, newest first: when, why, how each ended, its counts and errors."""
        store = self._engine.source_store
        return store.syncs(store.require(name).id, limit)

    @action(VIEWER, "reading a source")
    def has_credential(self, name: str) -> bool:
        """Whether a credential is stored for the source (never the credential)."""
        return self._secrets.has(self._engine.source_store.require(name).id)

    @action(VIEWER, "reading a source")
    def document_count(self, name: str) -> int:
        """How many documents the source's last successful syncs imported."""
        store = self._engine.source_store
        return len(store.entries(store.require(name).id))

    @action(VIEWER, "reading the sources that keep failing")
    def failing(self) -> list[SavedSource]:
        """Sources whose last syncs failed (backing off), for Home."""
        return [s for s in self._engine.source_store.all() if s.failures > 0 and not s.paused]

    @staticmethod
    @action(VIEWER, "reading the kinds of source")
    def kinds() -> tuple[str, ...]:
        return KINDS

    @staticmethod
    @action(VIEWER, "reading a schedule")
    def check_schedule(text: str) -> str:
        """The schedule in its saved form; ValueError saying what to write."""
        return parse_schedule(text)

    # --- operators -------------------------------------------------------------------
    @action(OPERATOR, "adding a source", audit=AuditAction.SOURCE_ADDED)
    def add(self, name: str, kind: str, location: str, *, defaults: MemoryDefaults,
            include: Sequence[str] = (), exclude: Sequence[str] = (), max_bytes: int | None = None,
            options: Mapping[str, str] | None = None, schedule: str = "", credential: str | None = None,
            credential_env: str = "", actor: str | None = None) -> SavedSource:
        """Save a source. A password written in its URL is moved to the secrets file; a
        `credential` goes there too (0600), or `credential_env` names the environment
        variable the server reads it from. Nothing is fetched until it syncs."""
        kind = (kind or "").strip().lower()
        if kind not in KINDS:
            raise ValueError(f"source kind {kind!r}: memsys reads {', '.join(KINDS)}")
        location, user, password = split_credential((location or "").strip())
        location = self._check_location(kind, location)
        options = _clean_options(options)
        if user and "username" not in options:
            options["username"] = user
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError("the size limit must be a positive number of bytes")
        spec = SourceSpec(kind, location, tuple(g.strip() for g in include if g.strip()),
                          tuple(g.strip() for g in exclude if g.strip()), max_bytes, options)
        secret = credential or password or None
        defaults = self._folded(defaults)
        store = self._engine.source_store
        source = store.add(name, spec, defaults, schedule=schedule,
                           credential_env=(credential_env or "").strip(), created_by=actor or default_actor())
        if secret:
            self._secrets.set(source.id, secret)
        self._audit(AuditAction.SOURCE_ADDED, actor, source.name,
                    {"kind": kind, "location": location, "schedule": source.schedule, "credential": bool(secret)})
        return source

    def _folded(self, defaults: MemoryDefaults) -> MemoryDefaults:
        """A knowledge base (and part) named with another case or spacing than one an
        import used is that one, as on the Import page: a source never forks a knowledge
        base by a typo. Asked of the job database alone, so adding a source needs no
        Weaviate."""
        jobs = self._engine.job_store
        project = tidy_name(defaults.project)
        project = find_name(project, [p.project for p in jobs.project_imports()]) or project
        repo = tidy_name(defaults.repo)
        repo = find_name(repo, jobs.parts_imported(project)) or repo
        return replace(defaults, project=project, repo=repo)

    @action(OPERATOR, "pausing a source", audit=AuditAction.SOURCE_CHANGED)
    def pause(self, name: str, *, actor: str | None = None) -> SavedSource:
        """No scheduled or watched syncs until resumed (a sync can still be asked for)."""
        store = self._engine.source_store
        source = store.update(store.require(name).id, paused=True)
        self._audit(AuditAction.SOURCE_CHANGED, actor, source.name, {"paused": True})
        return source

    @action(OPERATOR, "resuming a source", audit=AuditAction.SOURCE_CHANGED)
    def resume(self, name: str, *, actor: str | None = None) -> SavedSource:
        """Scheduled syncs again; the next one at once, and no back-off."""
        store = self._engine.source_store
        source = store.require(name)
        source = store.update(source.id, paused=False, failures=0,
                              next_due_at=time.time() if source.schedule else None)
        self._audit(AuditAction.SOURCE_CHANGED, actor, source.name, {"paused": False})
        return source

    @action(OPERATOR, "changing a source's schedule", audit=AuditAction.SOURCE_CHANGED)
    def set_schedule(self, name: str, schedule: str, *, actor: str | None = None) -> SavedSource:
        store = self._engine.source_store
        source = store.require(name)
        schedule = parse_schedule(schedule)
        source = store.update(source.id, schedule=schedule, next_due_at=next_run(schedule, time.time()))
        self._audit(AuditAction.SOURCE_CHANGED, actor, source.name, {"schedule": schedule})
        return source

    @action(OPERATOR, "syncing a source", audit=AuditAction.SOURCE_SYNCED)
    def start_sync(self, name: str, *, actor: str | None = None) -> str:
        """`sync(name)` as a background task (a page never waits on a source): poll it with
        `engine.tasks.get(task_id)`; its result is the SyncRecord."""
        source = self._engine.source_store.require(name)
        return self._engine.task_runner.submit(
            "source sync", lambda progress: self.sync(source.id, trigger="asked", actor=actor))

    @action(OPERATOR, "syncing a source", audit=AuditAction.SOURCE_SYNCED)
    def sync(self, name: str, *, trigger: str = "asked", actor: str | None = None) -> SyncRecord:
        """List the source, fetch what changed, run the mirror import and wait for it; returns
        the sync's record (its state says whether it worked, its error why not). ValueError
        when a sync of this source is under way already."""
        engine = self._engine
        store = engine.source_store
        source = store.require(name)
        self._settle(source)
        record = store.claim_sync(source.id, trigger)
        if record is None:
            self._audit(AuditAction.SOURCE_SYNCED, actor, source.name, {"trigger": trigger, "reason": "a sync is under way"},
                        AuditOutcome.REFUSED)
            raise ValueError(f"a sync of {source.name} is under way already; wait for it to end")
        started = time.monotonic()
        try:
            record = self._run(source, record, actor)
        except Exception as e:  # noqa: BLE001 - the sync is this source's; it fails with its reason
            log.error("sync of source %s stopped: %s", source.name, type(e).__name__, exc_info=True,
                      extra=event("source.sync.error", source=source.name))
            record = self._failed(source, record, f"the sync stopped: {type(e).__name__}")
        details = {"trigger": trigger, "state": record.state, "job": record.job_id, "new": record.new,
                   "changed": record.changed, "unchanged": record.unchanged, "removed": record.removed,
                   "failed": record.failed, "seconds": round(time.monotonic() - started, 3)}
        if record.error:
            details["reason"] = record.error
        self._audit(AuditAction.SOURCE_SYNCED, actor, source.name, details,
                    AuditOutcome.DONE if record.state == "done" else AuditOutcome.FAILED)
        log.info("sync of source %s: %s", source.name, record.state, extra=event("source.synced", source=source.name,
                 **{k: v for k, v in details.items() if k != "reason"}))
        return record

    def _run(self, source: SavedSource, record: SyncRecord, actor: str | None) -> SyncRecord:
        engine = self._engine
        store = engine.source_store
        try:
            self._check_location(source.kind, source.location)
            connector = open_connector(self._connector_spec(source), resolve_secret(self._secrets, source))
        except (SourceProblem, ValueError) as e:
            return self._failed(source, record, str(e))
        try:
            listing = connector.list()
            if not listing.complete:
                return self._failed(source, record, (listing.problem or "the source could not be listed completely")
                                    + "; nothing was removed")
            stored = store.entries(source.id)
            plan = plan_sync(listing, source.spec, stored)
            folder = engine.spool.new_folder() / source.folder
            folder.mkdir(parents=True, exist_ok=True)
            fetched: dict[str, list[Any]] = {}
            problems: list[str] = []
            keep = set(plan.keep_documents)
            for entry in plan.fetch:
                try:
                    connector.fetch(entry, folder)
                    fetched[entry.key] = [entry.version, entry.size]
                except SourceProblem as e:
                    problems.append(str(e))
                    if entry.key in stored:
                        keep.update(stored[entry.key].documents)  # the old version stays until one can be fetched
            cursor = str(getattr(connector, "head", "") or "")
        finally:
            connector.close()
        new = len([k for k in fetched if k in plan.new])
        changed = len(fetched) - new
        store.update_sync(record.id, listed=len(plan.new | plan.changed | plan.unchanged), new=new, changed=changed,
                          unchanged=len(plan.unchanged), failed=len(problems))
        error = _problems_text(problems)
        if not fetched and not plan.gone:
            shutil.rmtree(folder.parent, ignore_errors=True)
            return self._succeeded(source, record, {}, set(), cursor, error, job=None)
        provider = engine.system.router.provider
        request = ImportRequest(
            paths=(str(folder.resolve()),) if fetched else (),
            defaults=source.defaults,
            config=BatchConfig.saved(engine.settings.batch_config_path),
            label=f"sync of source {source.name}",
            embedder=provider.fingerprint,
            embedder_name=embedder_name(provider),
            started_by=actor or "",
            origin=source.origin,
            mirror=True,
            keep_documents=tuple(sorted(keep)),
        )
        job_id = engine.job_store.create_job(request.to_json())
        store.set_pending(record.id, {"fetched": fetched, "gone": sorted(plan.gone), "cursor": cursor, "error": error})
        record = store.update_sync(record.id, state="importing", job_id=job_id)
        self._audit(AuditAction.IMPORT_STARTED, actor, job_id, {"label": request.label, "source": source.name,
                                                               "files": len(fetched), "project": source.defaults.project})
        engine.runner.submit(job_id)
        job = engine.runner.wait(job_id)
        return self._after_job(source, record, job)

    def _after_job(self, source: SavedSource, record: SyncRecord, job: JobProgress) -> SyncRecord:
        store = self._engine.source_store
        pending = store.pending(record.id)
        if job.state != "completed":
            reason = job.error or f"its import was {job.state}"
            return self._failed(source, record, f"{reason}; the documents it did not import are fetched again next time",
                                state="cancelled" if job.state == "cancelled" else "failed", count=job.state != "cancelled")
        fetched = pending.get("fetched") or {}
        documents = self._engine.job_store.documents(job.job_id)
        made: dict[str, tuple[str, int | None, list[str]]] = {}
        failed = 0
        for key, (version, size) in fetched.items():
            name = f"{source.folder}/{key}"
            docs = [d for d in documents if d.source_file == name or d.source_file.startswith(name + "/")]
            if any(not self._engine.job_store.document_items(job.job_id, d).complete for d in docs):
                failed += 1  # some of its memories were not written: fetched again next time
                continue
            if not docs:
                failed += 1  # unreadable: the import's problems say why; not fetched again until it changes
            made[key] = (version, size, [d.document_id for d in docs])
        gone = set(pending.get("gone") or ())
        store.update_sync(record.id, failed=record.failed + failed)
        return self._succeeded(source, store.sync(record.id), made, gone, pending.get("cursor", ""),
                               pending.get("error", "") or (job.error if failed else ""), job=job)

    def _succeeded(self, source: SavedSource, record: SyncRecord, made: Mapping[str, tuple[str, int | None, list[str]]],
                   gone: set[str], cursor: str, error: str, job: JobProgress | None) -> SyncRecord:
        store = self._engine.source_store
        store.apply_entries(source.id, made, gone)
        now = time.time()
        current = store.require(source.id)
        store.update(source.id, last_sync_at=now, last_success_at=now, failures=0, last_error="", cursor=cursor or current.cursor,
                     next_due_at=next_run(current.schedule, now) if not current.paused else current.next_due_at)
        return store.update_sync(record.id, state="done", finished_at=now, removed=len(gone), error=error)

    def _failed(self, source: SavedSource, record: SyncRecord, reason: str, *, state: str = "failed",
                count: bool = True) -> SyncRecord:
        store = self._engine.source_store
        now = time.time()
        current = store.get(source.id) or source
        failures = current.failures + 1 if count else current.failures
        due = next_run(current.schedule, now)
        if current.schedule and count:
            due = max(due or now, now + backoff_seconds(failures))  # on change too: tried again after the back-off
        store.update(source.id, last_sync_at=now, failures=failures, last_error=reason, next_due_at=due)
        return store.update_sync(record.id, state=state, finished_at=now, error=reason)

    def _settle(self, source: SavedSource) -> None:
        """A sync whose process stopped while its import ran: if that import was resumed
        and completed since, its documents' versions are remembered now."""
        store, jobs = self._engine.source_store, self._engine.job_store
        for record in store.unsettled(source.id):
            job = jobs.get(record.job_id)
            if job is not None and job.state == "completed" and \
                    (source.last_success_at is None or record.started_at > source.last_success_at):
                self._after_job(source, record, job)
            elif job is None or not job.is_active:
                store.update_sync(record.id, state="interrupted", finished_at=record.finished_at or time.time(),
                                  error=record.error or "the process that ran it stopped")

    # --- the schedule ------------------------------------------------------------------
    @action(OPERATOR, "running the sources that are due", audit=AuditAction.SOURCE_SYNCED)
    def run_due(self, now: float | None = None, *, actor: str = "scheduler") -> list[SyncRecord]:
        """Sync every unpaused source whose time has come, once each however many runs were
        missed (the next run is counted from now)."""
        now = time.time() if now is None else now
        store = self._engine.source_store
        done: list[SyncRecord] = []
        for source in store.due(now):
            store.update(source.id, next_due_at=next_run(source.schedule, now))
            try:
                done.append(self.sync(source.id, trigger="schedule", actor=actor))
            except ValueError:
                continue  # under way elsewhere: that sync counts
        return done

    @action(VIEWER, "listing the watched sources")
    def watched(self) -> list[SavedSource]:
        """Unpaused folder sources synced when their folder changes."""
        return [s for s in self._engine.source_store.all() if s.schedule == ON_CHANGE and not s.paused and s.kind == "folder"]

    # --- admins ------------------------------------------------------------------------
    @action(ADMIN, "changing a source", audit=AuditAction.SOURCE_CHANGED)
    def edit(self, name: str, *, location: str | None = None, include: Sequence[str] | None = None,
             exclude: Sequence[str] | None = None, max_bytes: int | None | str = "unchanged",
             options: Mapping[str, str] | None = None, defaults: MemoryDefaults | None = None,
             schedule: str | None = None, actor: str | None = None) -> SavedSource:
        """Change what a source reads. A new location on another host drops its stored
        credential (it was given for the old host)."""
        store = self._engine.source_store
        source = store.require(name)
        spec = source.spec
        changed: dict[str, Any] = {}
        dropped = False
        new_location = spec.location
        new_options = dict(spec.options)
        if location is not None and location.strip() != spec.location:
            new_location, user, password = split_credential(location.strip())
            new_location = self._check_location(source.kind, new_location)
            if host_of(new_location) != host_of(spec.location):
                dropped = self._secrets.drop(source.id)
            if password:
                self._secrets.set(source.id, password)
            if user:
                new_options["username"] = user
            changed["location"] = new_location
        if options is not None:
            new_options = {**{k: v for k, v in new_options.items() if k == "username"}, **_clean_options(options)}
            changed["options"] = sorted(new_options)
        new_spec = SourceSpec(
            spec.kind, new_location,
            tuple(g.strip() for g in include if g.strip()) if include is not None else spec.include,
            tuple(g.strip() for g in exclude if g.strip()) if exclude is not None else spec.exclude,
            spec.max_bytes if max_bytes == "unchanged" else (int(max_bytes) if max_bytes else None),
            new_options,
        )
        values: dict[str, Any] = {"spec": new_spec}
        if defaults is not None:
            values["defaults"] = defaults
            changed["project"] = defaults.project
        if schedule is not None:
            values["schedule"] = parse_schedule(schedule)
            values["next_due_at"] = next_run(values["schedule"], time.time())
            changed["schedule"] = values["schedule"]
        source = store.update(source.id, **values)
        self._audit(AuditAction.SOURCE_CHANGED, actor, source.name, {**changed, "credential_dropped": dropped})
        return source

    @action(ADMIN, "changing a source's credential", audit=AuditAction.SOURCE_CHANGED)
    def set_credential(self, name: str, credential: str | None = None, *, env: str | None = None,
                       actor: str | None = None) -> SavedSource:
        """Store a credential (in the secrets file, 0600), or name the environment variable
        to read it from (`env`); with neither, forget both."""
        store = self._engine.source_store
        source = store.require(name)
        if credential:
            self._secrets.set(source.id, credential)
        else:
            self._secrets.drop(source.id)
        source = store.update(source.id, credential_env=(env or "").strip())
        self._audit(AuditAction.SOURCE_CHANGED, actor, source.name,
                    {"credential": "stored" if credential else "environment" if env else "none"})
        return source

    @action(ADMIN, "removing a source", audit=AuditAction.SOURCE_REMOVED)
    def remove(self, name: str, *, delete_documents: bool = False, actor: str | None = None) -> int:
        """Forget the source, its history and its credential; with `delete_documents`,
        delete the memories of its documents too. Returns the memories deleted."""
        engine = self._engine
        store = engine.source_store
        source = store.require(name)
        deleted = 0
        if delete_documents:
            for entry in store.entries(source.id).values():
                for document_id in entry.documents:
                    deleted += engine.system.store.delete_matching(MemoryFilter(document_id=document_id),
                                                                   before_delete=engine.job_store.forget)
        store.remove(source.id)
        self._secrets.drop(source.id)
        shutil.rmtree(self._work_dir(source), ignore_errors=True)
        self._audit(AuditAction.SOURCE_REMOVED, actor, source.name, {"memories_deleted": deleted})
        return deleted


def _problems_text(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{plural(len(problems), 'document')} could not be fetched: " + "; ".join(problems[:3]) + more

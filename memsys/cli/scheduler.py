"""The sources' schedule, run by the memsys server (its supervisor starts `memsys sources
scheduler` beside Weaviate), so syncs happen with no dashboard or CLI open.

Every tick it syncs the sources that are due (once each, however many runs the server
missed while it was down: the next run counts from now), and it watches the folders of
"on change" sources with inotify (watchdog): a burst of changes becomes one sync once the
folder has been quiet for the debounce time. A watched folder is synced once at start, for
the changes made while nothing watched. Syncs run one at a time.

While an unpaused source has a schedule, the scheduler keeps its engine (and so its lease
on the server) open: the server's idle timer does not stop a server that has syncs to run.

With MEMSYS_BACKUP_EVERY_HOURS set it also makes the scheduled backups (engine.backups.run_due:
one when due, the oldest beyond MEMSYS_BACKUP_KEEP deleted), and keeps its lease for them too.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from memsys.config import Settings
from memsys.lazy import LazyName, lazy_names
from memsys.logs import event, get_logger

if TYPE_CHECKING:
    from memsys.engine import Engine, SavedSource
    from memsys.jobs.sources import SourceTables
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, SavedSource = lazy_names("memsys.engine", "Engine", "SavedSource")
    SourceTables = LazyName("memsys.jobs.sources", "SourceTables")

log = get_logger("sources")
TICK_SECONDS = 5.0
DEBOUNCE_SECONDS = 2.0


class _Changes(FileSystemEventHandler):
    """Remembers when a watched folder last changed (hidden files ignored, as syncs ignore them)."""

    def __init__(self, source_id: str, root: Path, changed: Callable[[str], None]) -> None:
        self.source_id, self.root, self._changed = source_id, root, changed

    def on_any_event(self, e: FileSystemEvent) -> None:
        if e.event_type in ("opened", "closed_no_write"):
            return
        for raw in (e.src_path, getattr(e, "dest_path", "")):
            if not raw:
                continue
            try:
                relative = Path(str(raw)).relative_to(self.root)
            except ValueError:
                continue
            if not any(part.startswith(".") for part in relative.parts):
                self._changed(self.source_id)
                return


class Scheduler:
    def __init__(self, settings: Settings, *, tick: float = TICK_SECONDS, debounce: float = DEBOUNCE_SECONDS) -> None:
        self.settings = settings
        self.tick = tick
        self.debounce = debounce
        self._tables = SourceTables(settings.job_database, timeout=settings.jobs_db_timeout)
        self._engine: Engine | None = None
        self._observer: Observer | None = None
        self._watches: dict[str, tuple[str, object]] = {}  # source id -> (folder, watch)
        self._changed: dict[str, float] = {}
        self._lock = threading.Lock()
        self._started_watch: set[str] = set()
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def _mark(self, source_id: str) -> None:
        with self._lock:
            self._changed[source_id] = time.monotonic()
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _active(self) -> list[SavedSource]:
        return [s for s in self._tables.all() if s.schedule and not s.paused]

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine.from_settings(self.settings, program="scheduler")
            self._engine.status.store()  # connected now: its lease keeps the server up while syncs are scheduled
        return self._engine

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def _watch(self, watched: list[SavedSource]) -> None:
        wanted = {s.id: s.location for s in watched}
        if self._observer is None and wanted:
            self._observer = Observer()
            self._observer.start()
        for source_id, (folder, watch) in list(self._watches.items()):
            if wanted.get(source_id) != folder:
                assert self._observer is not None
                self._observer.unschedule(watch)
                del self._watches[source_id]
        for source_id, folder in wanted.items():
            if source_id in self._watches or not Path(folder).is_dir():
                continue
            assert self._observer is not None
            try:
                watch = self._observer.schedule(_Changes(source_id, Path(folder).resolve(), self._mark), folder, recursive=True)
            except OSError as e:
                log.warning("cannot watch the folder of a source: %s", e.strerror, extra=event("source.watch.failed"))
                continue
            self._watches[source_id] = (folder, watch)
            if source_id not in self._started_watch:
                self._started_watch.add(source_id)
                self._mark(source_id)  # changes made while nothing watched: one sync now

    def _sync(self, source_id: str, trigger: str) -> None:
        try:
            self.engine().sources.sync(source_id, trigger=trigger, actor="scheduler")
        except ValueError as e:
            log.info("source sync skipped: %s", e, extra=event("source.sync.skipped"))

    def _backups(self, now: dt.datetime | None) -> None:
        try:
            self.engine().backups.run_due(now)
        except Exception as e:  # noqa: BLE001 - the sources' schedule goes on; run_due logs its own failures
            log.error("the backup schedule's tick failed: %s", type(e).__name__, exc_info=True,
                      extra=event("backup.schedule.error"))

    def step(self, now: dt.datetime | None = None) -> None:
        """One tick: a scheduled backup made when due (at `now`, default the clock), watches
        brought up to date, due sources synced, settled changes synced."""
        backups = self.settings.backup_every_hours > 0
        if backups:
            self._backups(now)
        active = self._active()
        self._watch([s for s in active if s.schedule == "on change" and s.kind == "folder"])
        if not active:
            if not backups:
                self._release()  # nothing scheduled: no lease keeps the server up
            return
        self.engine().sources.run_due()
        now = time.monotonic()
        with self._lock:
            ready = [sid for sid, at in self._changed.items() if now - at >= self.debounce]
            for sid in ready:
                del self._changed[sid]
        for source_id in ready:
            self._sync(source_id, "change")

    def _wait(self) -> None:
        """Until the next tick, or the moment the oldest change has been quiet long enough."""
        timeout = self.tick
        with self._lock:
            if self._changed:
                settled = min(self._changed.values()) + self.debounce - time.monotonic()
                timeout = max(0.05, min(timeout, settled))
        self._wake.wait(timeout)
        self._wake.clear()

    def run(self) -> None:
        """Until `stop()` (the supervisor's SIGTERM)."""
        log.info("the sources' schedule runs", extra=event("scheduler.started"))
        try:
            while not self._stopping.is_set():
                try:
                    self.step()
                except Exception as e:  # noqa: BLE001 - one bad tick does not end the schedule
                    log.error("the schedule's tick failed: %s", type(e).__name__, exc_info=True, extra=event("scheduler.error"))
                self._wait()
        finally:
            if self._observer is not None:
                self._observer.stop()
                self._observer.join(timeout=10)
            self._release()
            self._tables.close()

"""The embedding cache (info, check, repair, warm-up, clear) and the short background tasks
the dashboard runs them in."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from memsys.access import Role, action
from memsys.audit import AuditAction
from memsys.embeddings.health import CacheHealthReport
from memsys.embeddings.router import WarmupReport
from memsys.ingest.readers import read_warmup_texts
from memsys.logs import event, get_logger
from memsys.tasks import Progress, TaskStatus
from memsys.engine.calls import ADMIN, OPERATOR, VIEWER, Calls, audited


log = get_logger("engine")


def _check_role(fix: bool = False, **_: Any) -> Role:
    """A check is an operator's; a repair removes entries and is an admin's."""
    return ADMIN if fix else OPERATOR


class Cache(Calls):
    """The embedding cache: what it holds, checking and repairing it, warming it up, clearing it."""

    @property
    @action(VIEWER, "reading the cache's folder")
    def directory(self) -> Path:
        return self._engine.system.router.cache_dir

    @action(VIEWER, "reading the cache's figures")
    def info(self) -> dict[str, Any]:
        """Entries, size, lifetime and session hits and misses, limit, policy, per model."""
        return self._engine.system.router.get_cache_info()

    @action(OPERATOR, "this cache action", audit=AuditAction.CACHE_REPAIRED, role_for=_check_role)
    def check(self, fix: bool = False, progress: Progress | None = None, *,
              actor: str | None = None) -> CacheHealthReport:
        """Find (and with `fix`, remove or repair) cache entries that cannot be trusted.
        A repair is recorded in the audit trail with its counts."""
        router = self._engine.system.router
        what = "repair" if fix else "check"
        log.info("cache %s started: %s", what, router.cache_dir,
                 extra=event("cache.check.started", fix=fix, directory=str(router.cache_dir)))
        if not fix:
            report = router.check_cache(fix=False, progress=progress)
        else:
            with audited(self._engine.audit_trail, AuditAction.CACHE_REPAIRED, actor, str(router.cache_dir)) as details:
                report = router.check_cache(fix=True, progress=progress)
                details.update(checked=report.checked, bad=len(report.bad_entries), removed=len(report.removed),
                               rebuilt=report.rebuilt, problems=report.problem_counts())
        log.info("cache %s done in %.1f s: %d checked, %d healthy, %d bad, %d removed", what, report.seconds,
                 report.checked, report.healthy, len(report.bad_entries), len(report.removed),
                 extra=event("cache.check.done", fix=fix, checked=report.checked, healthy=report.healthy,
                             bad=len(report.bad_entries), removed=len(report.removed), seconds=round(report.seconds, 3),
                             problems=report.problem_counts()))
        return report

    @action(OPERATOR, "warming up the cache")
    def warm_up(
        self,
        texts: Iterable[str] = (),
        *,
        files: Sequence[Path] = (),
        progress: Progress | None = None,
        total: int = 0,
    ) -> WarmupReport:
        """Embed and cache texts ahead of an import: `texts`, then the texts of each warm-up
        file (one per line, or .jsonl), streamed a step at a time, never read whole."""
        stream = itertools.chain(texts, *(read_warmup_texts(Path(f)) for f in files))
        log.info("cache warm-up started", extra=event("cache.warmup.started", files=[Path(f).name for f in files]))
        report = self._engine.system.router.warm_up(stream, progress=progress, total=total)
        log.info("cache warm-up done in %.1f s: %d texts, %d already cached, %d embedded", report.seconds, report.texts,
                 report.already_cached, report.embedded,
                 extra=event("cache.warmup.done", texts=report.texts, already_cached=report.already_cached,
                             embedded=report.embedded, seconds=round(report.seconds, 3)))
        return report

    @action(ADMIN, "clearing the cache", audit=AuditAction.CACHE_CLEARED)
    def clear(self, *, actor: str | None = None) -> int:
        """Remove every cached vector; returns how many entries went (recorded)."""
        router = self._engine.system.router
        with audited(self._engine.audit_trail, AuditAction.CACHE_CLEARED, actor, str(router.cache_dir)) as details:
            details["removed"] = router.clear()
        return int(details["removed"])


class Tasks(Calls):
    """Short background tasks (a preview, a cache check, repair or warm-up from the dashboard)."""

    @action(VIEWER, "starting a task")
    def start(self, name: str, work: Callable[[Progress], Any]) -> str:
        """Run `work(progress)` in the background; poll it with `get(task_id)`."""
        return self._engine.task_runner.submit(name, work)

    @action(VIEWER, "reading a task")
    def get(self, task_id: str) -> TaskStatus | None:
        return self._engine.task_runner.get(task_id)

    @action(OPERATOR, "cancelling a task")
    def cancel(self, task_id: str) -> bool:
        """Ask a background task to stop (a preview stops inside the file it is reading);
        False when it is no longer running."""
        return self._engine.task_runner.cancel(task_id)

"""The embedding cache (info, check, repair, warm-up, clear) and the short background tasks
the dashboard runs them in."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
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


def _prune_role(dry_run: bool = False, **_: Any) -> Role:
    """Saying what a prune would free is an operator's; removing vectors is an admin's."""
    return OPERATOR if dry_run else ADMIN


@dataclass(frozen=True)
class CachePrune:
    """What a cache prune removed (or, in a dry run, would remove)."""

    entries: int
    bytes: int
    models: tuple[str, ...] = ()  # fingerprints whose vectors (and record) go
    unused_days: float | None = None
    dry_run: bool = False


class Cache(Calls):
    """The embedding cache: what it holds, checking and repairing it, warming it up, clearing it."""

    @property
    @action(VIEWER, "reading the cache's folder")
    def directory(self) -> Path:
        return self._engine.system.router.cache_dir

    @action(VIEWER, "reading the cache's figures")
    def info(self) -> dict[str, Any]:
        """Entries, size, lifetime and session hits and misses, limit, policy, per model
        (with the bytes its vectors take, what pruning it frees), and with
        MEMSYS_CACHE_UNUSED_DAYS on, what the next clean-up of unused vectors frees."""
        router = self._engine.system.router
        info = router.get_cache_info()
        for m in info["models"]:
            m["bytes"] = router.cache.prune_candidates(fingerprint=m["fingerprint"])[1]
        days = self._engine.settings.cache_unused_days
        info["unused_days"] = days
        info["unused_entries"], info["unused_bytes"] = (
            router.cache.prune_candidates(unused_seconds=days * 86400) if days else (0, 0))
        return info

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

    @action(VIEWER, "reading which models the store's collections were made with")
    def models_in_use(self) -> dict[str, str]:
        """Fingerprint -> the collection made with it, for every collection of the store
        (connects to Weaviate), and the current embedder's."""
        engine = self._engine
        store = engine.system.store
        store.ensure_collection()
        used = {engine.system.router.provider.fingerprint: "the current embedder"}
        for name in store.versions():
            recorded = store.recorded_embedder(name)
            if recorded and recorded.get("fingerprint"):
                used.setdefault(str(recorded["fingerprint"]), f"collection {name}")
        return used

    @action(ADMIN, "pruning the cache", audit=AuditAction.CACHE_PRUNED, role_for=_prune_role)
    def prune(self, *, model: str | None = None, unused_for_days: float | None = None, dry_run: bool = False,
              actor: str | None = None) -> CachePrune:
        """Remove the vectors of `model` (a fingerprint or a model name from `cache info`)
        when no collection uses it, and/or every vector not used for `unused_for_days`.
        Refused with a sentence for a model a collection or the current embedder uses."""
        engine = self._engine
        cache = engine.system.router.cache
        fingerprints: tuple[str | None, ...] = (None,)
        if model is not None:
            known = cache.models()
            matched = tuple(fp for fp, info in known.items() if model in (fp, info.model)) or \
                ((model,) if model in cache.count_by_model() else ())
            provider = engine.system.router.provider
            if model in (provider.fingerprint, provider.model):
                matched = tuple(dict.fromkeys((*matched, provider.fingerprint)))
            if not matched:
                names = ", ".join(sorted({i.model for i in known.values()})) or "none"
                raise ValueError(f"the cache holds no model {model!r} (it holds: {names})")
            used = self.models_in_use()
            for fp in matched:
                if fp in used:
                    raise ValueError(f"model {model} ({fp}) is in use by {used[fp]}: its cached vectors make "
                                     "re-imports fast; pick a model no collection uses")
            fingerprints = matched
        seconds = unused_for_days * 86400 if unused_for_days is not None else None
        if dry_run:
            figures = [cache.prune_candidates(fingerprint=fp, unused_seconds=seconds) for fp in fingerprints]
            return CachePrune(sum(f[0] for f in figures), sum(f[1] for f in figures),
                              tuple(fp for fp in fingerprints if fp), unused_for_days, dry_run=True)
        target = f"model {model}" if model else f"unused for {unused_for_days:g} days"
        with audited(engine.audit_trail, AuditAction.CACHE_PRUNED, actor, target) as details:
            done = [cache.prune(fingerprint=fp, unused_seconds=seconds) for fp in fingerprints]
            details.update(entries=sum(d[0] for d in done), bytes=sum(d[1] for d in done))
        return CachePrune(sum(d[0] for d in done), sum(d[1] for d in done), tuple(fp for fp in fingerprints if fp),
                          unused_for_days)

    @action(OPERATOR, "applying the cache's retention setting")
    def after_job(self) -> CachePrune | None:
        """MEMSYS_CACHE_UNUSED_DAYS (off by default): vectors not used for that long go,
        checked when a job ends."""
        days = self._engine.settings.cache_unused_days
        if not days:
            return None
        removed, freed = self._engine.system.router.cache.prune(unused_seconds=days * 86400)
        if removed:
            log.info("cache retention: %d vectors not used for %d days removed (%d bytes)", removed, days, freed,
                     extra=event("cache.pruned", entries=removed, bytes=freed, unused_days=days))
        return CachePrune(removed, freed, unused_days=days)


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

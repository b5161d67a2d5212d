"""`engine.retention`: what old jobs keep. `prune(older_than_days)` drops the memory texts
and spooled files of finished jobs older than that (their summaries, metrics and audit
records stay; a job that can still be resumed is kept whole); `plan` says what it would do.
The same rules run after every job ends (`after_job`), with the settings' keep periods."""
from __future__ import annotations

from memsys.access import action
from memsys.audit import AuditAction
from memsys.engine.calls import ADMIN, OPERATOR, Calls, audited
from memsys.jobs.retention import RetentionReport, apply_retention
from memsys.logs import event, get_logger

log = get_logger("retention")


class Retention(Calls):
    """Pruning old jobs' texts and spooled files."""

    @action(OPERATOR, "reading what pruning would remove")
    def plan(self, older_than_days: float) -> RetentionReport:
        """What `prune(older_than_days)` would remove and keep; changes nothing."""
        engine = self._engine
        return apply_retention(engine.job_store, engine.settings.spool_dir, spool_keep_days=None,
                               prune_older_than_days=older_than_days, dry_run=True)

    @action(ADMIN, "pruning old jobs", audit=AuditAction.JOBS_PRUNED)
    def prune(self, older_than_days: float, *, actor: str | None = None) -> RetentionReport:
        """Drop the memory texts and spooled files of finished jobs older than
        `older_than_days`; recorded in the audit trail with its counts."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.JOBS_PRUNED, actor, f"older than {older_than_days:g} days") as d:
            report = apply_retention(engine.job_store, engine.settings.spool_dir, spool_keep_days=None,
                                     prune_older_than_days=older_than_days, forget_remote=engine.spool.forget_remote)
            d.update(jobs=len(report.pruned), items=report.pruned_items, spool_files=report.spool_files,
                     spool_bytes=report.spool_bytes, kept=len(report.kept), vacuumed_bytes=report.vacuumed_bytes)
        return report

    @action(OPERATOR, "applying the retention settings")
    def after_job(self) -> RetentionReport:
        """The settings' rules, run when a job ends: spooled files of settled jobs after
        MEMSYS_SPOOL_KEEP_DAYS, texts after MEMSYS_JOB_TEXTS_KEEP_DAYS (0: kept)."""
        engine = self._engine
        settings = engine.settings
        report = apply_retention(engine.job_store, settings.spool_dir, spool_keep_days=settings.spool_keep_days,
                                 prune_older_than_days=settings.job_texts_keep_days or None,
                                 forget_remote=engine.spool.forget_remote)
        if report.spool_released or report.pruned:
            log.info("retention: spooled files of %d jobs removed (%d files, %d bytes), texts of %d jobs pruned",
                     len(report.spool_released), report.spool_files, report.spool_bytes, len(report.pruned),
                     extra=event("retention.applied", spool_jobs=len(report.spool_released),
                                 spool_files=report.spool_files, spool_bytes=report.spool_bytes,
                                 pruned_jobs=len(report.pruned), pruned_items=report.pruned_items))
        return report

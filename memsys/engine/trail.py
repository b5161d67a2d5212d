"""The audit trail and memsys's own log."""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any, Callable, Iterator, Mapping, Sequence

from memsys.access import action, action_table
from memsys.audit import AuditAction, AuditOutcome, AuditRecord
from memsys.logs import LogLine, LogQuery, default_actor, follow_logs, log_position, read_logs
from memsys.engine.calls import ADMIN, Calls


class Audit(Calls):
    """The audit trail: who did what, when, to what, with what outcome. `actor` is who
    acts: the signed-in user, else `default_actor()` (the dashboard, or the OS user of the
    CLI or a script). Refusals are recorded too."""

    @action(ADMIN, "reading the audit trail")
    def records(self, *, action: str | None = None, actor: str | None = None, target: str | None = None,
                since: dt.datetime | None = None, limit: int = 500) -> list[AuditRecord]:
        """The newest audit records matching every given field, newest first."""
        return self._engine.audit_trail.records(action=action, actor=actor, target=target, since=since, limit=limit)

    # Settings changes are recorded from the admin's Settings page.
    @action(ADMIN, "changing settings", audit=AuditAction.SETTINGS_CHANGED)
    def record_settings_change(self, changes: Mapping[str, str], *, secret_fields: Sequence[str] = (),
                               actor: str | None = None, refused: str = "") -> AuditRecord:
        """Record settings changed (or refused, with the reason). Secret fields are
        recorded as "set" or "cleared", never their value."""
        shown = {name: ("set" if value else "cleared") if name in secret_fields else value
                 for name, value in changes.items()}
        details: dict[str, Any] = {"changes": shown}
        if refused:
            details["reason"] = refused
        return self._engine.audit_trail.record(AuditAction.SETTINGS_CHANGED, actor or default_actor(),
                                               outcome=AuditOutcome.REFUSED if refused else AuditOutcome.DONE,
                                               details=details)

    @action(ADMIN, "recording a refusal")
    def record_refusal(self, call: str, *, actor: str, reason: str) -> AuditRecord:
        """Record a call ("group.call") refused before it reached the engine (a role that
        does not allow it), under the audit trail's name for the action when it has one."""
        record = action_table(type(self._engine)).get(call)
        return self._engine.audit_trail.record(record.audit if record and record.audit else call, actor,
                                               outcome=AuditOutcome.REFUSED, details={"call": call, "reason": reason})


class Logs(Calls):
    """memsys's own log: reading, filtering and following it (an admin's, as the Logs page)."""

    @action(ADMIN, "reading the logs")
    def read(self, query: LogQuery | None = None) -> list[LogLine]:
        """memsys's log lines matching `query` (the newest `query.limit`), oldest first."""
        return read_logs(self._engine.settings.log_dir, query or LogQuery())

    @action(ADMIN, "reading the logs")
    def components(self) -> list[str]:
        """The components found among the newest log lines (a filter's choices)."""
        return sorted({line.component for line in read_logs(self._engine.settings.log_dir, LogQuery(limit=5000))})

    @action(ADMIN, "reading the logs")
    def follow(self, query: LogQuery | None = None, *, recent: bool = False, poll: float = 0.5,
               stop: Callable[[], bool] = lambda: False) -> Iterator[LogLine]:
        """Log lines matching `query` as they are written from this call on, until `stop()`
        is true (checked every `poll` seconds even when nothing is written). With `recent`,
        the newest `query.limit` lines written before the call come first: no line is
        missed or repeated between the two."""
        query = query or LogQuery()
        folder = self._engine.settings.log_dir
        position = log_position(folder)
        before = read_logs(folder, query, end=position) if recent and position else []
        return itertools.chain(before, follow_logs(folder, query, start=position, poll=poll, stop=stop))

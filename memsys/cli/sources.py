"""CLI commands for saved sources: `sources add | list | show | sync | pause | resume |
remove`, and `sources scheduler` (the memsys server runs it: the schedule and the folder
watches). `remove` follows `confirm`'s rule: say what, then ask or need --yes."""
from __future__ import annotations

import argparse
import functools
import os
import signal
import time
from typing import TYPE_CHECKING, Any, Callable

from memsys.cli.confirm import add_yes, close_matches, confirmed, nothing_matched
from memsys.cli.scheduler import DEBOUNCE_SECONDS, TICK_SECONDS, Scheduler
from memsys.config import Settings
from memsys.lazy import lazy_names
from memsys.units import duration, plural

if TYPE_CHECKING:
    from memsys.engine import Engine, MemoryDefaults, SavedSource, SyncRecord
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, MemoryDefaults, SavedSource, SyncRecord = lazy_names("memsys.engine", "Engine", "MemoryDefaults",
                                                                 "SavedSource", "SyncRecord")

CREDENTIAL_ENV = "MEMSYS_SOURCE_CREDENTIAL"


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `sources` to the command line's groups."""
    p = groups.add_parser("sources", help="saved sources (folders, git repositories, ...) kept in sync on a schedule")
    p.set_defaults(func=_list)
    sub = p.add_subparsers(dest="action")

    add = sub.add_parser("add", help="save a source (nothing is fetched until it syncs)")
    add.add_argument("name", help="a short name for the source")
    add.add_argument("kind", help="folder, git, s3, website, imap or webdav")
    add.add_argument("location", help="the folder on the server, or the source's address")
    add.add_argument("--project", required=True)
    add.add_argument("--repo", required=True)
    add.add_argument("--agent", required=True)
    add.add_argument("--tags", default="", help="comma-separated tags for every memory")
    add.add_argument("--include", action="append", default=[], help="a glob of documents to take (repeatable)")
    add.add_argument("--exclude", action="append", default=[], help="a glob of documents to leave out (repeatable)")
    add.add_argument("--max-bytes", type=int, help="documents larger than this are not fetched")
    add.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                     help="a kind's option: branch=main, commits=yes, timeout=60, username=... (repeatable)")
    add.add_argument("--schedule", default="", help="'every 30m', 'every 2h', 'cron 0 * * * *', 'on change' (folders) "
                                                   "or nothing: sync only when asked")
    add.add_argument("--credential-env", default="",
                     help="the environment variable the server reads the source's credential from")
    add.add_argument("--credential-from-env", action="store_true",
                     help=f"store the credential found in ${CREDENTIAL_ENV} now (in the data directory's secrets file)")
    add.set_defaults(func=_add)

    show = sub.add_parser("list", help="every source: kind, schedule, last sync")
    show.set_defaults(func=_list)
    show = sub.add_parser("show", help="one source and its recent syncs (counts and errors)")
    show.add_argument("name")
    show.set_defaults(func=_show)

    sync = sub.add_parser("sync", help="sync a source now: fetch what changed, import it, remove what is gone")
    sync.add_argument("name")
    sync.set_defaults(func=_sync)
    for name, func, text in (("pause", _pause, "no scheduled syncs until resumed"),
                             ("resume", _resume, "scheduled syncs again, the next one at once")):
        q = sub.add_parser(name, help=text)
        q.add_argument("name")
        q.set_defaults(func=func)

    rm = sub.add_parser("remove", help="forget a source, its history and credential (admin)")
    rm.add_argument("name")
    rm.add_argument("--delete-documents", action="store_true", help="delete the memories of its documents too")
    add_yes(rm, dry_run="say what would be removed, change nothing")
    rm.set_defaults(func=_remove)

    sch = sub.add_parser("scheduler", help="run the sources' schedule in the foreground (the memsys server runs this)")
    sch.add_argument("--tick", type=float, default=TICK_SECONDS, help="seconds between looks at what is due")
    sch.add_argument("--debounce", type=float, default=DEBOUNCE_SECONDS,
                     help="seconds a watched folder must be quiet before it syncs")
    sch.set_defaults(func=_scheduler)


def _options(raw: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--option {item!r}: write NAME=VALUE")
        out[name.strip()] = value.strip()
    return out


def _when(at: float | None) -> str:
    if not at:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def schedule_text(source: SavedSource) -> str:
    text = source.schedule or "only when asked"
    if source.paused:
        return f"{text} (paused)"
    return text


def sync_line(record: SyncRecord) -> str:
    counts = (f"{record.new} new, {record.changed} changed, {record.unchanged} unchanged, {record.removed} removed"
              + (f", {record.failed} failed" if record.failed else ""))
    took = f" in {duration(record.finished_at - record.started_at)}" if record.finished_at else ""
    line = f"{_when(record.started_at)}  {record.trigger:<8} {record.state:<11} {counts}{took}"
    if record.job_id:
        line += f"  (import {record.job_id})"
    if record.error:
        line += f"\n    {record.error}"
    return line


def _with_engine(command: Callable[[argparse.Namespace, Engine], int]) -> Callable[[argparse.Namespace], int]:
    """The command run with an engine of the CLI, closed after it."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        engine = Engine(program="cli")
        try:
            return command(args, engine)
        finally:
            engine.close()
    return run


def _on_source(command: Callable[[argparse.Namespace, Engine, SavedSource], int]) -> Callable[[argparse.Namespace], int]:
    """The command run on the source the command line names; an unknown name is said,
    with the names it may have meant."""
    @functools.wraps(command)
    def run(args: argparse.Namespace, engine: Engine) -> int:
        try:
            source = engine.sources.get(args.name)
        except ValueError:
            names = [s.name for s in engine.sources.list()]
            return nothing_matched(f"no source called {args.name!r}", close_matches(args.name, names))
        return command(args, engine, source)
    return _with_engine(run)


@_with_engine
def _add(args: argparse.Namespace, engine: Engine) -> int:
    credential = None
    if args.credential_from_env:
        credential = os.environ.get(CREDENTIAL_ENV) or None
        if credential is None:
            raise ValueError(f"--credential-from-env: ${CREDENTIAL_ENV} is empty")
    defaults = MemoryDefaults(project=args.project, repo=args.repo, agent=args.agent,
                              tags=tuple(t.strip() for t in args.tags.split(",") if t.strip()))
    source = engine.sources.add(args.name, args.kind, args.location, defaults=defaults, include=args.include,
                                exclude=args.exclude, max_bytes=args.max_bytes, options=_options(args.option),
                                schedule=args.schedule, credential=credential, credential_env=args.credential_env)
    print(f"source {source.name} saved: {source.kind} {source.location}, syncs {schedule_text(source)}")
    print(f"  sync it now with: memsys sources sync {source.name}")
    return 0


@_with_engine
def _list(args: argparse.Namespace, engine: Engine) -> int:
    sources = engine.sources.list()
    if not sources:
        print("no sources yet; add one with `memsys sources add NAME KIND LOCATION ...`")
        return 0
    for s in sources:
        state = f"failing ({plural(s.failures, 'time')}): {s.last_error}" if s.failures else f"last synced {_when(s.last_success_at)}"
        print(f"{s.name:<20} {s.kind:<7} {schedule_text(s):<24} {state}")
        print(f"{'':<20} {s.location}")
    return 0


@_on_source
def _show(args: argparse.Namespace, engine: Engine, s: SavedSource) -> int:
    info: list[tuple[str, Any]] = [
        ("kind", s.kind), ("location", s.location), ("schedule", schedule_text(s)),
        ("knowledge base", f"{s.defaults.project}/{s.defaults.repo} (agent {s.defaults.agent})"),
        ("include", ", ".join(s.spec.include) or "everything"), ("exclude", ", ".join(s.spec.exclude) or "nothing"),
        ("size limit", f"{s.spec.max_bytes} bytes" if s.spec.max_bytes else "the import's limits"),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(s.spec.options.items())) or "none"),
        ("credential", "stored" if engine.sources.has_credential(s.name)
         else f"from ${s.credential_env}" if s.credential_env else "none"),
        ("documents", engine.sources.document_count(s.name)),
        ("next sync", _when(s.next_due_at) if s.next_due_at else "when asked" if not s.schedule else s.schedule),
    ]
    if s.failures:
        info.append(("failing", f"{plural(s.failures, 'time')} in a row: {s.last_error}"))
    print(s.name)
    for label, value in info:
        print(f"  {label + ':':<16} {value}")
    history = engine.sources.history(s.name, 10)
    print("syncs:" if history else "syncs: none yet")
    for record in history:
        print("  " + sync_line(record))
    return 0


@_on_source
def _sync(args: argparse.Namespace, engine: Engine, source: SavedSource) -> int:
    record = engine.sources.sync(source.name)
    print(f"sync of {source.name}: {sync_line(record)}")
    return 0 if record.state == "done" and not record.failed else 1


@_on_source
def _pause(args: argparse.Namespace, engine: Engine, source: SavedSource) -> int:
    print(f"source {source.name}: syncs {schedule_text(engine.sources.pause(source.name))}")
    return 0


@_on_source
def _resume(args: argparse.Namespace, engine: Engine, source: SavedSource) -> int:
    print(f"source {source.name}: syncs {schedule_text(engine.sources.resume(source.name))}")
    return 0


@_on_source
def _remove(args: argparse.Namespace, engine: Engine, source: SavedSource) -> int:
    documents = engine.sources.document_count(source.name)
    what = (f"would remove source {source.name} and delete the memories of its {plural(documents, 'document')}"
            if args.delete_documents else
            f"would remove source {source.name} (its {plural(documents, 'document')} stay in the knowledge base)")
    stop = confirmed(args, what)
    if stop is not None:
        return stop
    deleted = engine.sources.remove(source.name, delete_documents=args.delete_documents)
    print(f"source {source.name} removed" + (f"; {plural(deleted, 'memory', 'memories')} deleted" if deleted else ""))
    return 0


def _scheduler(args: argparse.Namespace) -> int:
    scheduler = Scheduler(Settings.load(), tick=args.tick, debounce=args.debounce)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: scheduler.stop())
    scheduler.run()
    return 0

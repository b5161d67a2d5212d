"""CLI commands for stored memories: `memories delete` by document (`--file`), by filter
(`--project/--repo/--agent/--tags/--source`) or by import job (`--job`), with `--dry-run`
to count first; `memories export` of any filter to JSON lines (with `--vectors`, restorable
without embedding) and `memories restore` of such a file. A delete, and a restore that
would overwrite stored memories, follow `confirm`'s rule: say what, then ask or need --yes."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from memsys.cli.confirm import add_yes, close_matches, confirmed, describe_filter, nothing_matched
from memsys.units import plural
from memsys.lazy import lazy_names

if TYPE_CHECKING:
    from memsys.engine import Engine, MemoryFilter
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, MemoryFilter = lazy_names("memsys.engine", "Engine", "MemoryFilter")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `memories` to the command line's groups."""
    _add_memories(groups.add_parser("memories", help="delete, export and restore stored memories"))


def _add_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help="the document's file name as imported (e.g. notes.md, docs/a.pdf)")
    for name in ("project", "repo", "agent", "source"):
        p.add_argument(f"--{name}")
    p.add_argument("--tags", default="", help="comma-separated: memories with any of these tags")


def _filter(args: argparse.Namespace) -> MemoryFilter:
    tags = tuple(t.strip() for t in args.tags.split(",") if t.strip()) or None
    return MemoryFilter(project=args.project, repo=args.repo, agent=args.agent, tags=tags, source=args.source,
                        source_file=args.file)


def _add_memories(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    delete = sub.add_parser("delete", help="delete by --file, by a filter, or by --job; asks first (or --yes); "
                                           "--dry-run counts only")
    _add_filter(delete)
    delete.add_argument("--job", help="an import job id: every memory it imported")
    add_yes(delete, dry_run="count what would be deleted; delete nothing")
    delete.set_defaults(func=_delete)
    export = sub.add_parser("export", help="write the memories a filter matches (all without one) as JSON lines")
    export.add_argument("out", type=Path, help="the .jsonl file to write ('-' for standard output)")
    _add_filter(export)
    export.add_argument("--vectors", action="store_true", help="include each memory's vector, so a restore embeds nothing")
    export.set_defaults(func=_export)
    restore = sub.add_parser("restore", help="write the memories of an export back into the store; asks first "
                                             "(or --yes) when that overwrites memories stored with other fields")
    restore.add_argument("file", type=Path)
    add_yes(restore, dry_run="say how many memories the file holds and how many it would overwrite; write nothing",
            rule="When it would overwrite memories stored with other fields (tags, source, document or place), "
                 "says how many, then asks \"Proceed? [y/N]\" when standard input is a terminal; without one it "
                 "needs --yes (else it changes nothing and exits 2). A restore that only adds memories asks nothing.")
    restore.set_defaults(func=_restore)


def _export(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        if str(args.out) == "-":
            n = engine.memories.export(sys.stdout, _filter(args), vectors=args.vectors)
        else:
            with args.out.open("w", encoding="utf-8") as out:
                n = engine.memories.export(out, _filter(args), vectors=args.vectors)
    finally:
        engine.close()
    print(f"exported {n} memories" + (f" to {args.out}" if str(args.out) != "-" else ""), file=sys.stderr)
    return 0


def _restore(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        stop = _confirm_restore(engine, args)
        if stop is not None:
            return stop
        with args.file.open(encoding="utf-8") as lines:
            n = engine.memories.restore(lines, source=str(args.file))
    finally:
        engine.close()
    print(f"restored {n} memories from {args.file}")
    return 0


def _confirm_restore(engine: Engine, args: argparse.Namespace) -> int | None:
    """A restore that only adds memories (or writes them as they are stored) goes ahead;
    one that would overwrite memories stored with other fields asks first. With --yes
    there is nothing to ask: the file is read once, by the restore itself."""
    if args.yes and not args.dry_run:
        return None
    with args.file.open(encoding="utf-8") as lines:
        total, overwritten = engine.memories.restore_overwrites(lines)
    plan = f"would restore {plural(total, 'memory', 'memories')} from {args.file}"
    if overwritten:
        return confirmed(args, f"{plan}; {plural(overwritten, 'memory is', 'memories are')} stored now with other "
                               "fields (tags, source, document or place) and would be overwritten")
    if args.dry_run:
        return confirmed(args, f"{plan}, overwriting none stored with other fields")
    return None


def _delete(args: argparse.Namespace) -> int:
    where = _filter(args)
    if args.job and not where.is_empty:
        raise ValueError("give either --job or a filter (--file, --project, ...), not both")
    if not args.job and where.is_empty:
        raise ValueError("say what to delete: --file NAME, --project/--repo/--agent/--tags/--source, or --job ID")
    what = f"imported by job {args.job}" if args.job else describe_filter(where)
    engine = Engine()
    try:
        stop = _confirm_delete(engine, args, where, what)
        if stop is not None:
            return stop
        if args.job:
            n = engine.memories.delete_job(args.job)
        else:
            n = engine.memories.delete(where)
    finally:
        engine.close()
    print(f"deleted {plural(n, 'memory', 'memories')} {what}")
    return 0


def _confirm_delete(engine: Engine, args: argparse.Namespace, where: MemoryFilter, what: str) -> int | None:
    """Count what the delete would remove (the engine's dry run), then `confirmed`; a
    filter, file or job that matches nothing says so (naming close file names)."""
    try:
        n = engine.memories.delete_job(args.job, dry_run=True) if args.job else engine.memories.delete(where, dry_run=True)
    except KeyError as e:  # no such job
        return nothing_matched(f"{e.args[0]}; nothing deleted")
    if n:
        return confirmed(args, f"would delete {plural(n, 'memory', 'memories')} {what}")
    close: list[str] = []
    if where.source_file:
        close = close_matches(where.source_file, engine.memories.source_files(dataclasses.replace(where, source_file=None)))
    return nothing_matched(f"no memories {what}; nothing deleted", close)

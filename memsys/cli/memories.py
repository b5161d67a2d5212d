"""CLI commands for stored memories: `memories delete` by document (`--file`), by filter
(`--project/--repo/--agent/--tags/--source`) or by import job (`--job`), with `--dry-run`
to count first; `memories export` of any filter to JSON lines (with `--vectors`, restorable
without embedding) and `memories restore` of such a file."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsys.engine import Engine, MemoryFilter


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
    delete = sub.add_parser("delete", help="delete by --file, by a filter, or by --job; --dry-run counts only")
    _add_filter(delete)
    delete.add_argument("--job", help="an import job id: every memory it imported")
    delete.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    delete.set_defaults(func=_delete)
    export = sub.add_parser("export", help="write the memories a filter matches (all without one) as JSON lines")
    export.add_argument("out", type=Path, help="the .jsonl file to write ('-' for standard output)")
    _add_filter(export)
    export.add_argument("--vectors", action="store_true", help="include the vectors, so a restore embeds nothing")
    export.set_defaults(func=_export)
    restore = sub.add_parser("restore", help="write the memories of an export back into the store")
    restore.add_argument("file", type=Path)
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
        with args.file.open(encoding="utf-8") as lines:
            n = engine.memories.restore(lines, source=str(args.file))
    finally:
        engine.close()
    print(f"restored {n} memories from {args.file}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    where = _filter(args)
    if args.job and not where.is_empty:
        raise ValueError("give either --job or a filter (--file, --project, ...), not both")
    if not args.job and where.is_empty:
        raise ValueError("say what to delete: --file NAME, --project/--repo/--agent/--tags/--source, or --job ID")
    engine = Engine()
    try:
        if args.job:
            n = engine.memories.delete_job(args.job, dry_run=args.dry_run)
            what = f"imported by job {args.job}"
        else:
            n = engine.memories.delete(where, dry_run=args.dry_run)
            what = "matching the filter"
    finally:
        engine.close()
    noun = "memory" if n == 1 else "memories"
    if args.dry_run:
        print(f"{n} {noun} {what} would be deleted (dry run; nothing deleted)")
    else:
        print(f"deleted {n} {noun} {what}")
    return 0

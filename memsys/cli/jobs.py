"""CLI commands for imports and jobs: `import PATH...`, `jobs`, `jobs show|resume|
retry-failed|cancel ID`. Imports run in the engine's job runner, as the dashboard's do; the
command follows them with a tqdm bar, and its exit code is 0 only when nothing failed. An
import with `--mirror` that would remove documents follows `confirm`'s rule first."""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memsys.cli.prune import add_prune_command
from memsys.cli.confirm import add_yes, confirmed
from memsys.units import job_state, plural
from memsys.cli.follow import SHOWN_FAILURES, follow_job, updated_part
from memsys.config import BatchConfig
from memsys.lazy import lazy_names

if TYPE_CHECKING:
    from memsys.engine import Engine, FieldMapping, MemoryDefaults
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, FieldMapping, MemoryDefaults = lazy_names("memsys.engine", "Engine", "FieldMapping", "MemoryDefaults")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `import` and `jobs` to the command line's groups."""
    _add_import(groups.add_parser("import", help="import files and folders as memories"))
    _add_jobs(groups.add_parser("jobs", help="list jobs, show one, resume, retry what failed, cancel"))


def _add_import(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=Path, help="files, folders or zip archives")
    p.add_argument("--project", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--agent", required=True)
    p.add_argument("--tags", default="", help="comma-separated tags for every memory")
    p.add_argument("--source", default="document-import")
    p.add_argument("--config", type=Path, help="a BatchConfig JSON file (default: the saved batch settings)")
    p.add_argument("--id-column", help="csv/jsonl/json: the column (or key) holding each row's id; each row is then "
                                       "a document of its own, replaced when it changes and removed by --mirror when gone")
    p.add_argument("--mirror", action="store_true",
                   help="make the store equal to these paths: documents an earlier import of the same paths had "
                        "and these no longer have are removed once the import completes; asks first (or --yes) "
                        "when that removes any")
    add_yes(p, rule="With --mirror, an import that would remove documents says how many, then asks \"Proceed? [y/N]\" "
                    "when standard input is a terminal; without one it needs --yes (else it changes nothing and "
                    "exits 2).")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    config = BatchConfig.from_file(args.config) if args.config else None
    defaults = MemoryDefaults(
        project=args.project,
        repo=args.repo,
        agent=args.agent,
        tags=tuple(t.strip() for t in args.tags.split(",") if t.strip()),
        source=args.source,
    )
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"not found: {', '.join(missing)}")
    engine = Engine()
    try:
        stop = _confirm_mirror(engine, args, defaults, config)
        if stop is not None:
            return stop
        copies = engine.imports.spool_paths(args.paths)
        mapping = FieldMapping(record_id=args.id_column) if args.id_column else None
        job_id = engine.imports.create(copies, defaults, mapping=mapping, config=config, origin=args.paths, mirror=args.mirror)
        engine.imports.record_started(job_id)
        print(f"job {job_id}", flush=True)
        engine.jobs.run(job_id)
        return follow_job(engine, job_id)
    finally:
        engine.close()


def _confirm_mirror(engine: Engine, args: argparse.Namespace, defaults: MemoryDefaults,
                    config: BatchConfig | None) -> int | None:
    """A mirror import that would remove documents says how many (the engine's preview
    reads the paths as the import would, embedding nothing), then `confirmed`; one that
    removes none, or any import with --yes, goes ahead without reading twice."""
    if not args.mirror or args.yes:
        return None
    mapping = FieldMapping(record_id=args.id_column) if args.id_column else None
    preview = engine.imports.preview(args.paths, defaults, mapping=mapping, config=config, limit=0, origin=args.paths)
    if not preview.mirror_documents:
        return None
    return confirmed(args, f"would import {', '.join(str(p) for p in args.paths)} and then remove "
                           f"{plural(preview.mirror_documents, 'document', 'documents')} "
                           f"({plural(preview.mirror_memories, 'memory', 'memories')}) of knowledge base "
                           f"{defaults.project}/{defaults.repo} that an earlier import of these paths had and they "
                           "no longer have")


def _add_jobs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_list_jobs)
    sub = p.add_subparsers(dest="action")
    show = sub.add_parser("show", help="a job's counts, metrics and failures")
    show.add_argument("job_id")
    show.add_argument("--failed", type=int, default=SHOWN_FAILURES, help="how many failures to list")
    show.add_argument("--csv", type=Path, help="write every failed item to this CSV file (read a page at a time)")
    show.set_defaults(func=_show)
    for name, func, text in (
        ("resume", _resume, "continue a cancelled, failed or interrupted job"),
        ("retry-failed", _retry_failed, "re-run only what failed in a job"),
        ("cancel", _cancel, "stop a running job after its current batch"),
    ):
        action = sub.add_parser(name, help=text)
        action.add_argument("job_id")
        action.set_defaults(func=func)
    add_prune_command(sub)


def _list_jobs(args: argparse.Namespace) -> int:
    engine = Engine()
    jobs = engine.jobs.recent(args.limit)
    if not jobs:
        print("no jobs yet: python -m memsys import PATH --project P --repo R --agent A")
    for j in jobs:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(j.created_at))
        by = f"  by {j.started_by}" if j.started_by else ""
        print(f"{j.job_id}  {when}  {job_state(j.state, j.failed).lower():<22} {j.processed}/{j.total}  written {j.written}  updated {j.updated}  "
              f"unchanged {j.unchanged}  failed {j.failed}  removed {j.removed}  {j.label}{by}")
    return 0


def _show(args: argparse.Namespace) -> int:
    engine = Engine()
    job = engine.jobs.require(args.job_id)
    print(f"job {job.job_id} ({job.label}): {job_state(job.state, job.failed).lower()}")
    print(f"  {plural(job.total, 'memory', 'memories')}: {job.written} written, {updated_part(job)}{job.unchanged} unchanged, "
          f"{job.failed} failed, {job.pending} pending" + (f"; {job.removed} stored memories removed" if job.removed else ""))
    if job.error:
        print(f"  {job.error}")
    engine.jobs.metrics(job.job_id).print_summary()
    for f in itertools.islice(engine.jobs.iter_failed_items(job.job_id), max(args.failed, 0)):
        print(f"  failed: {f.item}: {f.reason}")
    if args.csv:
        args.csv.write_text(engine.jobs.failed_items_csv(job.job_id), encoding="utf-8")
        print(f"  every failed item written to {args.csv}")
    return 0


def _resume(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        engine.jobs.resume(args.job_id)
        return follow_job(engine, args.job_id)
    finally:
        engine.close()


def _retry_failed(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        n = engine.jobs.retry_failed(args.job_id)
        print(f"retrying {plural(n, 'failure')} of job {args.job_id}", flush=True)
        return follow_job(engine, args.job_id)
    finally:
        engine.close()


def _cancel(args: argparse.Namespace) -> int:
    engine = Engine()
    if not engine.jobs.cancel(args.job_id):  # recorded as refused
        job = engine.jobs.require(args.job_id)
        print(f"job {job.job_id} is {job_state(job.state, job.failed).lower()}; nothing to cancel")
        return 0
    print(f"job {args.job_id}: cancel requested; it stops within seconds (what is written stays written, the rest is not started)")
    return 0

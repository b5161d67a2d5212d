"""`jobs prune --older-than 30d [--dry-run] [--yes]` (added under `jobs` by memsys/cli/jobs.py)
and the age arguments (`30d`, `12h`, `2w`) the prune commands share."""
from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from memsys.cli.confirm import add_yes, confirmed, nothing_matched
from memsys.lazy import LazyName
from memsys.units import size

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")

_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0}


def age_days(text: str) -> float:
    """`30d`, `12h`, `2w` (or a bare number of days) as days."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text.lower())
    if not found:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age: write 30d, 12h or 2w")
    return float(found.group(1)) * _UNITS[found.group(2) or "d"]


def add_prune_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prune = sub.add_parser(
        "prune", help="drop the text old jobs keep of their memories, and their spooled files; summaries, metrics and audit records stay",
        description="For every finished job older than --older-than: the text of each of its memories and its "
        "spooled files are removed; its summary, counts, metrics, warnings, the reasons of its failures and the audit "
        "trail stay. A job that can still be resumed is kept whole. A pruned job cannot be resumed or retried. "
        "The job database is vacuumed afterwards when that gives space back.")
    prune.add_argument("--older-than", type=age_days, required=True, metavar="AGE", help="30d, 12h, 2w")
    add_yes(prune, dry_run="say what would be removed; remove nothing")
    prune.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        plan = engine.retention.plan(args.older_than)
        for job_id, why in plan.kept.items():
            print(f"kept {job_id}: {why}")
        if not plan.pruned:
            return nothing_matched(f"no finished job older than {args.older_than:g} days has memory text left to prune")
        stop = confirmed(args, f"would prune {len(plan.pruned)} jobs older than {args.older_than:g} days: the text of "
                               f"{plan.pruned_items:,} memories and {plan.spool_files:,} spooled files "
                               f"({size(plan.spool_bytes)})")
        if stop is not None:
            return stop
        done = engine.retention.prune(args.older_than)
        print(f"Pruned {len(done.pruned)} jobs: the text of {done.pruned_items:,} memories and {done.spool_files:,} "
              f"spooled files ({size(done.spool_bytes)}) removed"
              + (f"; the job database gave back {size(done.vacuumed_bytes)}." if done.vacuumed_bytes else "."))
        return 0
    finally:
        engine.close()

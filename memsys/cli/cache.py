"""CLI commands for the embedding cache: `cache info`, `cache check [--fix]`, `cache warmup
FILE`, `cache prune --model M | --unused-for AGE` and `cache clear` (both ask first, or
--yes). Written for an operator: counts, kinds of problems in plain words, what was
removed; `cache check` exits 1 when it finds problems it did not fix."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from memsys.cli.confirm import add_yes, confirmed, nothing_matched
from memsys.cli.prune import age_days
from memsys.ingest.readers.warmup import WARMUP_FORMAT
from memsys.lazy import LazyName, lazy_names
from memsys.units import size

if TYPE_CHECKING:
    from memsys.engine import Engine
    from memsys.embeddings.health import PROBLEMS, CacheHealthReport
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")
    PROBLEMS, CacheHealthReport = lazy_names("memsys.embeddings.health", "PROBLEMS", "CacheHealthReport")

_SHOWN_ENTRIES = 20


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `cache` to the command line's groups."""
    _add_cache(groups.add_parser("cache", help="inspect, check, repair, warm up and clear the embedding cache"))


def _add_cache(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="cached embeddings, size, lifetime hits and misses, size limit, eviction policy")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.set_defaults(func=_info)
    check = sub.add_parser(
        "check",
        help="check every entry; exits 1 if problems are found and --fix is not given",
        description="Runs diskcache's own consistency check, then reads every entry and verifies it "
        "decodes, has its model's dimension, holds only finite numbers and matches its key's model.",
    )
    check.add_argument("--fix", action="store_true", help="remove what cannot be trusted, repair the rest, then check again")
    check.set_defaults(func=_check)
    warmup = sub.add_parser("warmup", help="embed and cache text ahead of an import", description=WARMUP_FORMAT)
    warmup.add_argument("file", type=Path, help="a text file (one text per line) or a .jsonl file")
    warmup.set_defaults(func=_warmup)
    prune = sub.add_parser(
        "prune", help="remove the cached embeddings of a model no collection uses, or those not used for an age; asks first",
        description="--model removes every vector of one model (a name or fingerprint from `cache info`) when no "
        "collection of the store and not the current embedder uses it; --unused-for removes cached embeddings no import or "
        "search has used for that long (a use is noted once a day). The next import embeds what it needs again.")
    which = prune.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a model name or fingerprint, as `cache info` lists them")
    which.add_argument("--unused-for", type=age_days, metavar="AGE", help="90d, 12h, 2w")
    add_yes(prune, dry_run="say how many cached embeddings and how much space would go; remove nothing")
    prune.set_defaults(func=_prune)
    clear = sub.add_parser("clear", help="remove every cached vector; asks first (or --yes)")
    add_yes(clear, dry_run="say how many cached embeddings would go; remove nothing")
    clear.set_defaults(func=_clear)


def _engine() -> Engine:
    # The cache commands never touch Weaviate: the engine connects only on first use.
    return Engine()


# --- info ------------------------------------------------------------------------------

def _info(args: argparse.Namespace) -> int:
    info = _engine().cache.info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    lookups = info["hits"] + info["misses"]
    limit = size(info["size_limit_bytes"])
    print(f"Embedding cache at {info['directory']}")
    print(f"  embeddings:      {info['num_entries']:,} cached")
    print(f"  size on disk:    {size(info['total_size_bytes'])}")
    print(f"  lookups:         {info['hits']:,} hits, {info['misses']:,} misses"
          f" ({info['hit_rate']:.1%} hit rate over {lookups:,} lookups, lifetime)")
    print(f"  eviction policy: {info['eviction_policy']}")
    if info["evicts"]:
        print(f"  size limit:      {limit}; beyond it the oldest cached embeddings are evicted")
    else:
        print(f"  size limit:      {limit}, not enforced: policy \"none\" never evicts a cached embedding")
    print("  models:")
    if not info["models"]:
        print("    (none yet)")
    for m in info["models"]:
        current = "  <- current" if m["current"] else ""
        dims = f"{m['dimensions']} dims" if m["dimensions"] else "size unknown"
        print(f"    {m['provider']} {m['model']} ({dims}, {m['fingerprint']}): {m['entries']:,} cached embeddings, "
              f"{size(m['bytes'])}{current}")
        if not m["current"]:
            print(f"      not the current model: `memsys cache prune --model {m['fingerprint']}` frees {size(m['bytes'])}"
                  " once no collection uses it")
    if info["unused_days"]:
        print(f"  clean-up:        cached embeddings not used for {info['unused_days']} days go when a job ends; now that is "
              f"{info['unused_entries']:,} cached embeddings, {size(info['unused_bytes'])}")
    else:
        print("  clean-up:        off (MEMSYS_CACHE_UNUSED_DAYS); `memsys cache prune --unused-for 90d --dry-run` "
              "says what it would free")
    return 0


# --- prune ------------------------------------------------------------------------------

def _prune(args: argparse.Namespace) -> int:
    engine = _engine()
    try:
        plan = engine.cache.prune(model=args.model, unused_for_days=args.unused_for, dry_run=True)
        what = f"of model {args.model}" if args.model else f"not used for {args.unused_for:g} days"
        if not plan.entries:
            return nothing_matched(f"no cached embeddings {what}; nothing to prune")
        stop = confirmed(args, f"would remove {plan.entries:,} cached embeddings {what} ({size(plan.bytes)}) from "
                               f"{engine.cache.directory}; an import that needs them embeds them again")
        if stop is not None:
            return stop
        done = engine.cache.prune(model=args.model, unused_for_days=args.unused_for)
        print(f"Removed {done.entries:,} cached embeddings {what} ({size(done.bytes)}).")
        return 0
    finally:
        engine.close()


# --- check ------------------------------------------------------------------------------

def _check(args: argparse.Namespace) -> int:
    engine = _engine()
    print(f"Checking the embedding cache at {engine.cache.directory}", flush=True)
    report = _run_check(engine, fix=args.fix)
    _print_found(report)
    if report.ok:
        return 0
    if not args.fix:
        print("\nRun `python -m memsys cache check --fix` to remove what cannot be trusted;"
              " the next import embeds those memories again.")
        return 1
    _print_fixed(report)
    again = _run_check(engine, fix=False)
    if again.ok:
        print(f"\nA second check found no problems ({again.checked:,} cached embeddings).")
        return 0
    print("\nA second check still finds problems:")
    _print_counts(again)
    return 1


def _run_check(engine: Engine, fix: bool) -> CacheHealthReport:
    # The bar goes to stderr and only to a terminal, so output stays clean in scripts.
    with tqdm(unit=" cached embeddings", file=sys.stderr, disable=None, leave=False) as bar:
        def progress(checked: int, total: int) -> None:
            bar.total = total
            bar.update(checked - bar.n)

        return engine.cache.check(fix=fix, progress=progress)


def _print_found(report: CacheHealthReport) -> None:
    bad = len(report.bad_entries)
    print(f"Checked {report.checked:,} cached embeddings in {report.seconds:.1f} s: {report.healthy:,} healthy, {bad:,} bad.")
    if report.ok:
        print("No problems found.")
        return
    print("\nProblems:")
    _print_counts(report)
    if report.bad_entries:
        print(f"\nBad cached embeddings{' (first %d)' % _SHOWN_ENTRIES if bad > _SHOWN_ENTRIES else ''}:")
        for e in report.bad_entries[:_SHOWN_ENTRIES]:
            print(f"  {e.key or f'row {e.rowid} (key lost)'}  {e.problem}: {e.detail}")
    other = [p for p in report.database_problems if p.problem != "database_damaged"]
    damage = [p for p in report.database_problems if p.problem == "database_damaged"]
    if other or damage:
        print("\ndiskcache's own check:")
        for p in [*damage, *other][:_SHOWN_ENTRIES]:
            print(f"  {p.problem}: {p.detail}")


def _print_counts(report: CacheHealthReport) -> None:
    for problem, n in report.problem_counts().items():
        print(f"  {n:>7,}  {problem:<17} {PROBLEMS.get(problem, '')}")


def _print_fixed(report: CacheHealthReport) -> None:
    print("\nFixing:")
    if report.rebuilt:
        lost = len(report.removed)
        print(f"  The database was damaged: rebuilt it from the {report.kept:,} cached embeddings that still read and validate.")
        print(f"  {lost:,} cached embeddings could not be kept" + ("." if lost else "; nothing was lost."))
    removed: dict[str, int] = {}
    for e in report.removed:
        removed[e.problem] = removed.get(e.problem, 0) + 1
    if removed:
        kinds = ", ".join(f"{n:,} {problem}" for problem, n in sorted(removed.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"  Removed {len(report.removed):,} cached embeddings: {kinds}.")
        print("  The next import (or `cache warmup`) embeds their memories again.")
    for p in report.repaired:
        print(f"  diskcache repaired {p.problem}: {p.detail}")


# --- warmup -----------------------------------------------------------------------------

def _warmup(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist or is not a file")
    with tqdm(unit=" embeddings", file=sys.stderr, disable=None, leave=False) as bar:
        report = _engine().cache.warm_up(files=[path], progress=lambda done, _total: bar.update(done - bar.n))
    print(f"Warmed up {report.texts:,} embeddings from {path.name} in {report.seconds:.1f} s: "
          f"{report.already_cached:,} were already cached, {report.embedded:,} embedded and cached now"
          + (f", {report.repeats:,} repeated within the file." if report.repeats else "."))
    return 0


# --- clear ------------------------------------------------------------------------------

def _clear(args: argparse.Namespace) -> int:
    engine = _engine()
    n = engine.cache.info()["num_entries"]
    if not n:
        return nothing_matched(f"the embedding cache at {engine.cache.directory} is empty; nothing to clear")
    stop = confirmed(args, f"would remove all {n:,} cached embeddings from {engine.cache.directory}; the next import "
                           "embeds everything again")
    if stop is not None:
        return stop
    removed = engine.cache.clear()
    print(f"Removed {removed:,} cached embeddings from {engine.cache.directory}.")
    return 0

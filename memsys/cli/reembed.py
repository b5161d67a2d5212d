"""CLI commands for the embedding model of the store: `reembed` (embed every memory again
with the configured embedder into a new collection, followed like an import, then search
switches to it), `collections` (the store's collections, which one search uses) and
`collections drop NAME` (an old one, once it is not needed; asks first, or --yes)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from memsys.cli.confirm import add_yes, close_matches, confirmed, nothing_matched
from memsys.units import plural
from memsys.cli.follow import follow_job
from memsys.config import BatchConfig
from memsys.lazy import LazyName

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `reembed` and `collections` to the command line's groups."""
    _add_reembed(groups.add_parser(
        "reembed", help="embed every memory again with the configured embedder; search switches when done"))
    _add_collections(groups.add_parser(
        "collections", help="the store's collections (after re-embeds); drop an old one"))


def _add_reembed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="a BatchConfig JSON file (default: the saved batch settings)")
    p.set_defaults(func=_reembed)


def _reembed(args: argparse.Namespace) -> int:
    config = BatchConfig.from_file(args.config) if args.config else None
    engine = Engine()
    try:
        job_id = engine.collections.create_reembed(config=config)
        print(f"job {job_id}", flush=True)
        engine.jobs.run(job_id)
        code = follow_job(engine, job_id)
        if engine.jobs.require(job_id).state == "completed":
            live = next(c for c in engine.collections.versions() if c.live)
            print(f"search now uses {live.name} ({live.memories} memories, {live.embedder})")
        return code
    finally:
        engine.close()


def _add_collections(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_list)
    sub = p.add_subparsers(dest="action")
    drop = sub.add_parser("drop", help="drop an old collection (not the one search uses); asks first (or --yes)")
    drop.add_argument("name")
    add_yes(drop, dry_run="say what would be dropped; drop nothing")
    drop.set_defaults(func=_drop)


def _list(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        for c in engine.collections.versions():
            print(f"{'*' if c.live else ' '} {c.name}  {c.memories} memories  {c.embedder}"
                  + ("  (searched now)" if c.live else ""))
    finally:
        engine.close()
    return 0


def _drop(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        stop = _confirm_drop(engine, args)
        if stop is not None:
            return stop
        n = engine.collections.drop(args.name)
    finally:
        engine.close()
    print(f"dropped {args.name} ({plural(n, 'memory', 'memories')})")
    return 0


def _confirm_drop(engine: Engine, args: argparse.Namespace) -> int | None:
    """Say which collection and how many memories would go, then `confirmed`; a name that
    is not a collection of the store names the ones there are."""
    versions = {c.name: c for c in engine.collections.versions()}
    found = versions.get(args.name)
    if found is None:
        return nothing_matched(f"no collection {args.name} (the store has {', '.join(versions) or 'none'});"
                               " nothing dropped", close_matches(args.name, versions))
    if found.live:
        raise ValueError(f"{found.name} is the collection search uses now; it cannot be dropped")
    return confirmed(args, f"would drop collection {found.name} and its {plural(found.memories, 'memory', 'memories')}"
                           f" ({found.embedder})")

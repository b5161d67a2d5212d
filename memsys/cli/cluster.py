"""CLI commands for the store's replicas: `verify [--job ID]` checks that a job's memories
are readable with consistency ALL and on every replica; `cluster` shows the nodes."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from memsys.lazy import LazyName

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")

_SHOWN = 20


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `verify` and `cluster` to the command line's groups."""
    _add_verify(groups.add_parser("verify", help="check that a job's memories are on every replica (consistency ALL)"))
    _add_cluster(groups.add_parser("cluster", help="the Weaviate nodes, their status, shards and replication"))


def _add_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", dest="job_id", help="the job to check (default: the most recent one)")
    p.add_argument("--show", type=int, default=_SHOWN, help="how many unreplicated memories to list")
    p.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        job_id = args.job_id
        if job_id is None:
            recent = engine.jobs.recent(limit=1)
            if not recent:
                raise ValueError("no jobs yet; there is nothing to verify")
            job_id = recent[0].job_id
        try:
            report = engine.jobs.verify(job_id)
        except KeyError as e:
            raise ValueError(str(e).strip("\"'")) from None
        print(f"job {job_id}: {report.summary}")
        for memory in report.not_replicated[:args.show]:
            print(f"  {memory.item} ({memory.uuid}): {memory.reason}")
        if len(report.not_replicated) > args.show:
            print(f"  ... and {len(report.not_replicated) - args.show:,} more (--show N lists more)")
        return 0 if report.ok else 1
    finally:
        engine.close()


def _add_cluster(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_cluster)


def _cluster(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        status = engine.server.cluster()
        factor = status.replication_factor or "not created yet"
        print(f"collection {status.collection} ({status.mode}): replication factor {factor}, "
              f"{status.shard_count or '—'} shards, async replication {'on' if status.async_replication else 'off'}; "
              f"writes {status.write_consistency}, reads {status.read_consistency}")
        for node in status.nodes:
            shards = "—" if node.shards is None else node.shards
            leader = " (Raft leader)" if node.leader else ""
            print(f"  {node.name:<10} {node.status:<10} shards {shards}{leader}")
        if status.detail:
            print(f"  {status.detail}")
        return 0 if not status.down else 1
    finally:
        engine.close()

"""CLI commands for worker processes: `worker [--concurrency N]` runs one (jobs come from
the queue in MEMSYS_QUEUE_URL; SIGTERM or Ctrl-C stop it after the batches it holds);
`workers` lists them: host, pid, the batches each holds now, its last heartbeat."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from memsys import workers as worker_processes  # procrastinate's worker, loaded by `worker` only
from memsys.config import Settings
from memsys.lazy import lazy_names
from memsys.logs import configure_logging
from memsys.units import plural
from memsys.workers.settings import WorkerSettings

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, = lazy_names("memsys.engine", "Engine")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `worker` and `workers` to the command line's groups."""
    p = groups.add_parser("worker", help="run a worker: take the work of imports from the queue (MEMSYS_QUEUE_URL)")
    p.add_argument("--concurrency", type=int, metavar="N",
                   help="batches this worker runs at once (default MEMSYS_WORKER_CONCURRENCY, else 2)")
    p.set_defaults(func=_worker)
    p = groups.add_parser("workers", help="the workers: host, pid, the batches each holds, its last heartbeat")
    p.add_argument("--job", metavar="ID", help="instead, which worker read each part of this import's files and did each batch")
    p.set_defaults(func=_workers)


def _worker(args: argparse.Namespace) -> int:
    worker_settings = WorkerSettings.load()
    if not worker_settings.enabled:
        raise ValueError("no queue to take work from: set MEMSYS_QUEUE_URL (or MEMSYS_DATABASE_URL) to a PostgreSQL "
                         "database, e.g. postgresql://memsys@127.0.0.1:5432/memsys")
    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    settings = Settings.load()
    configure_logging(settings)
    print(f"worker taking imports from {worker_settings.queue_name} (SIGTERM or Ctrl-C stops it)", flush=True)
    return worker_processes.WorkerProcess(settings, worker_settings, args.concurrency).run()


def _ago(when: float | None, now: float) -> str:
    if when is None:
        return "-"
    seconds = max(0.0, now - when)
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def _workers(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        if args.job:
            for r in engine.workers.reads(args.job):
                extra = "; taken over" if r["taken_over"] else ""
                extra += f"; {r['refused']} late write(s) refused" if r["refused"] else ""
                extra += f"; {r['ocr_pages']} page(s) read by OCR" if r["ocr_pages"] else ""
                what = f"files {', '.join(Path(p).name for p in json.loads(str(r['paths'])))}" if r["read_no"] else "merge"
                print(f"read {r['read_no']} ({what}): {r['state']}, by {r['done_by'] or r['worker'] or '-'}{extra}")
            rows = engine.workers.batches(args.job)
            if not rows:
                print(f"import {args.job} was not run by workers (or has no batches yet)")
            for r in rows:
                extra = "; taken over" if r["taken_over"] else ""
                extra += f"; {r['refused']} late write(s) refused" if r["refused"] else ""
                print(f"batch {r['batch_no']}: {r['state']}, by {r['done_by'] or r['worker'] or '-'}{extra}")
            return 0
        view = engine.workers.list()
        if not view.enabled:
            print("jobs run in the process that starts them: no queue is set (MEMSYS_QUEUE_URL)")
        else:
            print(f"queue: {view.queue}; leases of {view.lease_seconds:g} s")
        if not view.workers:
            print("no worker has run yet; start one with `memsys worker`")
            return 0
        now = time.time()
        for w in view.workers:
            current = ", ".join(w.current) if w.current else "idle"
            print(f"{w.worker}  {w.state(view.lease_seconds, now)}  last heartbeat {_ago(w.heartbeat, now)}  "
                  f"{w.concurrency} at once  {plural(w.batches_done, 'batch', 'batches')} done  now: {current}")
        return 0
    finally:
        engine.close()

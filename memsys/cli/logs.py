"""CLI command for memsys's own log: `logs [--job ID] [--level L] [--component C]
[--since 2h] [--follow] [--json]`. Lines are printed one per line, readable, or as the
JSON objects the log file holds (`--json`, for jq and scripts)."""
from __future__ import annotations

import argparse
import datetime as dt
import re
import signal
import sys
import threading
from typing import TYPE_CHECKING

from memsys.config import LOG_LEVELS
from memsys.lazy import LazyName
from memsys.logs import LOG_FILE, LogLine, LogQuery

if TYPE_CHECKING:
    from memsys.engine import Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine = LazyName("memsys.engine", "Engine")

_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `logs` to the command line's groups."""
    _add_logs(groups.add_parser(
        "logs", help="show memsys's log lines, filtered by job, level, component and time; --follow for new ones"))


def _add_logs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--job", metavar="ID", help="only the lines of this import job")
    p.add_argument("--level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="this level and above (default INFO)")
    p.add_argument("--component", action="append", default=[], metavar="NAME",
                   help="only this part of memsys (pipeline, retry, audit, cache, dashboard, ...); repeatable")
    p.add_argument("--since", type=since, metavar="SPAN", help="only the last SPAN, e.g. 30m, 2h, 1d")
    p.add_argument("--limit", type=int, default=200, help="at most this many of the newest lines (default 200)")
    p.add_argument("--follow", action="store_true", help="keep printing new lines as they are written, until Ctrl-C or SIGTERM")
    p.add_argument("--json", action="store_true", help="print the log's JSON objects as they are")
    p.set_defaults(func=_logs)


def since(text: str) -> dt.datetime:
    """`30m`, `2h`, `1d` -> the moment that long ago."""
    match = _SPAN.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time span; write it like 30m, 2h or 1d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds)


def _format_line(line: LogLine) -> str:
    when = line.time.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    where = line.component
    if line.job_id:
        where += f" job {line.job_id}" + (f" batch {line.batch}" if line.batch is not None else "")
    if line.process.startswith("worker@"):
        where += f" on {line.process}"  # which worker (host:pid) wrote it
    return f"{when} {line.level:<7} {where}: {line.message}"


def _logs(args: argparse.Namespace) -> int:
    query = LogQuery(level=args.level, components=tuple(args.component), job_id=args.job, since=args.since,
                     limit=max(1, args.limit))
    engine = Engine()
    try:
        if not args.follow:
            lines = engine.logs.read(query)
            if not lines:
                print(f"no log lines match (the log is in {engine.settings.log_dir})")
            for line in lines:
                print(line.raw if args.json else _format_line(line), flush=True)
            return 0
        return _follow(engine, query, as_json=args.json)
    finally:
        engine.close()


def _follow(engine: Engine, query: LogQuery, *, as_json: bool) -> int:
    """The newest lines, then new ones as they come, until SIGINT (Ctrl-C) or SIGTERM:
    either ends it cleanly with exit code 0 within about a poll interval."""
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        lines = engine.logs.follow(query, recent=True, poll=0.2, stop=stop.is_set)
        # Said once following has begun: from here on no new line is missed.
        print(f"following {engine.settings.log_dir / LOG_FILE} (Ctrl-C stops)", file=sys.stderr, flush=True)
        for line in lines:
            print(line.raw if as_json else _format_line(line), flush=True)
    except BrokenPipeError:
        return 0  # the reader went away (`| head`): nothing left to do
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0

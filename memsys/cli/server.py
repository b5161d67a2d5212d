"""CLI commands for the memsys server: `server start | stop | status`. The server is this
data directory's embedded Weaviate, run in the background and shared by every memsys
process on the directory; it stops by itself after MEMSYS_SERVER_IDLE_SECONDS unused."""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from memsys.lazy import lazy_names
from memsys.units import duration, size

if TYPE_CHECKING:
    from memsys.engine import Engine, SpaceReport
    from memsys.store.server import ServerState, ServerStatus
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    Engine, SpaceReport = lazy_names("memsys.engine", "Engine", "SpaceReport")
    ServerState, ServerStatus = lazy_names("memsys.store.server", "ServerState", "ServerStatus")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `server` to the command line's groups."""
    _add_server(groups.add_parser(
        "server", help="start, stop or show the memsys server (embedded Weaviate of the data directory)"))


def _add_server(p: argparse.ArgumentParser) -> None:
    p.set_defaults(func=_status)
    sub = p.add_subparsers(dest="action")
    for name, func, text in (
        ("start", _start, "start the server in the background (it outlives this command)"),
        ("stop", _stop, "stop the server cleanly (Weaviate flushes to disk first)"),
        ("status", _status, "where it listens, since when, memory, objects, clients"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)


def _since(state: ServerState) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.started_at))
    return f"since {started} ({duration(time.time() - state.started_at)})"


def _where(state: ServerState) -> str:
    return f"{state.url} (gRPC port {state.grpc_port})"


def _idle(state: ServerState) -> str:
    if not state.idle_seconds:
        return "runs until `python -m memsys server stop`"
    return f"stops after {duration(state.idle_seconds)} with no memsys client"


def _start(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        state, started = engine.server.start()
    finally:
        engine.close()
    verb = "started" if started else "already running"
    print(f"memsys server {verb} for {state.data_dir}: Weaviate {state.version} at {_where(state)}, "
          f"pid {state.pid}, {_since(state)}")
    print(f"  log: {state.log_file}; {_idle(state)}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        state = engine.server.stop()
    finally:
        engine.close()
    if state is None:
        print(f"no memsys server runs for {engine.settings.data_dir}")
    else:
        print(f"memsys server for {state.data_dir} stopped (it ran at {_where(state)}, {_since(state)})")
    return 0


def _status(args: argparse.Namespace) -> int:
    engine = Engine()
    try:
        status = engine.server.status()
        space = engine.server.space()
    finally:
        engine.close()
    print(describe(status))
    if not status.external:
        print(describe_space(space))
    return 0 if status.running else 3


def describe_space(report: SpaceReport) -> str:
    """Where the data directory's space goes, part by part, and the disk's free space."""
    lines = [f"  space: {size(report.total_bytes)} in {report.data_dir}; {size(report.disk_free)} free of "
             f"{size(report.disk_total)} on its disk ({report.used_percent:.0f}% used)"]
    for name, n in report.parts.items():
        where = " (outside the data directory)" if name in report.outside else ""
        lines.append(f"    {name + ':':<17}{size(n):>10}{where}")
    lines.append(f"    {'other:':<17}{size(report.other_bytes):>10}")
    if report.warning:
        lines.append(f"  warning: {report.warning}")
    return "\n".join(lines)


def describe(status: ServerStatus) -> str:
    """The status as a few plain lines (the CLI prints them)."""
    if status.external:
        return f"Weaviate is the server at {status.external}; memsys does not run it"
    if not status.running or status.state is None:
        lines = [f"no memsys server runs for {status.data_dir}"]
        if status.last_stop:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(status.last_stop.get("stopped_at", 0))))
            lines.append(f"  last stopped {when}: {status.last_stop.get('reason', '')}")
        lines.append("  start it: python -m memsys server start (any memsys command starts it too)")
        return "\n".join(lines)
    state = status.state
    lines = [
        f"memsys server for {status.data_dir}: running, Weaviate {state.version} at {_where(state)}",
        f"  pid {state.pid} (Weaviate pid {state.weaviate_pid}), {_since(state)}"
        + (f", Weaviate restarted {state.restarts} times" if state.restarts else ""),
        f"  memory: {size(status.memory_bytes) if status.memory_bytes is not None else 'unknown'}",
    ]
    if status.objects is None:
        lines.append("  objects: unknown (Weaviate did not answer)")
    else:
        per = ", ".join(f"{name} {n:,}" for name, n in status.objects.items()) or "no collections yet"
        lines.append(f"  objects: {status.total_objects:,} ({per})")
    clients = "; ".join(f"pid {c.pid} {c.command}" for c in status.clients) or "none"
    lines.append(f"  memsys clients: {len(status.clients)} ({clients}); open connections: "
                 f"{status.connections if status.connections is not None else 'unknown'}")
    lines.append(f"  log: {status.log_file}; {_idle(state)}")
    check = status.last_check or {}
    if status.watch_problem:
        lines.append(f"  {status.watch_problem}")
    elif check.get("idle_since") and state.idle_seconds:
        idle = time.time() - float(check["idle_since"])
        lines.append(f"  no memsys client for {duration(idle)}; stops in about "
                     f"{duration(max(0.0, state.idle_seconds - idle))}")
    return "\n".join(lines)

"""The memsys server behind a real dashboard (`streamlit run app.py`, opened in Chromium):
a CLI import outlives the dashboard process that started Weaviate, and every listening
socket of the dashboard's and the server's processes is on loopback or refuses a request
without the data directory's key."""
from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import grpc
import psutil
import pytest
from playwright.sync_api import expect, sync_playwright
from weaviate.proto.v1 import search_get_pb2, weaviate_pb2_grpc

from memsys import Settings
from memsys import server as memsys_server
from memsys.jobs import JobStore

from conftest import REPO
from dashboard_support import CHROMIUM_ARGS, DashboardServer, memsys_env, require_chromium, wait_until
from helpers import short_texts, write_rows_csv

IMPORT_ARGS = ["--project", "outlives", "--repo", "main", "--agent", "cli"]
# Requests that read data, for each kind of listener Weaviate has: REST, the cluster data
# API (HTTP/1.1) and gRPC (below). A listener that answers any of them without a key is open.
HTTP_PROBES = ("/v1/schema", "/v1/objects", "/v1/nodes", "/indices/Memory/shards/s1/objects/_count",
               "/replicas/indices/Memory/shards/s1/objects", "/schema/transactions/")


def open_home(url: str) -> None:
    """Visit Home the way a person does: the dashboard starts the memsys server for its
    data directory while rendering it."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(require_chromium()), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(url)
            expect(page.get_by_text("memsys server at http://127.0.0.1:")).to_be_visible(timeout=240_000)
        finally:
            browser.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[DashboardServer]:
    env = memsys_env(tmp_path / "data")
    dash = DashboardServer(env, tmp_path / "streamlit.log")
    try:
        open_home(dash.url)
        yield dash
    finally:
        dash.stop()  # also stops the memsys server


def settings_of(env: dict[str, str]) -> Settings:
    return Settings.load(env=env, secrets_path=Path("/nonexistent"))


def test_a_cli_import_outlives_the_dashboard_that_started_weaviate(dashboard: DashboardServer, tmp_path: Path) -> None:
    settings = settings_of(dashboard.env)
    state = memsys_server.running_state(settings)
    assert state is not None
    assert psutil.Process(state.pid).ppid() != dashboard.process.pid  # detached: nobody's child
    write_rows_csv(tmp_path / "rows.csv", short_texts(1200, "outlives"))
    jobs = JobStore(settings.jobs_db)
    cli = subprocess.Popen([sys.executable, "-m", "memsys", "import", str(tmp_path / "rows.csv"), *IMPORT_ARGS],
                           env={**os.environ, **dashboard.env}, cwd=str(REPO), stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: any(j.written >= 50 for j in jobs.list_jobs(5)), 300, interval=0.05, what="50 written")
        dashboard.process.terminate()  # the dashboard closes; its process tree goes
        dashboard.process.wait(timeout=60)
        out, _ = cli.communicate(timeout=600)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, out
    assert "completed: 1200 written, 0 unchanged, 0 failed, of 1200 items" in out
    after = memsys_server.running_state(settings)
    assert after == state  # the same server, never restarted
    client, _ = memsys_server.connect_client(settings, start=False)
    try:
        assert client.collections.get("Memory").aggregate.over_all(total_count=True).total_count == 1200
    finally:
        client.close()
        memsys_server.release_client(settings)


@dataclass(frozen=True)
class Listener:
    pid: int
    process: str
    kind: str  # tcp / udp
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def listeners(roots: list[int]) -> list[Listener]:
    """Every listening TCP socket and bound UDP socket of these processes and their children."""
    found = []
    for root in roots:
        proc = psutil.Process(root)
        for p in [proc, *proc.children(recursive=True)]:
            for c in p.net_connections(kind="inet"):
                if (c.type == socket.SOCK_STREAM and c.status == psutil.CONN_LISTEN) or \
                        (c.type == socket.SOCK_DGRAM and not c.raddr):
                    found.append(Listener(p.pid, p.name(), "tcp" if c.type == socket.SOCK_STREAM else "udp",
                                          c.laddr.ip, c.laddr.port))
    return found


def answers_without_key(port: int) -> str:
    """What a listener gives away to a request carrying no key: "" when it refuses all."""
    for path in HTTP_PROBES:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                return f"GET {path} -> {answer.status}"
        except urllib.error.HTTPError as e:
            if e.code not in (401, 403, 404, 405):
                return f"GET {path} -> {e.code}"
        except (urllib.error.URLError, OSError):
            break  # not HTTP/1.1: try gRPC
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        weaviate_pb2_grpc.WeaviateStub(channel).Search(search_get_pb2.SearchRequest(collection="Memory", limit=1),
                                                       timeout=10)
        return "gRPC Search answered"
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.UNAVAILABLE and "unauthorized" not in (e.details() or "").lower():
            return ""  # speaks neither HTTP/1.1 nor gRPC: nothing to ask it
        assert "unauthorized" in (e.details() or "").lower() or e.code() == grpc.StatusCode.UNAUTHENTICATED, e
        return ""
    finally:
        channel.close()


def test_every_listening_socket_is_on_loopback_or_refuses_requests_without_the_key(dashboard: DashboardServer) -> None:
    state = memsys_server.running_state(settings_of(dashboard.env))
    assert state is not None
    found = listeners([dashboard.process.pid, state.pid])
    ports = {x.port for x in found}
    assert {dashboard.port, state.port, state.grpc_port} <= ports
    assert psutil.Process(state.weaviate_pid).pid in {x.pid for x in found}
    exposed = [x for x in found if not x.loopback]
    assert {x.port for x in exposed} <= {state.grpc_port, state.internal_ports["data"]}, exposed
    open_doors = {x: answers_without_key(x.port) for x in exposed if x.kind == "tcp"}
    assert not [x for x in exposed if x.kind == "udp"]
    assert not any(open_doors.values()), open_doors
    print(f"R9: {len(found)} listening sockets, {len(exposed)} not on loopback, "
          f"{sum(bool(v) for v in open_doors.values())} open without the key")
    assert 6060 not in ports  # Go's profiler is off

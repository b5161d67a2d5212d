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

from memsys import Settings
from memsys.store import server as memsys_server
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
            # Home folds the server's details for operators: open them as one would.
            expect(page.get_by_role("heading", name="Recent imports")).to_be_visible(timeout=240_000)
            page.get_by_text("For operators").click()
            expect(page.get_by_text("memsys server at http://127.0.0.1:")).to_be_visible(timeout=240_000)
        finally:
            browser.close()


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[DashboardServer]:
    env = memsys_env(tmp_path / "data")
    dash = DashboardServer(env, tmp_path / "streamlit.log")
    try:
        open_home(dash.address())
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
    assert "completed: 1200 written, 0 unchanged, 0 failed, of 1,200 memories" in out
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


def _protobuf_strings(*values: str) -> bytes:
    """A protobuf message of string fields 1, 2, ... (the requests probed below)."""
    out = b""
    for number, value in enumerate(values, 1):
        data = value.encode()
        out += bytes([(number << 3) | 2, len(data)]) + data
    return out


def _grpc_refuses(channel: grpc.Channel, method: str, request: bytes) -> bool | None:
    """True: refused for want of credentials; None: not served on this port; False: answered."""
    call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        call(request, timeout=10)
        return False
    except grpc.RpcError as e:
        details = (e.details() or "").lower()
        if e.code() == grpc.StatusCode.UNAUTHENTICATED or "unauthorized" in details:
            return True
        if e.code() == grpc.StatusCode.UNIMPLEMENTED:
            return None
        return False  # it ran the request (and failed for another reason): not refused


def refusals_without_key(port: int, shards: list[tuple[str, str]]) -> tuple[int, list[str]]:
    """Ask a listener for data without any key: every HTTP/1.1 route and gRPC method Weaviate
    serves on its public and cluster ports, with this server's real collection and shard
    names. Returns (requests refused, requests answered)."""
    refused, answered = 0, []
    for path in HTTP_PROBES:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                answered.append(f"GET {path} -> {answer.status}")
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                refused += 1
            elif e.code not in (404, 405):
                answered.append(f"GET {path} -> {e.code}")
        except (urllib.error.URLError, OSError):
            break  # not HTTP/1.1
    probes = [("/weaviate.v1.Weaviate/Search", _protobuf_strings(collection)) for collection, _ in shards]
    for collection, shard in shards:
        for method in ("ListFiles", "PauseFileActivity", "GetFileMetadata"):
            probes.append((f"/clusterapi.FileReplicationService/{method}", _protobuf_strings(collection, shard)))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for method, request in probes:
            outcome = _grpc_refuses(channel, method, request)
            if outcome:
                refused += 1
            elif outcome is False:
                answered.append(f"gRPC {method} answered")
    return refused, answered


def test_every_listening_socket_is_on_loopback_or_refuses_requests_without_the_key(dashboard: DashboardServer) -> None:
    state = memsys_server.running_state(settings_of(dashboard.env))
    assert state is not None
    found = listeners([dashboard.process.pid, state.pid])
    ports = {x.port for x in found}
    assert {dashboard.port, state.port, state.grpc_port} <= ports
    assert psutil.Process(state.weaviate_pid).pid in {x.pid for x in found}
    exposed = [x for x in found if not x.loopback]
    assert {x.port for x in exposed} <= {state.grpc_port, state.internal_ports["data"]}, exposed
    assert not [x for x in exposed if x.kind == "udp"]
    settings = settings_of(dashboard.env)
    client, _ = memsys_server.connect_client(settings, start=False)
    try:
        shards = [(name, shard.name) for name in client.collections.list_all(simple=True)
                  for shard in client.collections.get(name).config.get_shards()]
    finally:
        client.close()
        memsys_server.release_client(settings)
    assert shards  # Home made the Memory collection: the probes name a real shard
    probed = {x.port: refusals_without_key(x.port, shards) for x in exposed}
    open_doors = {port: answered for port, (_, answered) in probed.items() if answered}
    print(f"R9: {len(found)} listening sockets, {len(exposed)} not on loopback, {len(open_doors)} answering without the key")
    assert not open_doors, open_doors
    assert all(refused for refused, _ in probed.values()), probed
    assert 6060 not in ports  # Go's profiler is off

"""`memsys mcp` driven by the official `mcp` SDK's own client: over stdio (started as a
subprocess, acting as the local user) and over streamable HTTP (a real process on
127.0.0.1 behind the Host check and API tokens). Both share one data directory."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from conftest import REPO
from service_support import SENTINEL, ServiceProcess, make_tokens, service_env

TOOLS = {"write_memory", "write_memories", "search_memories", "list_knowledge_bases", "list_documents"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("service-mcp")
    env = service_env(data_dir, MEMSYS_API_BATCH_WINDOW_MS="30")
    yield {"env": env, "data_dir": data_dir}


@pytest.fixture(scope="module")
def http_server(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    env = data["env"]
    tokens = make_tokens(env, {"operator": ("operator", (), 0), "viewer": ("viewer", (), 0)})
    server = ServiceProcess(env, data["data_dir"] / "mcp.log", ["mcp", "--transport", "http"], health="/healthz")
    try:
        yield {"server": server, "tokens": tokens, "url": f"{server.url}/mcp"}
    finally:
        server.stop()


def text_of(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


async def _stdio_session(env: dict[str, str]) -> dict[str, Any]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "memsys", "mcp"], cwd=str(REPO),
                                   env={**os.environ, **env, "PYTHONPATH": str(REPO)})
    async with Client(params) as client:
        tools = (await client.list_tools()).tools
        written = await client.call_tool("write_memory", {
            "content": "The MCP stdio agent notes: staging uses Postgres 16.", "project": "mcp-kb", "repo": "notes",
            "agent": "stdio-agent", "tags": ["db"]})
        bad = await client.call_tool("write_memories", {"memories": [
            {"content": "A second stdio note about Redis caching.", "project": "mcp-kb", "repo": "notes",
             "agent": "stdio-agent"},
            {"content": "no agent", "project": "mcp-kb", "repo": "notes"}]})
        found = await client.call_tool("search_memories", {"query": "which Postgres version on staging",
                                                           "project": "mcp-kb", "limit": 3})
        bases = await client.call_tool("list_knowledge_bases", {})
        docs = await client.call_tool("list_documents", {"project": "mcp-kb"})
    return {"tools": tools, "written": written, "bad": bad, "found": found, "bases": bases, "docs": docs}


def test_stdio_server_lists_its_tools_and_writes_and_finds_memories(data: dict[str, Any]) -> None:
    got = asyncio.run(_stdio_session(data["env"]))
    tools = {t.name: t for t in got["tools"]}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description or "") > 40 and tool.input_schema["type"] == "object"
    assert set(tools["write_memory"].input_schema["required"]) == {"content", "project", "repo", "agent"}
    written = got["written"].structured_content
    assert not got["written"].is_error and written["status"] == "written"
    results = got["bad"].structured_content["results"]
    assert [r["status"] for r in results] == ["written", "failed"]
    assert results[1]["error"] == "memory #1: field 'agent' is missing"
    hits = got["found"].structured_content["hits"]
    assert hits[0]["uuid"] == written["uuid"] and hits[0]["project"] == "mcp-kb"
    assert {"project": "mcp-kb", "repo": "notes", "documents": 0, "memories": 2} in \
        got["bases"].structured_content["knowledge_bases"]
    assert got["docs"].structured_content == {"documents": []}


async def _http_session(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return [await session.call_tool(name, args) for name, args in calls]


async def _concurrent_writes(url: str, token: str, n: int) -> list[Any]:
    return await asyncio.gather(*[
        _http_session(url, token, [("write_memory", {"content": f"Concurrent MCP note {i} about deploy windows.",
                                                     "project": "mcp-http", "repo": "r", "agent": f"a{i}"})])
        for i in range(n)])


def test_http_server_takes_tool_calls_with_a_token_and_answers_each_concurrent_writer(
        http_server: dict[str, Any]) -> None:
    url, tokens = http_server["url"], http_server["tokens"]
    results = asyncio.run(_concurrent_writes(url, tokens["operator"], 12))
    uuids = [r[0].structured_content["uuid"] for r in results]
    found, refused = asyncio.run(_http_session(url, tokens["viewer"], [
        ("search_memories", {"query": "deploy windows", "project": "mcp-http", "mode": "keyword", "limit": 20}),
        ("write_memory", {"content": "a viewer may not write", "project": "mcp-http", "repo": "r", "agent": "v"}),
    ]))
    assert len(set(uuids)) == 12
    assert {h["uuid"] for h in found.structured_content["hits"]} == set(uuids)
    assert refused.is_error and "needs the operator role" in text_of(refused)
    log = (Path(http_server["server"].log_path)).read_text(errors="replace")
    assert SENTINEL not in log and tokens["operator"] not in log


def test_http_server_refuses_missing_tokens_and_foreign_hosts(http_server: dict[str, Any]) -> None:
    url = http_server["url"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as c:
        missing = c.post(url, json=body, headers=headers)
        wrong = c.post(url, json=body, headers={**headers, "Authorization": "Bearer msk_wrong"})
        foreign = c.post(url, json=body, headers={**headers, "Host": "rebind.attacker.example",
                                                  "Authorization": f"Bearer {http_server['tokens']['viewer']}"})
    assert missing.status_code == 401 and "needs an API token" in missing.text
    assert wrong.status_code == 401
    assert foreign.status_code == 403

"""`memsys mcp`: an MCP server (the official `mcp` SDK) with tools to write memories,
search them and list knowledge bases and their documents, over stdio (a coding assistant
starts it as a subprocess: it acts as the local user, as the CLI does) or streamable HTTP
(behind the same Host check and API tokens as the HTTP API). Writes join the engine's
write queue, so many agents calling `write_memory` at once are written in shared batches.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Literal, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from typing_extensions import Annotated

from memsys.access import AccessDenied, AuthorizedEngine
from memsys.errors import MemsysError
from memsys.engine import Engine, MemoryFilter
from memsys.service.callers import LOCAL_CALLER, Caller, CallerCheck
from memsys.service.http import list_knowledge_bases
from memsys.service.retrieval import metadata

INSTRUCTIONS = (
    "memsys keeps memories: short texts agents write as they work, each in a knowledge base (a project and a "
    "repo), searchable by meaning and keywords. Write what is worth remembering with write_memory (or "
    "write_memories for several); look things up with search_memories before answering from scratch; "
    "list_knowledge_bases and list_documents say what is there."
)

Text = Annotated[str, Field(min_length=1)]
F = TypeVar("F", bound=Callable[..., Any])


def plain_errors(tool: F) -> F:
    """What memsys says no with (a role, a knowledge base, a bad memory, a full queue)
    reaches the agent in its words; anything else stays the SDK's "Error executing tool"."""

    @functools.wraps(tool)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return tool(*args, **kwargs)
        except (AccessDenied, PermissionError, ValueError, MemsysError) as e:
            raise ToolError(str(e)) from e

    return wrapped  # type: ignore[return-value]


def build_mcp(engine: Engine, check: CallerCheck | None) -> MCPServer:
    """The MCP server over `engine`. With `check` (HTTP), each tool call's caller is the
    API token of its request; without (stdio), the local user."""
    server = MCPServer("memsys", instructions=INSTRUCTIONS, version="1", log_level="WARNING")

    @server.custom_route("/healthz", methods=["GET"])
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def caller(ctx: Context) -> Caller:
        headers = ctx.headers if check is not None else None
        if check is None:
            return Caller(LOCAL_CALLER, None, AuthorizedEngine(engine, LOCAL_CALLER))
        return check.caller((headers or {}).get("authorization"))

    @server.tool(description=(
        "Write one memory: a short text worth remembering, in a knowledge base (project and repo), signed by the "
        "agent writing it. Returns its uuid and whether it was written, updated or already stored. Writing the "
        "same memory twice stores it once."))
    @plain_errors
    def write_memory(content: Annotated[Text, Field(description="The text to remember.")],
                     project: Annotated[Text, Field(description="The knowledge base's project.")],
                     repo: Annotated[Text, Field(description="The knowledge base's repository or second name.")],
                     agent: Annotated[Text, Field(description="The name of the agent writing it.")],
                     ctx: Context,
                     tags: Annotated[list[str], Field(description="Labels to filter by later.")] = [],  # noqa: B006
                     source: Annotated[str, Field(description="Where it came from.")] = "agent") -> dict[str, Any]:
        who = caller(ctx)
        result = who.engine.writes.write([{"content": content, "project": project, "repo": repo, "agent": agent,
                                           "tags": tags, "source": source or "agent"}], projects=who.projects)[0]
        if result.status == "failed":
            raise ValueError(result.error)
        return {"uuid": result.uuid, "status": result.status}

    @server.tool(description=(
        "Write several memories at once. Each is a record with content, project, repo, agent and optional tags "
        "and source; each is checked on its own, so a bad one is reported with its index and the rest are "
        "written. Returns one result per memory, in order."))
    @plain_errors
    def write_memories(memories: Annotated[list[dict[str, Any]], Field(description=(
                           "Memory records: {content, project, repo, agent, tags?, source?}."), max_length=1000)],
                       ctx: Context) -> dict[str, Any]:
        who = caller(ctx)
        results = who.engine.writes.write(memories, projects=who.projects)
        return {"results": [{"index": r.index, "uuid": r.uuid, "status": r.status, "error": r.error} for r in results]}

    @server.tool(description=(
        "Search memories by meaning and keywords (hybrid, the default), by meaning only (vector) or by keywords "
        "only (keyword), best first, optionally within a knowledge base (project, repo), an agent or tags."))
    @plain_errors
    def search_memories(query: Annotated[Text, Field(description="What to look for.")], ctx: Context,
                        project: str | None = None, repo: str | None = None, agent: str | None = None,
                        tags: list[str] | None = None,
                        mode: Literal["hybrid", "vector", "keyword"] = "hybrid",
                        limit: Annotated[int, Field(ge=1, le=100)] = 10) -> dict[str, Any]:
        who = caller(ctx)
        where = MemoryFilter(project=who.project_for(project), repo=repo, agent=agent,
                             tags=tuple(tags) if tags else None)
        hits = who.engine.memories.search(query, limit=limit, where=where, mode=mode)
        return {"hits": [{"content": m.content, "score": m.score, **metadata(m)} for m in hits]}

    @server.tool(name="list_knowledge_bases",
                 description="List the knowledge bases (project and repo) with their numbers of documents and memories.")
    @plain_errors
    def list_knowledge_bases_tool(ctx: Context) -> dict[str, Any]:
        who = caller(ctx)
        return {"knowledge_bases": [kb.model_dump() for kb in list_knowledge_bases(who)]}

    @server.tool(description="List the documents of a knowledge base (project, optionally repo), most memories first.")
    @plain_errors
    def list_documents(project: Text, ctx: Context, repo: str | None = None,
                       limit: Annotated[int, Field(ge=1, le=1000)] = 100) -> dict[str, Any]:
        who = caller(ctx)
        where = MemoryFilter(project=who.project_for(project), repo=repo)
        return {"documents": [{"document_id": d.document_id, "project": d.project, "repo": d.repo,
                               "source_file": d.source_file, "memories": d.memories}
                              for d in who.engine.memories.documents(where, limit=limit)]}

    return server


def mcp_http_app(server: MCPServer, max_body_bytes: int) -> Starlette:
    """The streamable HTTP transport at /mcp. The Host check is memsys's own guard in front
    of it (the same as the API's), so the SDK's own check is off."""
    return server.streamable_http_app(
        streamable_http_path="/mcp", json_response=True, stateless_http=True, max_request_body_size=max_body_bytes,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )

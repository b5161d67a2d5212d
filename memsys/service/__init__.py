"""memsys as a service: the HTTP API (`memsys api`, FastAPI on uvicorn) and the MCP server
(`memsys mcp`, the official `mcp` SDK), front ends over the engine like the dashboard and
the CLI: every call goes through the caller's `AuthorizedEngine` (role checked, audited),
callers are API tokens (memsys/service/callers.py), and concurrent writes are batched by the
engine's write queue."""
from __future__ import annotations

from memsys.lazy import lazy_exports

# Loaded on first use: the CLI imports this package for every command, and FastAPI,
# uvicorn and the MCP SDK are for the commands that serve.
__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "memsys.service.run": ("api_app", "mcp_app", "prepare", "serve", "ServiceRefused"),
    "memsys.service.mcp_server": ("build_mcp",),
    "memsys.service.http": ("build_app",),
})

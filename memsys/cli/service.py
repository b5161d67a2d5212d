"""CLI commands for memsys as a service: `api` (the HTTP API), `mcp` (the MCP server, over
stdio or streamable HTTP) and `tokens create | list | revoke` (the API tokens both take).
memsys.service loads its parts (FastAPI, uvicorn, the MCP SDK) when a command uses them."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from memsys.config import Settings
from memsys.lazy import lazy_names
from memsys import service

if TYPE_CHECKING:
    from memsys.engine import ApiToken, Engine
else:  # imported on first use (memsys.lazy): `memsys --help` loads neither client
    ApiToken, Engine = lazy_names("memsys.engine", "ApiToken", "Engine")


def add_commands(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds `api`, `mcp` and `tokens` to the command line's groups."""
    p = groups.add_parser("api", help="serve the HTTP API (OpenAPI docs at /docs) over this data directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs "
                                                       "API tokens)")
    p.add_argument("--port", type=int, default=8502, help="port (default 8502)")
    p.add_argument("--openapi", action="store_true", help="print the OpenAPI description and exit")
    p.set_defaults(func=_api)

    p = groups.add_parser("mcp", help="serve the MCP server (tools to write and search memories)")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                   help="stdio (default: started by an assistant, acting as you) or streamable HTTP at /mcp")
    p.add_argument("--host", default="127.0.0.1", help="with --transport http: address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8503, help="with --transport http: port (default 8503)")
    p.set_defaults(func=_mcp)

    p = groups.add_parser("tokens", help="make, list or revoke API tokens (for `memsys api` and `memsys mcp`)")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="make a token; it is printed once and never kept")
    c.add_argument("name", help="who or what uses it (an agent, a Dify workspace)")
    c.add_argument("--role", choices=("viewer", "operator", "admin"), default="viewer",
                   help="viewer: search and read; operator: write and import; admin: everything (default viewer)")
    c.add_argument("--project", action="append", default=[], metavar="PROJECT",
                   help="limit it to this knowledge base's project (repeat for several; default: all)")
    c.add_argument("--rate", type=int, default=0, metavar="N",
                   help="requests per minute (default: MEMSYS_API_RATE_LIMIT)")
    c.set_defaults(func=_tokens_create)
    ls = sub.add_parser("list", help="the tokens: name, role, knowledge bases, last use (never the tokens)")
    ls.add_argument("--json", action="store_true", help="as JSON")
    ls.set_defaults(func=_tokens_list)
    r = sub.add_parser("revoke", help="revoke a token for good")
    r.add_argument("token_id", help="the token's id, as `memsys tokens list` shows it")
    r.set_defaults(func=_tokens_revoke)


def _api(args: argparse.Namespace) -> int:
    settings = Settings.load()
    engine, loopback = service.prepare(settings, args.host, "api")
    try:
        if args.openapi:
            print(json.dumps(service.build_app(engine, loopback=loopback).openapi(), indent=2))
            return 0
        service.serve(service.api_app(engine, args.host, loopback), args.host, args.port, "memsys api (docs at /docs)")
    finally:
        engine.close()
    return 0


def _mcp(args: argparse.Namespace) -> int:
    settings = Settings.load()
    if args.transport == "stdio":
        engine = Engine(settings, program="mcp")
        try:
            service.build_mcp(engine, None).run("stdio")
        finally:
            engine.close()
        return 0
    engine, loopback = service.prepare(settings, args.host, "mcp")
    try:
        service.serve(service.mcp_app(engine, args.host, loopback), args.host, args.port, "memsys mcp (streamable HTTP at /mcp)")
    finally:
        engine.close()
    return 0


def _tokens_create(args: argparse.Namespace) -> int:
    engine = Engine(program="cli")
    try:
        record, token = engine.tokens.create(args.name, args.role, args.project, args.rate)
    finally:
        engine.close()
    where = ", ".join(record.projects) if record.projects else "every knowledge base"
    print(f"API token {record.token_id} for {record.name}: {record.role}, {where}.")
    print("The token (shown once, memsys keeps only its hash):", file=sys.stderr)
    print(token)
    return 0


def _tokens_list(args: argparse.Namespace) -> int:
    engine = Engine(program="cli")
    try:
        tokens: list[ApiToken] = engine.tokens.list()
    finally:
        engine.close()
    if args.json:
        print(json.dumps([{"token_id": t.token_id, "name": t.name, "role": t.role, "projects": list(t.projects),
                           "rate_per_minute": t.rate_per_minute, "created_at": t.created_at.isoformat(),
                           "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                           "revoked": not t.active} for t in tokens], indent=2))
        return 0
    if not tokens:
        print("no API tokens; make one with `memsys tokens create NAME --role ROLE`")
    for t in tokens:
        used = t.last_used_at.strftime("%Y-%m-%d %H:%M") if t.last_used_at else "never"
        state = "revoked" if not t.active else "active"
        print(f"{t.token_id}  {t.name}  {t.role}  {', '.join(t.projects) or 'every knowledge base'}  "
              f"last used {used}  {state}")
    return 0


def _tokens_revoke(args: argparse.Namespace) -> int:
    engine = Engine(program="cli")
    try:
        record = engine.tokens.revoke(args.token_id)
    finally:
        engine.close()
    print(f"API token {record.token_id} ({record.name}) revoked")
    return 0

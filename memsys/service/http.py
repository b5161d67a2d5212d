"""`memsys api`: the HTTP API over the engine (FastAPI), described by OpenAPI at
`/openapi.json` with its docs page at `/docs`. Every call is made through the caller's
`AuthorizedEngine` (memsys/service/callers.py), so it is checked against the caller's role
and audited as the same action on the dashboard is. Writes join the engine's write queue,
which batches concurrent callers together. `POST /retrieval` speaks Dify's External
Knowledge API. Errors are `{"detail": "..."}` in plain words, never a traceback or a path.
"""
from __future__ import annotations

import asyncio
import io
import re
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable

import anyio
import swagger_ui_bundle
import anyio.from_thread
import anyio.to_thread
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from memsys.access import AccessDenied, Role
from memsys.engine import UPLOAD_TYPES, Engine, MemoryDefaults, MemoryFilter, QueueFull
from memsys.errors import EmbedderMismatchError, JobStoreError, MemsysError, StoreUnavailableError
from memsys.logs import get_logger
from memsys.service.callers import Caller, CallerCheck, RateLimited, Unauthorized
from memsys.service.retrieval import retrieve
from memsys.service.schemas import (
    BatchIn, BatchOut, BrowseOut, CacheCheckIn, RetryOut, DeleteIn, DeleteOut, DifyError, DifyRetrievalIn,
    DifyRetrievalOut, DocumentOut, ErrorOut, FailedItemOut, Filter, ImportIn, JobOut, KnowledgeBaseOut, MemoryIn,
    MemoryOut, SearchIn, SearchOut, SourceOut, SyncOut, SyncStartedOut, UploadedFileOut, UploadOut, WriteOut,
    document_out, job_out, memory_out, source_out, sync_out, write_out,
)
from memsys.spool import UnsafeNameError, spool_path

log = get_logger("service")
_DOCS_ASSETS = "/docs-assets"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{16}$")
# Concurrent requests served by threads (writes wait in the queue on one): more than
# the default 40, so 50 writers can all be waiting in one batch.
_THREADS = 128
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No valid API token"},
    403: {"model": ErrorOut, "description": "The token's role or knowledge bases do not allow this"},
    429: {"model": ErrorOut, "description": "Too many requests; see Retry-After"},
}


class NotFound(MemsysError):
    """What the request names does not exist (or is not this caller's to see)."""


class TooLarge(MemsysError):
    """A request body or an uploaded file is larger than the service takes."""


def build_app(engine: Engine, *, loopback: bool) -> FastAPI:
    """The API over `engine`. `loopback`: served on loopback only (then, until an API token
    exists, callers need none)."""
    check = CallerCheck(engine, loopback=loopback)
    settings = engine.settings

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = _THREADS
        yield

    app = FastAPI(
        title="memsys API",
        version="1",
        description=(
            "Memories for agents and scripts: write memories (one or a batch; concurrent writers are batched "
            "together), search them, browse and delete them, list knowledge bases and their documents, import "
            "files, follow imports. Every call needs `Authorization: Bearer <API token>` once an admin has "
            "made a token (`memsys tokens create`), and is checked against the token's role (viewer, operator, "
            "admin) and knowledge bases."),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    # The docs page's script and style are served from here (nothing is fetched from the internet).
    app.mount(_DOCS_ASSETS, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="memsys API",
                                   swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{_DOCS_ASSETS}/favicon-32x32.png")

    bearer = HTTPBearer(auto_error=False, description="An API token made by an admin (`memsys tokens create`).")

    async def caller(request: Request, _: Any = Depends(bearer)) -> Caller:
        header = request.headers.get("authorization")
        # A token is looked up in the job database (and its last use written), in a worker
        # thread; without one nothing is read, so no thread hop is paid for it.
        found = await run_in_threadpool(check.caller, header) if header else check.caller(None)
        request.state.caller = found
        return found

    _add_error_handlers(app, engine)

    # --- health ---------------------------------------------------------------------
    @app.get("/healthz", tags=["health"], summary="The process answers")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Weaviate and the job database answer",
             responses={503: {"model": ErrorOut}})
    def readyz() -> JSONResponse:
        try:
            engine.system.store.count()
            engine.tokens.required()
        except (MemsysError, OSError) as e:
            return JSONResponse({"detail": f"not ready: {type(e).__name__}"}, status_code=503)
        return JSONResponse({"status": "ready"})

    # --- memories -------------------------------------------------------------------
    @app.post("/v1/memories", tags=["memories"], status_code=201, response_model=WriteOut, responses=_ERRORS,
              summary="Write one memory", description=(
                  "Written together with whatever other callers write now (within MEMSYS_API_BATCH_WINDOW_MS); "
                  "answered once the memory is stored. 422 names the field and the problem."))
    def write_memory(memory: MemoryIn, who: Caller = Depends(caller)) -> Any:
        result = who.engine.writes.write([memory.model_dump()], projects=who.projects)[0]
        if result.status == "failed":
            return JSONResponse({"detail": result.error}, status_code=403 if "may write to" in result.error else 422)
        return write_out(result)

    @app.post("/v1/memories/batch", tags=["memories"], response_model=BatchOut, responses=_ERRORS,
              summary="Write a batch of memories", description=(
                  "Each memory is checked on its own: a bad one is answered as failed (index, field, problem) "
                  "and the rest are written. One result per memory, in order."))
    def write_batch(batch: BatchIn, who: Caller = Depends(caller)) -> BatchOut:
        results = who.engine.writes.write(batch.memories, projects=who.projects)
        return BatchOut(results=[write_out(r) for r in results], written=sum(r.status == "written" for r in results),
                        failed=sum(r.status == "failed" for r in results))

    @app.post("/v1/search", tags=["memories"], response_model=SearchOut, responses=_ERRORS,
              summary="Search memories (hybrid, vector or keyword)")
    def search(body: SearchIn, who: Caller = Depends(caller)) -> SearchOut:
        where = _filter(body.filter, who)
        hits = who.engine.memories.search(body.query, limit=body.limit, where=where, mode=body.mode, alpha=body.alpha)
        return SearchOut(hits=[memory_out(m) for m in hits])

    @app.get("/v1/memories/{memory_id}", tags=["memories"], response_model=MemoryOut,
             responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="One memory by its uuid")
    def get_memory(memory_id: str, who: Caller = Depends(caller)) -> Any:
        memory = who.engine.memories.get(memory_id)
        if memory is None or not who.may_reach(memory.project):
            return JSONResponse({"detail": f"there is no memory {memory_id}"}, status_code=404)
        return memory_out(memory)

    @app.get("/v1/memories", tags=["memories"], response_model=BrowseOut, responses=_ERRORS,
             summary="Browse memories, a page at a time")
    def browse(project: str | None = None, repo: str | None = None, agent: str | None = None,
               tags: list[str] | None = Query(None), source: str | None = None, source_file: str | None = None,
               document_id: str | None = None, after: str | None = None,
               limit: int = Query(50, ge=1, le=1000), who: Caller = Depends(caller)) -> BrowseOut:
        where = _filter(Filter(project=project, repo=repo, agent=agent, tags=tags, source=source,
                               source_file=source_file, document_id=document_id), who)
        page = who.engine.memories.browse_page(where, after=after, limit=limit)
        return BrowseOut(memories=[memory_out(m) for m in page.memories], next_after=page.next_after)

    @app.post("/v1/memories/delete", tags=["memories"], response_model=DeleteOut, responses=_ERRORS,
              summary="Delete the memories a filter matches (admin)", description=(
                  "With `dry_run` (the default) only counts them. An empty filter is refused."))
    def delete(body: DeleteIn, who: Caller = Depends(caller)) -> DeleteOut:
        where = _filter(body.filter, who)
        return DeleteOut(count=who.engine.memories.delete(where, dry_run=body.dry_run), dry_run=body.dry_run)

    # --- knowledge bases and documents ------------------------------------------------
    @app.get("/v1/knowledge-bases", tags=["knowledge bases"], response_model=list[KnowledgeBaseOut],
             responses=_ERRORS, summary="The knowledge bases (project and repo) this caller may reach")
    def knowledge_bases(who: Caller = Depends(caller)) -> list[KnowledgeBaseOut]:
        return list_knowledge_bases(who)

    @app.get("/v1/documents", tags=["knowledge bases"], response_model=list[DocumentOut], responses=_ERRORS,
             summary="The documents of a knowledge base, most memories first")
    def documents(project: str | None = None, repo: str | None = None, limit: int = Query(1000, ge=1, le=10_000),
                  who: Caller = Depends(caller)) -> list[DocumentOut]:
        where = _filter(Filter(project=project, repo=repo), who)
        return [document_out(d) for d in who.engine.memories.documents(where, limit=limit)]

    # --- imports --------------------------------------------------------------------
    @app.post("/v1/uploads", tags=["imports"], status_code=201, response_model=UploadOut, responses=_ERRORS,
              summary="Start an upload: files are then sent one by one to PUT /v1/uploads/{upload_id}/files/{name}")
    def new_upload(who: Caller = Depends(caller)) -> UploadOut:
        who.engine.require(Role.OPERATOR, "uploading files")
        return UploadOut(upload_id=uuid.uuid4().hex[:16])

    @app.put("/v1/uploads/{upload_id}/files/{name:path}", tags=["imports"], status_code=201,
             response_model=UploadedFileOut, responses={**_ERRORS, 413: {"model": ErrorOut}},
             summary="Send one file of an upload as the request body (streamed to the spool)",
             description=f"At most MEMSYS_API_MAX_UPLOAD_BYTES per file. Types read: {UPLOAD_TYPES}.")
    async def upload_file(upload_id: str, name: str, request: Request, who: Caller = Depends(caller)) -> Any:
        if not _UPLOAD_ID.match(upload_id):
            return JSONResponse({"detail": "upload_id is not one POST /v1/uploads gave"}, status_code=404)
        limit = settings.api_max_upload_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": f"{name} is larger than this service takes ({limit} bytes)"},
                                status_code=413)
        reader = _BodyReader(request, limit, name)
        path_of = _spooled_path(engine)
        try:
            path = await anyio.to_thread.run_sync(lambda: who.engine.imports.spool_upload(upload_id, name, reader))
        except TooLarge as e:
            await anyio.to_thread.run_sync(lambda: engine.spool.drop([path_of(upload_id, name)]))
            return JSONResponse({"detail": str(e)}, status_code=413)
        return UploadedFileOut(upload_id=upload_id, name=name, bytes=path.stat().st_size)

    @app.post("/v1/imports", tags=["imports"], status_code=202, response_model=JobOut, responses=_ERRORS,
              summary="Import an upload's files into a knowledge base")
    def start_import(body: ImportIn, who: Caller = Depends(caller)) -> JobOut:
        if not who.may_reach(body.project):
            raise PermissionError(f"the knowledge base {body.project!r} is not one this token may reach")
        if not _UPLOAD_ID.match(body.upload_id):
            raise ValueError("upload_id is not one POST /v1/uploads gave")
        folder = engine.spool.root / body.upload_id
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not files:
            raise ValueError(f"upload {body.upload_id} has no files; send them to PUT /v1/uploads/{body.upload_id}"
                             "/files/{name} first")
        defaults = MemoryDefaults(body.project, body.repo, body.agent, tuple(body.tags), body.source)
        job_id = who.engine.imports.start(files, defaults, label=body.label or ", ".join(p.name for p in files)[:120],
                                          started_by=who.engine.actor)
        return job_out(who.engine.jobs.require(job_id))

    # --- saved sources: an import by naming one -----------------------------------------
    def source_of(name: str, who: Caller) -> Any:
        source = next((s for s in who.engine.sources.list() if s.name == name), None)
        if source is None or not who.may_reach(source.defaults.project):
            raise NotFound(f"there is no source called {name!r}")
        return source

    @app.get("/v1/sources", tags=["sources"], response_model=list[SourceOut], responses=_ERRORS,
             summary="The saved sources (folders, git repositories, buckets, sites, mailboxes, WebDAV folders)")
    def sources(who: Caller = Depends(caller)) -> list[SourceOut]:
        return [source_out(s) for s in who.engine.sources.list() if who.may_reach(s.defaults.project)]

    @app.get("/v1/sources/{name}/syncs", tags=["sources"], response_model=list[SyncOut],
             responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="A source's syncs, newest first")
    def source_syncs(name: str, limit: int = Query(20, ge=1, le=500), who: Caller = Depends(caller)) -> list[SyncOut]:
        return [sync_out(r) for r in who.engine.sources.history(source_of(name, who).name, limit)]

    @app.post("/v1/sources/{name}/sync", tags=["sources"], status_code=202, response_model=SyncStartedOut,
              responses={**_ERRORS, 404: {"model": ErrorOut}},
              summary="Import a saved source now: a sync (a mirror import of what changed there)",
              description="The sync runs in the background; GET /v1/sources/{name}/syncs shows it, with the "
                          "import's job_id to follow at /v1/imports/{job_id}.")
    def sync_source(name: str, who: Caller = Depends(caller)) -> SyncStartedOut:
        source = source_of(name, who)
        who.engine.sources.start_sync(source.name)
        return SyncStartedOut(source=source.name, detail=f"syncing; follow it at /v1/sources/{source.name}/syncs")

    @app.get("/v1/imports", tags=["imports"], response_model=list[JobOut], responses=_ERRORS,
             summary="Recent imports, newest first")
    def recent_imports(limit: int = Query(50, ge=1, le=500), who: Caller = Depends(caller)) -> list[JobOut]:
        return [job_out(j) for j in who.engine.jobs.recent(limit) if _job_visible(who, j.request)]

    def job_of(job_id: str, who: Caller) -> Any:
        job = who.engine.jobs.get(job_id)
        if job is None or not _job_visible(who, job.request):
            raise NotFound(f"there is no import {job_id}")
        return job

    @app.get("/v1/imports/{job_id}", tags=["imports"], response_model=JobOut,
             responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="An import's progress (poll it)")
    def get_import(job_id: str, who: Caller = Depends(caller)) -> JobOut:
        return job_out(job_of(job_id, who))

    @app.get("/v1/imports/{job_id}/events", tags=["imports"], responses={**_ERRORS, 404: {"model": ErrorOut}},
             summary="Follow an import: server-sent events, one `progress` event when it changes, `end` when it ends")
    async def follow_import(job_id: str, who: Caller = Depends(caller)) -> StreamingResponse:
        await run_in_threadpool(job_of, job_id, who)

        async def events() -> AsyncIterator[str]:
            last = None
            while True:
                job = await run_in_threadpool(who.engine.jobs.get, job_id)
                shown = job_out(job).model_dump_json()
                if shown != last:
                    yield f"event: progress\ndata: {shown}\n\n"
                    last = shown
                if not job.is_active:
                    yield f"event: end\ndata: {shown}\n\n"
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @app.post("/v1/imports/{job_id}/cancel", tags=["imports"], response_model=JobOut,
              responses={**_ERRORS, 404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
              summary="Ask an import to stop after the batch in flight")
    def cancel_import(job_id: str, who: Caller = Depends(caller)) -> Any:
        job_of(job_id, who)
        if not who.engine.jobs.cancel(job_id):
            return JSONResponse({"detail": f"import {job_id} is not running; nothing to cancel"}, status_code=409)
        return job_out(who.engine.jobs.require(job_id))

    @app.post("/v1/imports/{job_id}/resume", tags=["imports"], response_model=JobOut,
              responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="Continue a cancelled, failed or interrupted import")
    def resume_import(job_id: str, who: Caller = Depends(caller)) -> JobOut:
        job_of(job_id, who)
        who.engine.jobs.resume(job_id)
        return job_out(who.engine.jobs.require(job_id))

    @app.post("/v1/imports/{job_id}/retry", tags=["imports"], response_model=RetryOut,
              responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="Try an import's failed memories again")
    def retry_import(job_id: str, who: Caller = Depends(caller)) -> RetryOut:
        job_of(job_id, who)
        return RetryOut(job_id=job_id, retrying=who.engine.jobs.retry_failed(job_id))

    @app.get("/v1/imports/{job_id}/failures", tags=["imports"], response_model=list[FailedItemOut],
             responses={**_ERRORS, 404: {"model": ErrorOut}}, summary="A page of an import's failures, with reasons")
    def failures(job_id: str, page: int = Query(0, ge=0), who: Caller = Depends(caller)) -> list[FailedItemOut]:
        job_of(job_id, who)
        return [FailedItemOut(item=f.item, reason=f.reason, error_type=f.error_type, retryable=f.retryable)
                for f in who.engine.jobs.failed_items(job_id, page=page)]

    @app.get("/v1/imports/{job_id}/metrics", tags=["imports"], responses={**_ERRORS, 404: {"model": ErrorOut}},
             summary="An import's batch metrics: throughput, cache hits, timings, errors by type")
    def metrics(job_id: str, who: Caller = Depends(caller)) -> dict[str, Any]:
        job_of(job_id, who)
        return who.engine.jobs.metrics(job_id).get_summary()

    # --- cache and the write queue ---------------------------------------------------
    @app.get("/v1/cache", tags=["cache"], responses=_ERRORS, summary="The embedding cache's figures")
    def cache_info(who: Caller = Depends(caller)) -> dict[str, Any]:
        info = who.engine.cache.info()
        return {k: v for k, v in info.items() if k not in ("directory", "path")}

    @app.post("/v1/cache/check", tags=["cache"], responses=_ERRORS,
              summary="Check the embedding cache (operator); with fix, repair it (admin)")
    def cache_check(body: CacheCheckIn, who: Caller = Depends(caller)) -> dict[str, Any]:
        report = who.engine.cache.check(fix=body.fix)
        return {"checked": report.checked, "healthy": report.healthy, "bad": len(report.bad_entries),
                "removed": len(report.removed), "problems": report.problem_counts(), "seconds": report.seconds}

    @app.get("/v1/writes/stats", tags=["memories"], responses=_ERRORS,
             summary="What the write queue did: memories, batches, embedding requests, Weaviate batches")
    def write_stats(who: Caller = Depends(caller)) -> dict[str, int]:
        return vars(who.engine.writes.stats())

    # --- Dify ---------------------------------------------------------------------------
    @app.post("/retrieval", tags=["dify"], response_model=DifyRetrievalOut,
              responses={403: {"model": DifyError}, 404: {"model": DifyError}, 429: {"model": DifyError}},
              summary="Dify's External Knowledge API", description=(
                  "Register this service's address in Dify as an external knowledge API; the External Knowledge "
                  "ID is the knowledge base's project name. Errors use Dify's codes: 1001 (the Authorization "
                  "header is not `Bearer <key>`), 1002 (the key is not valid), 2001 (no such knowledge base)."))
    def dify_retrieval(body: DifyRetrievalIn, authorization: str | None = Header(None)) -> Any:
        try:
            who = check.caller(authorization)
        except Unauthorized as e:
            return JSONResponse({"error_code": 1001 if e.malformed else 1002, "error_msg": str(e)}, status_code=403)
        except RateLimited as e:
            return JSONResponse({"error_code": 429, "error_msg": str(e)}, status_code=429,
                                headers={"Retry-After": str(max(1, round(e.retry_after + 0.5)))})
        if not who.may_reach(body.knowledge_id) or not who.engine.memories.count(MemoryFilter(project=body.knowledge_id)):
            return JSONResponse({"error_code": 2001, "error_msg": f"the knowledge base {body.knowledge_id!r} does "
                                                                  "not exist"}, status_code=404)
        return retrieve(who.engine, body)

    return app


def list_knowledge_bases(who: Caller) -> list[KnowledgeBaseOut]:
    """Every (project, repo) holding memories that the caller may reach, with its counts."""
    return [KnowledgeBaseOut(project=p, repo=r, documents=n, memories=m)
            for p, r, n, m in who.engine.writes.knowledge_bases() if who.may_reach(p)]


def _filter(f: Filter, who: Caller) -> MemoryFilter:
    return MemoryFilter(project=who.project_for(f.project), repo=f.repo, agent=f.agent,
                        tags=tuple(f.tags) if f.tags else None, source=f.source, source_file=f.source_file,
                        document_id=f.document_id)


def _spooled_path(engine: Engine) -> Callable[[str, str], Any]:
    """Where an upload's file lands in the spool (to remove what a refused upload left)."""
    return lambda upload_id, name: spool_path(engine.spool.root / upload_id, name)


def _job_visible(who: Caller, request: dict[str, Any] | None) -> bool:
    return who.may_reach(((request or {}).get("defaults") or {}).get("project"))


class _BodyReader(io.RawIOBase):
    """A request's body as a file the spool copies from in a worker thread: each read takes
    the next chunk from the event loop; past `limit` bytes it raises TooLarge."""

    def __init__(self, request: Request, limit: int, name: str) -> None:
        self._stream = request.stream()
        self._limit, self._name = limit, name
        self._seen = 0
        self._left = b""
        self._done = False

    def readable(self) -> bool:
        return True

    async def _next(self) -> bytes:
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            return b""

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while not self._left and not self._done:
            chunk = anyio.from_thread.run(self._next)
            if not chunk:
                self._done = True
                break
            self._seen += len(chunk)
            if self._seen > self._limit:
                raise TooLarge(f"{self._name} is larger than this service takes ({self._limit} bytes)")
            self._left = chunk
        if size < 0 or size >= len(self._left):
            out, self._left = self._left, b""
        else:
            out, self._left = self._left[:size], self._left[size:]
        return out

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _add_error_handlers(app: FastAPI, engine: Engine) -> None:
    data_dir = str(engine.settings.data_dir.resolve())

    def plain(text: str) -> str:
        """An error's words without the server's paths."""
        return text.replace(data_dir, "memsys's data directory").replace(str(engine.settings.data_dir),
                                                                       "memsys's data directory")

    def answer(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"detail": plain(text)}, status_code=status, headers=headers)

    handlers: list[tuple[type[BaseException], Callable[[Request, Any], Awaitable[JSONResponse]]]] = []

    async def unauthorized(_: Request, e: Unauthorized) -> JSONResponse:
        return answer(401, str(e), {"WWW-Authenticate": "Bearer"})

    async def limited(_: Request, e: RateLimited | QueueFull) -> JSONResponse:
        return answer(429, str(e), {"Retry-After": str(max(1, round(e.retry_after + 0.5)))})

    async def denied(_: Request, e: AccessDenied | PermissionError) -> JSONResponse:
        return answer(403, str(e))

    async def missing(_: Request, e: NotFound) -> JSONResponse:
        return answer(404, str(e))

    async def too_large(_: Request, e: TooLarge) -> JSONResponse:
        return answer(413, str(e))

    async def bad(_: Request, e: ValueError) -> JSONResponse:
        return answer(400, str(e))

    async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = []
        for error in e.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            problems.append(f"{where or 'body'}: {error.get('msg', 'is not valid')}")
        return answer(422, "; ".join(problems[:20]))

    async def mismatch(_: Request, e: EmbedderMismatchError) -> JSONResponse:
        return answer(409, str(e))

    async def unavailable(_: Request, e: StoreUnavailableError | JobStoreError) -> JSONResponse:
        return answer(503, str(e))

    async def failed(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, type(e).__name__, exc_info=e)
        return answer(500, f"memsys could not do this ({type(e).__name__}); the server's log has the details")

    handlers += [(Unauthorized, unauthorized), (RateLimited, limited), (QueueFull, limited), (AccessDenied, denied),
                 (PermissionError, denied), (NotFound, missing), (TooLarge, too_large),
                 (UnsafeNameError, bad), (EmbedderMismatchError, mismatch), (StoreUnavailableError, unavailable),
                 (JobStoreError, unavailable), (ValueError, bad), (RequestValidationError, invalid),
                 (Exception, failed)]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)  # type: ignore[arg-type]


"""The stored memories (search, browse, export, restore, delete) and the store's physical
collections (re-embed, drop)."""
from __future__ import annotations

import json
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Iterable, TextIO

from memsys.access import action
from memsys.api import HYBRID_ALPHA, check_embedder, describe_embedder, embedder_record, same_embedder
from memsys.audit import AuditAction
from memsys.config import BatchConfig
from memsys.errors import StoreUnavailableError
from memsys.ingest.memories import MemoryDefaults
from memsys.models import Memory
from memsys.jobs.request import ImportRequest, embedder_name
from memsys.store import SETTLE_PROPERTIES, BrowsePage, MemoryFilter, StoredMemory, export_record, parse_export_line
from memsys.units import plural
from memsys.engine.calls import ADMIN, OPERATOR, VIEWER, Calls, audited
from memsys.engine.forgetting import forget_content
from memsys.engine.records import CollectionVersion, DocumentSummary


# Write requests a restore has in flight at once (the Weaviate client's batch sends two).
_RESTORE_REQUESTS = 2


def _finish(writes: "deque[Future[int]]", details: dict[str, Any]) -> None:
    """Wait for every write still in flight, counting what each wrote in `details`; the
    first write that failed raises once the others are done."""
    error = None
    while writes:
        try:
            details["count"] += writes.popleft().result()
        except Exception as e:  # noqa: BLE001 - raised below, once every write is done
            error = error or e
    if error is not None:
        raise error


class Memories(Calls):
    """The stored memories: search, browse, export and restore, count, open, delete."""

    @action(VIEWER, "searching memories")
    def search(self, query: str, limit: int = 10, where: MemoryFilter | None = None, *, mode: str = "hybrid",
               alpha: float = HYBRID_ALPHA) -> list[StoredMemory]:
        """Memories best matching `query`, best first, within the filter: by meaning and
        keywords (`hybrid`), or by one (`vector`, `keyword`); each hit says how it matched."""
        where = where or MemoryFilter()
        return self._engine.system.search_memories(
            query, limit=limit, project=where.project, repo=where.repo, agent=where.agent,
            tags=list(where.tags) if where.tags else None, mode=mode, alpha=alpha,
        )

    @action(VIEWER, "browsing memories")
    def browse(self, where: MemoryFilter | None = None, offset: int = 0, limit: int = 50) -> list[StoredMemory]:
        """Memories matching the filter, newest first, a page at a time."""
        return self._engine.system.store.browse(offset=offset, limit=limit, where=where)

    @action(VIEWER, "browsing memories")
    def browse_page(self, where: MemoryFilter | None = None, after: str | None = None, limit: int = 50) -> BrowsePage:
        """A page of memories in a stable order (by ID) after the cursor `after`, with the
        cursor of the next page: no 10,000-result cap, however large the store."""
        return self._engine.system.store.page_after(after, limit=limit, where=where)

    @action(VIEWER, "exporting memories")
    def export(self, out: TextIO, where: MemoryFilter | None = None, *, vectors: bool = False) -> int:
        """Write the memories matching `where` (all when None) as JSON lines: content and
        every field, when they were created, and with `vectors` their vectors and the
        embedder that made them, so `restore` puts them back without embedding. Returns
        how many."""
        provider = self._engine.system.router.provider
        n = 0
        for memory, vector in self._engine.system.store.scan(where, include_vector=vectors):
            record = export_record(memory)
            if vector is not None:
                record["vector"] = vector
                record["embedder"] = provider.fingerprint
                record["embedder_name"] = embedder_name(provider)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
        return n

    # Writes memories back from an export, as an import would.
    @action(OPERATOR, "restoring memories", audit=AuditAction.MEMORIES_RESTORED)
    def restore(self, lines: Iterable[str], batch: int = 500, *, actor: str | None = None, source: str = "") -> int:
        """Write memories exported by `export` back: each with its vector when the export
        has one (nothing embedded), else embedded now, and with its creation time. A line
        that is not a memory raises ValueError naming its line number; a vector from another
        embedder (or of another length) is refused, so a collection never mixes two
        models. Returns how many memories were written or were already stored as they are.
        A collection whose vectors come from another embedder than the configured one is
        refused first (EmbedderMismatchError), as an import is. The restore is recorded in
        the audit trail with `source` (the file) and the count written, whether it finished
        or stopped at a bad line."""
        system = self._engine.system
        with audited(self._engine.audit_trail, AuditAction.MEMORIES_RESTORED, actor, system.store.collection_name,
                     {"source": source} if source else None) as details:
            check_embedder(system)
            provider = system.router.provider
            details["count"] = 0
            restored: set[str] = set()
            # Lines are read and checked while earlier batches are written, at most
            # _RESTORE_REQUESTS write requests at once (as the client's own batch sends them).
            writes: deque[Future[int]] = deque()
            with ThreadPoolExecutor(_RESTORE_REQUESTS, thread_name_prefix="memsys-restore") as pool:
                try:
                    pending: list[tuple[Memory, Any, Any]] = []
                    for number, line in enumerate(lines, start=1):
                        if not line.strip():
                            continue
                        memory, vector, created = parse_export_line(line, number, provider.fingerprint,
                                                                    embedder_name(provider))
                        pending.append((memory, vector, created))
                        restored.add(memory.uuid)
                        if len(pending) >= batch:
                            writes.append(pool.submit(self._restore_batch, pending))
                            pending = []
                            while len(writes) >= _RESTORE_REQUESTS:
                                details["count"] += writes.popleft().result()
                    if pending:
                        writes.append(pool.submit(self._restore_batch, pending))
                finally:
                    _finish(writes, details)
            missing = len(restored) - system.store.stored_count(list(restored))
            if missing:
                raise StoreUnavailableError(f"{plural(missing, 'memory', 'memories')} of the restore "
                                            f"{'is' if missing == 1 else 'are'} not in the store after it was written")
        return int(details["count"])

    @action(OPERATOR, "restoring memories")
    def restore_overwrites(self, lines: Iterable[str], batch: int = 1000) -> tuple[int, int]:
        """What `restore` of these export lines would do to what is stored, writing nothing:
        how many memories the lines hold, and how many of them are stored now with other
        fields (tags, source, document, place), which the restore would overwrite. A line
        that is not a memory raises ValueError naming it, as `restore` does."""
        provider = self._engine.system.router.provider
        total = overwritten = 0
        pending: list[Memory] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            pending.append(parse_export_line(line, number, provider.fingerprint, embedder_name(provider))[0])
            total += 1
            if len(pending) >= batch:
                overwritten += self._stored_otherwise(pending)
                pending = []
        return total, overwritten + self._stored_otherwise(pending)

    def _stored_otherwise(self, memories: list[Memory]) -> int:
        """How many of these memories are stored with other fields than theirs."""
        stored = self._engine.system.store.existing([m.uuid for m in memories], properties=SETTLE_PROPERTIES) \
            if memories else {}
        return sum(1 for m in memories if m.uuid in stored and not stored[m.uuid].same_as(m))

    def _restore_batch(self, batch: list[tuple[Memory, list[float] | None, Any]]) -> int:
        system = self._engine.system
        missing = [i for i, (_, v, _) in enumerate(batch) if v is None]
        vectors: list[Any] = [v for _, v, _ in batch]
        if missing:
            embedded = system.router.embed([batch[i][0].content for i in missing]).vectors
            for k, i in enumerate(missing):
                vectors[i] = embedded[k]
        outcome = system.store.write([m for m, _, _ in batch], vectors, created_at=[c for _, _, c in batch])
        if outcome.failed:
            first = min(outcome.failed)
            raise StoreUnavailableError(
                f"Weaviate refused {len(outcome.failed)} restored memories, e.g. {batch[first][0].uuid}: {outcome.failed[first]}")
        return len(outcome.written)

    @action(VIEWER, "counting memories")
    def count(self, where: MemoryFilter | None = None) -> int:
        return self._engine.system.store.count(where)

    @action(VIEWER, "opening a memory")
    def get(self, memory_id: str) -> StoredMemory | None:
        return self._engine.system.get_memory(memory_id)

    @action(ADMIN, "deleting memories", audit=AuditAction.MEMORIES_DELETED)
    def delete(self, where: MemoryFilter, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every memory the filter matches (an empty filter is refused); with
        `dry_run`, only count them. Returns how many. The job database and the spool drop
        their content first, so no resume or retry can write them again. A deletion (not a
        dry run) is recorded in the audit trail with the filter and the count."""
        engine = self._engine
        store = engine.system.store
        if dry_run:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            return store.count(where)
        shown = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(where).items() if v}
        with audited(engine.audit_trail, AuditAction.MEMORIES_DELETED, actor, store.collection_name,
                     {"filter": shown}) as details:
            if where.is_empty:
                raise ValueError("refusing to delete with an empty filter; name at least one field")
            started = time.monotonic()
            deleted = store.delete_matching(where, before_delete=self._forget)
            # Items never stored (failed, pending) go too, or a retry would write them.
            fields = {name: getattr(where, name) for name in ("project", "repo", "agent", "source", "source_file")
                      if getattr(where, name)}
            if fields or where.tags:
                self._forget(engine.job_store.uuids_matching(fields, where.tags or ()))
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    @action(ADMIN, "deleting memories", audit=AuditAction.MEMORIES_DELETED)
    def delete_job(self, job_id: str, *, dry_run: bool = False, actor: str | None = None) -> int:
        """Delete every stored memory an import job's items name, and what the job keeps
        of their content (its items' text, its spooled files). Returns how many memories.
        A deletion (not a dry run) is recorded in the audit trail with the job and the count."""
        engine = self._engine
        jobs, store = engine.job_store, engine.system.store
        job = jobs.require(job_id)
        if dry_run:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            return len(list(store.existing(jobs.job_uuids(job_id))))
        with audited(engine.audit_trail, AuditAction.MEMORIES_DELETED, actor, store.collection_name,
                     {"filter": {"job": job_id}}) as details:
            if job.is_active:
                raise ValueError(f"job {job_id} is {job.state}; cancel it before deleting what it imported")
            started = time.monotonic()
            uuids = jobs.job_uuids(job_id)
            stored = list(store.existing(uuids))
            self._forget(uuids)  # the items not stored yet too: a resume must not write them
            deleted = store.delete_ids(stored)
            engine.spool.drop(jobs.request(job_id).get("paths") or [])
            details.update(count=deleted, seconds=round(time.monotonic() - started, 3))
        return deleted

    def _forget(self, uuids: list[str]) -> None:
        forget_content(self._engine, uuids)

    @action(VIEWER, "listing documents")
    def documents(self, where: MemoryFilter | None = None, limit: int = 1000) -> list[DocumentSummary]:
        """The stored documents (within the filter), most memories first: each with its
        memory count and the last import that read it."""
        groups = self._engine.system.store.documents(where, limit=limit)
        last = self._engine.job_store.last_imports([g.document_id for g in groups])
        return [
            DocumentSummary(g.document_id, g.project, g.repo, g.source_file, g.memories,
                            *(last.get(g.document_id) or ("", None)))
            for g in groups
        ]


    @action(VIEWER, "listing documents")
    def source_files(self, where: MemoryFilter | None = None, limit: int = 10_000) -> list[str]:
        """The file names documents were imported under (within the filter), sorted: what a
        file name that matched nothing is compared with."""
        return self._engine.system.store.source_files(where, limit=limit)


class Collections(Calls):
    """The store's physical collections and re-embedding into a new one (memsys/jobs/reembed.py)."""

    @action(VIEWER, "listing collections")
    def versions(self) -> list[CollectionVersion]:
        """The store's physical collections, oldest first: the one search uses and the
        ones earlier re-embeds left behind, each with its count and embedder."""
        store = self._engine.system.store
        store.ensure_collection()
        live = store.live_collection()
        out = []
        for name in store.versions():
            recorded = store.recorded_embedder(name)
            out.append(CollectionVersion(name, name == live, store.with_collection(name, physical=True).count(),
                                         describe_embedder(recorded) if recorded else "not recorded"))
        return out

    @action(VIEWER, "reading whether a re-embed is needed")
    def needs_reembed(self) -> str:
        """Why the collection searched now does not match the configured embedder (naming
        both), or "" when it does or does not say (made before memsys recorded it: imports
        go in, and `create_reembed` still rebuilds it, recording the embedder)."""
        system = self._engine.system
        recorded = system.store.recorded_embedder()
        current = embedder_record(system.router.provider)
        if recorded is None or same_embedder(system.router.provider, recorded):
            return ""
        return (f"{system.store.live_collection()} holds vectors of {describe_embedder(recorded)}; the embedder is set to "
                f"{describe_embedder(current)}")

    # A re-embed moves what every search uses: an admin's.
    @action(ADMIN, "re-embedding the memories", audit=AuditAction.REEMBED_STARTED)
    def create_reembed(self, *, config: BatchConfig | None = None, started_by: str = "") -> str:
        """Record a re-embed job: every memory of the collection searched now is embedded
        with the configured embedder into a new collection, which search switches to when
        the job completes. Refused (ValueError) when the collection already matches the
        embedder or another re-embed is under way. Returns the job id."""
        engine = self._engine
        store, provider = engine.system.store, engine.system.router.provider
        store.ensure_collection()
        recorded = store.recorded_embedder()
        if recorded is not None and same_embedder(provider, recorded):
            raise ValueError(f"{store.live_collection()} is already embedded with "
                             f"{describe_embedder(embedder_record(provider))}; there is nothing to re-embed")
        for job in engine.job_store.list_jobs(limit=200):
            if job.is_active and engine.job_store.request(job.job_id).get("reembed_into"):
                raise ValueError(f"re-embed job {job.job_id} is {job.state}; wait for it or cancel it first")
        source, target = store.live_collection(), store.next_version()
        request = ImportRequest(
            paths=(), defaults=MemoryDefaults("re-embed", "re-embed", "re-embed"), config=config or BatchConfig.saved(engine.settings.batch_config_path),
            label=f"re-embed {source} into {target} with {embedder_name(provider)}"[:120],
            embedder=provider.fingerprint, embedder_name=embedder_name(provider), started_by=started_by,
            reembed_from=source, reembed_into=target,
        )
        return engine.job_store.create_job(request.to_json())

    @action(ADMIN, "re-embedding the memories", audit=AuditAction.REEMBED_STARTED)
    def start_reembed(self, *, config: BatchConfig | None = None, started_by: str = "",
                      actor: str | None = None) -> str:
        """Create a re-embed job (see `create_reembed`) and run it in the background;
        recorded in the audit trail (a refusal too)."""
        engine = self._engine
        with audited(engine.audit_trail, AuditAction.REEMBED_STARTED, actor or started_by or None,
                     engine.system.store.live_collection()) as details:
            job_id = self.create_reembed(config=config, started_by=started_by)
            details["job"] = job_id
        engine.runner.submit(job_id)
        return job_id

    # Dropping a collection deletes its memories: an admin's.
    @action(ADMIN, "dropping a collection", audit=AuditAction.COLLECTION_DROPPED)
    def drop(self, name: str, *, actor: str | None = None) -> int:
        """Drop an old collection of the store (one search no longer uses); returns how
        many memories it held. The collection searched now is refused. Recorded in the
        audit trail with the count."""
        with audited(self._engine.audit_trail, AuditAction.COLLECTION_DROPPED, actor, name) as details:
            store = self._engine.system.store
            n = store.with_collection(name, physical=True).count() if name in store.versions() else 0
            store.drop_version(name)
            details["count"] = n
        return n

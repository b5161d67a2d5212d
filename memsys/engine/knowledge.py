"""Knowledge bases and their documents, as people pick and follow them.

A knowledge base is a project: its name is the project's, and its parts are the
project's repos (one part, "main", unless a person names another). Memories keep their
project, repo and agent fields, so the guide's API and every earlier import read as
before: each project already stored is a knowledge base. Names are matched forgivingly
here (case and spaces: "Encyclopedia " finds "encyclopedia"), because a person types
them; the Python API and the CLI's flags stay exact.

A document's status comes from where it is: on its way in an import (the job database's
items of queued and running jobs: queued, reading, embedding), failed in the newest import
that named it (with the reason), stored (ready), or gone from the store (removed).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from memsys.access import action
from memsys.audit import AuditAction
from memsys.ingest.memories import MemoryDefaults
from memsys.jobs.job_knowledge import DocumentRemoval, FileActivity
from memsys.store import MemoryFilter, StoredMemory
from memsys.engine.calls import OPERATOR, VIEWER, Calls, audited
from memsys.engine.records import find_name, name_key, tidy_name  # noqa: F401  (re-exported by memsys.engine)
from memsys.engine.forgetting import forget_content

DEFAULT_PART = "main"  # the repo of a knowledge base whose importer named no part
DEFAULT_AGENT = "shared"  # the agent of imported documents: every agent may use them
DEFAULT_SOURCE = "document-import"
DOCUMENT_STATES = ("queued", "reading", "embedding", "ready", "failed", "removed")
_ON_THE_WAY = ("queued", "reading", "embedding")
# The fields whose stored values filters offer.
FILTER_FIELDS = ("project", "repo", "agent", "source", "tags", "source_file")


def _natural(text: str) -> tuple[Any, ...]:
    """"page 10" after "page 9": numbers in a place compare as numbers."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class KnowledgeBase:
    """A knowledge base: its name, its parts (repos) and agents, most memories first, how
    many documents and memories it holds, and its newest import."""

    name: str
    parts: tuple[str, ...]
    agents: tuple[str, ...]
    documents: int
    memories: int
    imports: int = 0
    last_job_id: str = ""
    last_import_state: str = ""
    last_import_at: float | None = None
    last_import_failed: int = 0  # so its state reads as every page names it ("Finished with failures")

    @property
    def default_part(self) -> str:
        return self.parts[0] if self.parts else DEFAULT_PART

    @property
    def default_agent(self) -> str:
        return self.agents[0] if self.agents else DEFAULT_AGENT


@dataclass(frozen=True)
class DocumentStatus:
    """A document of a knowledge base: its status (one of DOCUMENT_STATES), its stored
    memories, its last change, and for a failed one the reason. `document_id` is "" for a
    file no import could read (it never became a document)."""

    document_id: str
    knowledge_base: str
    part: str
    source_file: str
    status: str
    memories: int
    last_change: float | None
    reason: str = ""
    job_id: str = ""

    @property
    def is_on_its_way(self) -> bool:
        return self.status in _ON_THE_WAY


@dataclass(frozen=True)
class ImportChoice:
    """What a person's import used: the knowledge base, and the details they may leave to
    their defaults (blank part and agent: the knowledge base's usual ones)."""

    knowledge_base: str
    part: str = ""
    agent: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""


class Knowledge(Calls):
    """Knowledge bases (listed, found forgivingly, created), their documents with a status,
    a document's memories in order, removing one document, and remembered choices."""

    @action(VIEWER, "listing knowledge bases")
    def names(self) -> list[str]:
        """Every knowledge base's name: the projects stored and those imports named."""
        store_names = self._engine.system.store.value_counts("project")
        job_names = {p.project for p in self._engine.job_store.project_imports()}
        return sorted(set(store_names) | job_names, key=lambda n: (name_key(n), n))

    @action(VIEWER, "listing knowledge bases")
    def list(self) -> list[KnowledgeBase]:
        """Every knowledge base with its parts, agents, documents, memories and newest import."""
        counts = self._engine.system.store.value_counts("project")
        imports = {p.project: p for p in self._engine.job_store.project_imports()}
        return [self._describe(name, counts.get(name, 0), imports.get(name))
                for name in sorted(set(counts) | set(imports), key=lambda n: (name_key(n), n))]

    @action(VIEWER, "listing knowledge bases")
    def get(self, name: str) -> KnowledgeBase | None:
        """The knowledge base called exactly `name`, or None."""
        store = self._engine.system.store
        memories = store.count(MemoryFilter(project=name)) if name else 0
        imports = {p.project: p for p in self._engine.job_store.project_imports()}
        if not memories and name not in imports:
            return None
        return self._describe(name, memories, imports.get(name))

    def _describe(self, name: str, memories: int, last: Any) -> KnowledgeBase:
        store = self._engine.system.store
        where = MemoryFilter(project=name)
        by_count = lambda counts: tuple(sorted(counts, key=lambda v: (-counts[v], v)))  # noqa: E731
        parts = by_count(store.value_counts("repo", where)) if memories else ()
        agents = by_count(store.value_counts("agent", where)) if memories else ()
        documents = len(store.value_counts("document_id", where)) if memories else 0
        if last is None:
            return KnowledgeBase(name, parts, agents, documents, memories)
        return KnowledgeBase(name, parts, agents, documents, memories, last.imports, last.last_job_id,
                             last.last_state, last.last_at, last.last_failed)

    @action(VIEWER, "finding a knowledge base")
    def find(self, typed: str) -> str | None:
        """The existing knowledge base a person means by `typed` (case and spaces aside),
        or None when there is none."""
        return find_name(typed, self.names())

    @action(VIEWER, "finding a knowledge base")
    def check_new(self, typed: str) -> str:
        """The name of a new knowledge base as typed, tidied; ValueError with a sentence
        when it is blank or only differs from an existing one in case or spaces."""
        name = tidy_name(typed)
        if not name:
            raise ValueError("Type a name for the new knowledge base")
        existing = find_name(name, self.names())
        if existing is not None:
            raise ValueError(f"A knowledge base called “{existing}” already exists; names that differ only in "
                             f"capitals or spaces are the same knowledge base here. Pick “{existing}” from the list "
                             "to add to it")
        return name

    @action(VIEWER, "listing what the memories hold")
    def values(self, field: str, where: MemoryFilter | None = None) -> list[str]:
        """The values the stored memories hold in `field` (one of FILTER_FIELDS), within
        the filter, sorted the way a person reads them: what filters offer."""
        if field not in FILTER_FIELDS:
            raise ValueError(f"{field} is not a field memories can be filtered by ({', '.join(FILTER_FIELDS)})")
        return sorted(self._engine.system.store.value_counts(field, where), key=lambda v: (name_key(v), v))

    @action(VIEWER, "listing documents")
    def documents(self, name: str) -> list[DocumentStatus]:
        """The documents of knowledge base `name`, each with its status, stored memories and
        last change, in file-name order."""
        engine = self._engine
        stored = engine.system.store.documents(MemoryFilter(project=name), limit=100_000)
        last = engine.job_store.last_imports([d.document_id for d in stored])
        activity = self._activity(name)
        removals = engine.job_store.removals(name)
        rows: dict[str, DocumentStatus] = {}
        by_file: dict[tuple[str, str], list[str]] = {}
        for d in stored:
            job_id, at = last.get(d.document_id) or ("", None)
            rows[d.document_id] = DocumentStatus(d.document_id, name, d.repo, d.source_file, "ready", d.memories, at,
                                                 job_id=job_id)
            by_file.setdefault((d.repo, d.source_file), []).append(d.document_id)
        for document_id, (repo, source_file, at) in engine.job_store.project_documents(name).items():
            if document_id not in rows:
                gone = removals.get(document_id)
                rows[document_id] = DocumentStatus(document_id, name, repo, source_file, "removed", 0,
                                                   gone.removed_at if gone else at)
                by_file.setdefault((repo, source_file), []).append(document_id)
        for removal in removals.values():
            if removal.document_id not in rows:
                rows[removal.document_id] = DocumentStatus(removal.document_id, name, removal.repo, removal.source_file,
                                                           "removed", 0, removal.removed_at)
        for key, act in activity.items():
            ids = by_file.get(key)
            if not ids:
                if act.state != "done":
                    rows[f"file:{key[0]}/{key[1]}"] = DocumentStatus("", name, key[0], key[1], act.state, 0, act.at,
                                                                      act.reason, act.job_id)
                continue
            for document_id in ids:
                rows[document_id] = self._with_activity(rows[document_id], act)
        return sorted(rows.values(), key=lambda d: (_natural(d.source_file.casefold()), d.part, d.document_id))

    def _activity(self, name: str) -> dict[tuple[str, str], FileActivity]:
        """Each file's state in the newest import that named it; a file of an import whose
        process died (interrupted, to be resumed) is not on its way any more: it failed."""
        activity = self._engine.job_store.file_activity(name)
        alive: dict[str, bool] = {}
        for key, act in activity.items():
            if act.state not in _ON_THE_WAY:
                continue
            if act.job_id not in alive:
                job = self._engine.job_store.get(act.job_id)
                alive[act.job_id] = job is not None and job.is_active
            if not alive[act.job_id]:
                activity[key] = FileActivity(act.repo, act.source_file, "failed", act.job_id, act.at,
                                             f"import {act.job_id} stopped before it was brought in; resume it on Import")
        return activity

    @staticmethod
    def _with_activity(row: DocumentStatus, act: FileActivity) -> DocumentStatus:
        """A stored or removed document as the newest import that named its file left it."""
        if act.state in _ON_THE_WAY:
            return DocumentStatus(row.document_id, row.knowledge_base, row.part, row.source_file, act.state,
                                  row.memories, act.at, job_id=act.job_id)
        if act.state == "failed":
            return DocumentStatus(row.document_id, row.knowledge_base, row.part, row.source_file, "failed",
                                  row.memories, act.at, act.reason, act.job_id)
        return row

    @action(VIEWER, "opening a document")
    def memories_of(self, document_id: str) -> list[StoredMemory]:
        """A document's memories in the document's order (place in it, then chunk)."""
        found = [m for m, _ in self._engine.system.store.scan(MemoryFilter(document_id=document_id))]
        return sorted(found, key=lambda m: (_natural(m.source_location), m.chunk_index, m.uuid))

    @action(OPERATOR, "re-importing a document")
    def defaults_of(self, document_id: str) -> MemoryDefaults:
        """The fields a re-import of the document gives its memories: those its stored
        memories have (knowledge base, part, agent, tags, source). ValueError when none is
        stored."""
        found = self._engine.system.store.browse(limit=1, where=MemoryFilter(document_id=document_id))
        if not found:
            raise ValueError("This document has no memories stored; import its file into its knowledge base again")
        m = found[0]
        return MemoryDefaults(m.project, m.repo, m.agent, m.tags, m.source or DEFAULT_SOURCE)

    # Removing one document is what a mirror import does too: an operator's (deleting by
    # any filter stays an admin's, `memories.delete`).
    @action(OPERATOR, "removing a document", audit=AuditAction.MEMORIES_DELETED)
    def remove_document(self, document_id: str, *, actor: str | None = None) -> int:
        """Remove a document: its memories leave the store, what the job database and the
        spool keep of its content goes too (no resume or retry brings it back), and it is
        listed as removed. Refused (ValueError) while an import is bringing its file in.
        Returns how many memories were removed; recorded in the audit trail."""
        engine = self._engine
        store = engine.system.store
        with audited(engine.audit_trail, AuditAction.MEMORIES_DELETED, actor, store.collection_name,
                     {"filter": {"document_id": document_id}}) as details:
            found = store.browse(limit=1, where=MemoryFilter(document_id=document_id))
            if not found:
                raise ValueError("This document has no memories stored; there is nothing to remove")
            m = found[0]
            busy = self._activity(m.project).get((m.repo, m.source_file))
            if busy is not None and busy.state in _ON_THE_WAY:
                raise ValueError(f"{m.source_file} is {busy.state} in import {busy.job_id}; remove it once that "
                                 "import has finished")
            started = time.monotonic()
            deleted = store.delete_matching(MemoryFilter(document_id=document_id),
                                            before_delete=lambda uuids: forget_content(engine, uuids))
            engine.job_store.record_removal(DocumentRemoval(document_id, m.project, m.repo, m.source_file, time.time(),
                                                            actor or ""))
            details.update(count=deleted, document=m.source_file, knowledge_base=m.project,
                           seconds=round(time.monotonic() - started, 3))
        return deleted

    @action(OPERATOR, "remembering an import's choices")
    def remember(self, who: str, choice: ImportChoice) -> None:
        """Keep what `who`'s import used, for their next import (in the job database)."""
        self._engine.job_store.remember(who, "import", {
            "knowledge_base": choice.knowledge_base, "part": choice.part, "agent": choice.agent,
            "tags": list(choice.tags), "source": choice.source})

    @action(VIEWER, "reading an import's remembered choices")
    def last_choice(self, who: str) -> ImportChoice | None:
        """What `who`'s last import used, or None."""
        value = self._engine.job_store.remembered(who, "import")
        if not value or not value.get("knowledge_base"):
            return None
        return ImportChoice(str(value["knowledge_base"]), str(value.get("part") or ""), str(value.get("agent") or ""),
                            tuple(value.get("tags") or ()), str(value.get("source") or ""))

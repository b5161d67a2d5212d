"""The memories collection in one Weaviate (`MemoryStore`): its schema, batch writes with
per-object errors, lookups of what is already stored, search, browsing and deletion.

The name memsys addresses (`Settings.collection`, "Memory") is a Weaviate collection
alias pointing at a physical collection `<name>_v<n>`; a re-embed builds `<name>_v<n+1>`
and moves the alias at once, so every reader and writer follows without a restart. A store
made before memsys used aliases has a physical collection of that very name: it keeps
working as it is until its first re-embed moves it behind an alias (`switch_to`).
"""
from __future__ import annotations

import bisect
import contextlib
import dataclasses
import datetime as dt
import json
import re
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

import httpx
import numpy as np

from memsys.config import Settings
from memsys.errors import StoreUnavailableError, weaviate_errors
from memsys.lazy import lazy_module, lazy_names
from memsys.models import Memory
from memsys.store import server
from memsys.store.client import MAX_RESULTS
from memsys.store.connection import Connection
from memsys.store.terms import has_cjk, query_terms, terms_found
from memsys.store.records import (BrowsePage, MemoryFilter, StoredDocument, StoredMemory, WriteOutcome,
                                  stored_to_memory)

if TYPE_CHECKING:
    import weaviate
    from weaviate.classes.aggregate import GroupByAggregate
    from weaviate.classes.config import (Configure, ConsistencyLevel, DataType, Property, Tokenization,
                                         VectorDistances)
    from weaviate.classes.query import Filter, MetadataQuery, Sort
    from weaviate.exceptions import UnexpectedStatusCodeError

    from memsys.store import wire
else:  # imported on first use (memsys.lazy): a process that never talks to Weaviate does not load its client
    (GroupByAggregate,) = lazy_names("weaviate.classes.aggregate", "GroupByAggregate")
    Configure, ConsistencyLevel, DataType, Property, Tokenization, VectorDistances = lazy_names(
        "weaviate.classes.config", "Configure", "ConsistencyLevel", "DataType", "Property", "Tokenization",
        "VectorDistances")
    Filter, MetadataQuery, Sort = lazy_names("weaviate.classes.query", "Filter", "MetadataQuery", "Sort")
    (UnexpectedStatusCodeError,) = lazy_names("weaviate.exceptions", "UnexpectedStatusCodeError")
    wire = lazy_module("memsys.store.wire")


RETURN_PROPERTIES = [
    "content", "project", "repo", "agent", "tags", "source",
    "source_file", "source_location", "chunk_index", "content_hash", "created_at",
    "document_id", "document_hash", "record_id",
]
# What deciding whether a memory needs writing reads of the stored one: what `settle`
# compares (the uuid already stands for the content, project, repo, agent and record id)
# and the creation time a rewrite keeps. Fewer properties, fewer values for the client to decode.
SETTLE_PROPERTIES = ["content_hash", "document_id", "tags", "source", "source_file", "source_location", "chunk_index",
                     "created_at"]
SEARCH_MODES = ("hybrid", "vector", "keyword")
# A new collection's description records the embedder its vectors come from.
EMBEDDER_NOTE = "memsys memories; embedder "
# The physical collections behind an alias are named "<alias>_v<n>".
VERSION_MARK = "_v"
# What Weaviate answers for the moment a store made before aliases is moved behind one: the
# collection asked for does not exist, or (a keyword search) is being dropped, its shards'
# indexes closed before the collection is gone.
_MID_SWITCH = re.compile(r"could not find class|class (.* )?not found|collection .* not found|no such class"
                         r"|requires inverted index", re.I)
# The content again, split into plain words for keywords: gse (Chinese) splits a code such
# as "E4471" or "QX-2291" into pieces, so an exact term is matched on either tokenization.
KEYWORD_PROPERTIES = ["content", "content_words^5"]
# A query without Chinese, Japanese or Korean searches the plain words alone: gse cuts each
# English word of a query into every piece its dictionary knows ("restore": "re", "store",
# ...), each a term most memories hold, so BM25 over `content` scores nearly the whole store
# (half a second a query at 100,000 memories), for matches of pieces that are not the word.
WORDS_ONLY = ["content_words"]
# The description memsys gives `content_words` when it adds it to a collection made before
# it: the memories stored by then lack it, so keywords are searched in `content` too.
ADDED_WORDS_NOTE = "added to a collection made before it: older memories lack it"
# A keyword search asks for this many times the hits it shows, and keeps those that hold a
# query term (gse's pieces of a word score too).
KEYWORD_CANDIDATES = 5
# A Chinese or Japanese particle right after a word in kanji or katakana ("东京的观光地",
# "会議室の予約"): as a keyword it matches nearly every text, and Weaviate's stopwords do not
# apply to gse, so the keyword side of a search leaves it out.
_CJK_PARTICLE = re.compile(r"(?<=[\u4e00-\u9fff\u30a0-\u30ff])[的了是在和のはがをにでとも](?=[\u4e00-\u9fff\u30a0-\u30ff\s]|$)")


def keyword_properties(query: str, words_complete: bool = True) -> list[str]:
    """The properties BM25 searches for `query`: the plain words, and with Chinese, Japanese
    or Korean in it (or memories stored without plain words) the gse-tokenized content too."""
    return KEYWORD_PROPERTIES if has_cjk(query) or not words_complete else WORDS_ONLY


def keyword_text(query: str) -> str:
    """The query as keyword search uses it: CJK particles between words left out."""
    return _CJK_PARTICLE.sub(" ", query)


# Weaviate's answer to a query vector of another length than the collection's vectors.
_OTHER_LENGTH = re.compile(r"vector lengths don't match", re.I)
# How long a read waits for a collection that is missing while an alias is being made.
_SWITCH_SECONDS = 10.0
# A cluster's default replication factor: every node holds a copy, up to this many.
DEFAULT_MAX_REPLICAS = 3
T = TypeVar("T")


def is_replica_error(message: str) -> bool:
    """True when Weaviate says too few replicas answered for the consistency level (a
    node is down or unreachable), as opposed to refusing the object itself."""
    m = message.lower()
    return "enough replicas" in m or "cannot achieve consistency level" in m



def _version_number(alias: str, name: str) -> int:
    """n when `name` is "<alias>_v<n>" (Weaviate capitalises the first letter), else 0."""
    prefix = f"{alias}{VERSION_MARK}".lower()
    rest = name[len(prefix):] if name.lower().startswith(prefix) else ""
    return int(rest) if rest.isdigit() else 0



def _matched_by(explain: str | None) -> str:
    """Which of hybrid search's two result sets a hit was in, from Weaviate's score
    explanation ("(Result Set keyword,bm25) ... (Result Set vector,hybridVector) ...")."""
    text = (explain or "").lower()
    keyword, meaning = "keyword" in text, "vector" in text
    return "both" if keyword and meaning else "keyword" if keyword else "meaning"



def _asked(limit: int, mode: str) -> int:
    """How many hits to ask Weaviate for: a keyword search keeps only hits holding a query
    term, so it asks for more candidates than it shows."""
    return min(max(limit * KEYWORD_CANDIDATES, limit), MAX_RESULTS) if mode == "keyword" else limit


def truthful_hits(hits: Sequence[StoredMemory], query: str, limit: int, *, keyword_only: bool) -> list[StoredMemory]:
    """Search hits as people read them: each with the query terms its text really contains
    and its score as a share of the best hit's (one scale in every mode); a keyword search
    keeps only the hits that contain a term, since gse matches pieces of a word."""
    terms = query_terms(query)
    marked = [dataclasses.replace(h, terms_found=terms_found(h.content, terms)) for h in hits]
    if keyword_only and terms:
        marked = [h for h in marked if h.terms_found]
    marked = marked[:limit]
    best = max((h.score for h in marked if h.score is not None and h.score > 0), default=None)
    return [dataclasses.replace(h, match=None if best is None or h.score is None else max(0.0, min(1.0, h.score / best)))
            for h in marked]


@dataclass(frozen=True)
class IndexQueue:
    """Vectors stored but not yet in the vector index, over every shard of a collection."""

    queued: int
    shards: int
    not_ready: tuple[str, ...]  # shards whose indexing status is not READY

    @property
    def drained(self) -> bool:
        return self.queued == 0 and not self.not_ready


# Which nodes of the cluster are down, asked of a store (`memsys.store.cluster.down_nodes`).
DownNodes = Callable[["MemoryStore"], list[str]]


class MemoryStore:
    """The memories collection in one Weaviate. Thread-safe; connects on first use.

    `down_nodes` says which nodes of the cluster are down: a write that cannot get the
    copies its consistency level asks for is then refused up front with their names, and a
    write Weaviate refused for too few replicas says which. Without it no node counts as
    down, and Weaviate alone decides."""

    def __init__(
        self,
        settings: Settings,
        client: weaviate.WeaviateClient | None = None,
        collection: str | None = None,
        *,
        connection: Connection | None = None,
        physical: bool = False,
        down_nodes: DownNodes | None = None,
    ) -> None:
        self.settings = settings
        self.collection_name = collection or settings.collection
        # True: `collection_name` is one physical collection, never an alias (a re-embed's
        # target while it is built, an old version being copied or dropped).
        self.physical = physical
        self._connection = connection or Connection(settings, client)
        self._down_nodes = down_nodes
        self._ready = False
        self._replication_factor: int | None = None  # read from the collection once, on a write
        # False when memories stored before `content_words` existed may lack it (see ADDED_WORDS_NOTE).
        self._words_complete = True
        # The embedder a collection this store creates is recorded with (set by MemorySystem).
        self.embedder: dict[str, Any] | None = None

    @property
    def client(self) -> weaviate.WeaviateClient:
        return self._connection.get()

    def with_collection(self, name: str, physical: bool = False) -> "MemoryStore":
        """The same connection, another collection (tests and multi-tenant scripts); with
        `physical`, exactly the collection `name`, never an alias."""
        store = MemoryStore(self.settings, collection=name, connection=self._connection, physical=physical,
                            down_nodes=self._down_nodes)
        store.embedder = self.embedder
        return store

    def live_collection(self) -> str:
        """The physical collection the name stands for now: the alias's target, or the name
        itself (a physical store, or one made before memsys used aliases)."""
        if self.physical:
            return self.collection_name
        alias = self.on_a_node(lambda: self.client.alias.get(alias_name=self.collection_name))
        return alias.collection if alias is not None else self.collection_name

    def versions(self) -> list[str]:
        """The physical collections of this name, oldest first: "<name>_v<n>" by n, and the
        name itself when a collection made before aliases still holds it."""
        if self.physical:
            return [self.collection_name] if self.client.collections.exists(self.collection_name) else []
        names = list(self.client.collections.list_all(simple=True))
        numbered = sorted((_version_number(self.collection_name, n), n) for n in names
                          if _version_number(self.collection_name, n))
        legacy = [n for n in names if n.lower() == self.collection_name.lower()]
        return legacy + [n for _, n in numbered]

    def next_version(self) -> str:
        """The name of the next physical collection ("<name>_v<n+1>"); a store made before
        aliases counts as version 1."""
        numbers = [_version_number(self.collection_name, n) or 1 for n in self.versions()]
        return f"{self.collection_name}{VERSION_MARK}{max(numbers, default=0) + 1}"

    def recorded_embedder(self, collection: str | None = None) -> dict[str, Any] | None:
        """The embedder a collection (default: the live one, following the alias) was
        created for (provider, model, dimensions, fingerprint), as recorded in its
        description; None for a collection made before memsys recorded it."""
        self.ensure_collection()

        def description(name: str) -> str:
            return self.client.collections.get(name).config.get().description or ""

        if collection:
            note = self.on_a_node(lambda: description(collection))
        else:
            note = self._across_the_switch(lambda: description(self.live_collection()))
        if not note.startswith(EMBEDDER_NOTE):
            return None
        try:
            return dict(json.loads(note.removeprefix(EMBEDDER_NOTE)))
        except (ValueError, TypeError):
            return None

    @property
    def alias_switches(self) -> int:
        """How often this process moved an alias on this connection."""
        return self._connection.alias_switches

    def switch_to(self, target: str) -> str:
        """Point the name at the physical collection `target` at once (the alias is created
        or moved), so every search and write from then on uses it; returns the physical
        collection it pointed at before. A store made before aliases has a collection of
        the alias's own name, which Weaviate refuses an alias beside: it is copied (vectors
        and all, nothing embedded) to the next free version, then dropped and the alias made
        in its place; reads wait out that moment (see `read`)."""
        try:
            return self._switch_to(target)
        finally:
            self._connection.alias_switches += 1  # searches from now on look again

    def _switch_to(self, target: str) -> str:
        client = self.client
        alias = client.alias.get(alias_name=self.collection_name)
        if alias is not None:
            client.alias.update(alias_name=self.collection_name, new_target_collection=target)
            return alias.collection
        if not client.collections.exists(self.collection_name):
            client.alias.create(alias_name=self.collection_name, target_collection=target)
            return ""
        legacy = self.with_collection(self.collection_name, physical=True)
        kept = self.with_collection(f"{self.collection_name}{VERSION_MARK}1", physical=True)
        kept.embedder = legacy.recorded_embedder()
        legacy.copy_into(kept)
        client.collections.delete(self.collection_name)
        client.alias.create(alias_name=self.collection_name, target_collection=target)
        self._ready = False
        return kept.collection_name

    def copy_into(self, target: "MemoryStore", page: int = 500) -> int:
        """Copy every memory with its vector and creation time into `target` (nothing
        embedded; the same uuids); returns how many."""
        n = 0
        batch: list[tuple[StoredMemory, list[float] | None]] = []
        for item in self.scan(include_vector=True, page=page):
            batch.append(item)
            if len(batch) >= page:
                n += target.write_stored(batch)
                batch = []
        return n + (target.write_stored(batch) if batch else 0)

    def write_stored(self, batch: Sequence[tuple[StoredMemory, list[float] | None]]) -> int:
        """Write memories read from another collection, with their vectors; a refusal raises."""
        memories = [stored_to_memory(m) for m, _ in batch]
        outcome = self.write(memories, [v or [] for _, v in batch], created_at=[m.created_at for m, _ in batch])
        if outcome.failed:
            first = min(outcome.failed)
            raise StoreUnavailableError(f"Weaviate refused {len(outcome.failed)} memories copied into "
                                        f"{self.collection_name}, e.g. {memories[first].uuid}: {outcome.failed[first]}")
        return len(outcome.written)

    def drop_version(self, name: str) -> None:
        """Drop one physical collection of this store that the name does not point at."""
        if name not in self.versions():
            raise ValueError(f"{name} is not a collection of {self.collection_name} (they are: {', '.join(self.versions())})")
        if name == self.live_collection():
            raise ValueError(f"{name} is the collection {self.collection_name} searches now; it cannot be dropped")
        self.client.collections.delete(name)

    def close(self) -> None:
        self._connection.close()
        self._ready = False

    @contextlib.contextmanager
    def import_running(self) -> Iterator[None]:
        """While an import runs, a stopped server stays stopped (see `Connection`)."""
        self._connection.importing(+1)
        try:
            yield
        finally:
            self._connection.importing(-1)

    def server_stopped(self) -> str:
        """Why this data directory's memsys server is not running, or "" when it runs (or
        when Weaviate is a configured server memsys does not run)."""
        if self.settings.weaviate_url:
            return ""
        if server.running_state(self.settings) is not None:
            return ""
        last = server.read_last_stop(self.settings)
        return f"the memsys server for {self.settings.data_dir} stopped ({last})" if last else \
            f"the memsys server for {self.settings.data_dir} is not running"

    @property
    def collection(self) -> Any:
        self.ensure_collection()
        return self.client.collections.get(self.collection_name)

    def ensure_collection(self) -> None:
        """On first use: a new store gets its first physical collection "<name>_v1" and the
        alias "<name>" pointing at it; an existing one gets any properties it lacks."""
        if self._ready:
            return
        client = self.client
        if self.physical:
            self._ensure_physical(self.collection_name)
        else:
            alias = client.alias.get(alias_name=self.collection_name)
            if alias is not None:
                self._ensure_physical(alias.collection)
            elif client.collections.exists(self.collection_name):
                self._ensure_physical(self.collection_name)  # made before memsys used aliases
            else:
                first = self.next_version()
                self._ensure_physical(first)
                try:
                    client.alias.create(alias_name=self.collection_name, target_collection=first)
                except weaviate_errors() as e:
                    # Another process may have made it in the meantime.
                    if client.alias.get(alias_name=self.collection_name) is None:
                        raise StoreUnavailableError(f"cannot create the alias {self.collection_name}: {e}") from None
        self._ready = True

    def _ensure_physical(self, name: str) -> None:
        """Create the physical collection `name` unless it exists: self-provided vectors,
        cosine distance, the embedder recorded in its description."""
        client = self.client
        if not client.collections.exists(name):
            text_tok = Tokenization.GSE if not self.settings.weaviate_url else Tokenization.WORD
            exact = Tokenization.FIELD
            try:
                layout = self._layout(client)
                client.collections.create(
                    name,
                    description=EMBEDDER_NOTE + json.dumps(self.embedder) if self.embedder else "memsys memories",
                    vector_config=Configure.Vectors.self_provided(
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
                    ),
                    properties=[
                        Property(name="content", data_type=DataType.TEXT, tokenization=text_tok),
                        Property(name="project", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="repo", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="agent", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="tags", data_type=DataType.TEXT_ARRAY, tokenization=exact),
                        Property(name="source", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="source_file", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="source_location", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="chunk_index", data_type=DataType.INT),
                        Property(name="content_hash", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="created_at", data_type=DataType.DATE),
                        Property(name="document_id", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="document_hash", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="record_id", data_type=DataType.TEXT, tokenization=exact),
                        Property(name="content_words", data_type=DataType.TEXT, tokenization=Tokenization.WORD),
                    ],
                    **layout,
                )
            except weaviate_errors() as e:
                # Another process may have created it in the meantime.
                if not client.collections.exists(name):
                    raise StoreUnavailableError(f"cannot create collection {name}: {e}") from None
        else:
            self._add_document_properties(name)

    def _layout(self, client: weaviate.WeaviateClient) -> dict[str, Any]:
        """Replication and sharding for a new collection, from the settings and the nodes
        that are up: by default every node holds a copy (at most three) and each node one
        shard; one node (embedded) gets Weaviate's own defaults."""
        s = self.settings
        try:
            nodes = len(client.cluster.nodes(output="minimal"))
        except weaviate_errors():
            nodes = 0  # a server that does not say (e.g. no rights): leave its defaults
        factor = s.replication_factor or (min(nodes, DEFAULT_MAX_REPLICAS) if nodes > 1 else None)
        if factor and nodes and factor > nodes:
            raise StoreUnavailableError(
                f"MEMSYS_REPLICATION_FACTOR is {factor}, but only {nodes} Weaviate node(s) are up; "
                "start more nodes or lower it"
            )
        layout: dict[str, Any] = {}
        if factor:
            with warnings.catch_warnings():
                # The client marks async_enabled deprecated for servers >= 1.38; 1.35 honours it.
                warnings.simplefilter("ignore", DeprecationWarning)
                layout["replication_config"] = Configure.replication(
                    factor=factor, async_enabled=s.async_replication if factor > 1 else None
                )
        if s.shard_count:
            layout["sharding_config"] = Configure.sharding(desired_count=s.shard_count)
        return layout

    def _writing(self) -> Any:
        return self.collection.with_consistency_level(ConsistencyLevel(self.settings.write_consistency))

    def on_a_node(self, op: Callable[[], T]) -> T:
        """`op()`, which reaches Weaviate through `self.client` or `self.collection`; when
        the node did not answer and the cluster has other nodes (WEAVIATE_URLS), again on
        the next one that does."""
        attempt = 0
        while True:
            client = self.client
            try:
                return op()
            except weaviate_errors(httpx.TransportError) as e:
                attempt += 1
                if attempt >= self._connection.node_count or not self._connection.fail_over(client, e):
                    raise

    def _across_the_switch(self, op: Callable[[], T]) -> T:
        """`op()` on a node that answers (see `on_a_node`). A store made before aliases is
        moved behind one by dropping its collection and creating the alias: for that
        moment the name answers nothing, and `op` is made again until it does."""
        deadline = time.monotonic() + _SWITCH_SECONDS
        while True:
            try:
                return self.on_a_node(op)
            except weaviate_errors() as e:
                gone = _MID_SWITCH.search(str(e)) or (isinstance(e, UnexpectedStatusCodeError) and e.status_code == 404)
                if not gone or self.physical or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def read(self, op: Callable[[Any], T], level: str | None = None) -> T:
        """Run a read at the configured consistency level. While too few replicas answer
        for it (a node is down), answer from one replica instead: reads keep working."""
        level = level or self.settings.read_consistency
        try:
            return self._across_the_switch(lambda: op(self.collection.with_consistency_level(ConsistencyLevel(level))))
        except weaviate_errors() as e:
            if level == "ONE" or not is_replica_error(str(e)):
                raise
        return self.on_a_node(lambda: op(self.collection.with_consistency_level(ConsistencyLevel.ONE)))

    def _add_document_properties(self, name: str) -> None:
        """A collection made before memories knew their document gets those properties
        (tokenized for exact filters), so a re-import and delete by document work on it."""
        collection = self.client.collections.get(name)
        have = {prop.name: prop for prop in collection.config.get().properties}
        for name, tokenization in (("document_id", Tokenization.FIELD), ("document_hash", Tokenization.FIELD),
                                   ("content_words", Tokenization.WORD), ("record_id", Tokenization.FIELD)):
            if name not in have:
                collection.config.add_property(Property(
                    name=name, data_type=DataType.TEXT, tokenization=tokenization,
                    description=ADDED_WORDS_NOTE if name == "content_words" else None))
        words = have.get("content_words")
        self._words_complete = words is not None and (words.description or "") != ADDED_WORDS_NOTE

    # --- writes --------------------------------------------------------------------
    def write(
        self,
        memories: Sequence[Memory],
        vectors: np.ndarray | Sequence[Sequence[float]],
        created_at: Sequence[dt.datetime | None] | None = None,
    ) -> WriteOutcome:
        """Write memories with their vectors in one batch request. Objects with the same
        UUID are replaced, so a retry never duplicates. Per-object errors come back in
        `failed`; nothing is dropped silently."""
        if not memories:
            return WriteOutcome([], {})
        now = wire.stamp(dt.datetime.now(dt.timezone.utc))
        stamps = [wire.stamp(created_at[i]) if created_at and created_at[i] else now for i in range(len(memories))]
        short = self._too_few_replicas()
        if short:
            return WriteOutcome([], {i: short for i in range(len(memories))})
        # The request is built once (vectors as float32 bytes) and sent as `insert_many` would.
        request = wire.batch_request(self.collection_name, memories, vectors, stamps, self.settings.write_consistency)
        # The same UUIDs again on another node if this one did not answer: never twice.
        errors = self.on_a_node(lambda: wire.send(self.collection, request))
        # Objects refused (every one alike when no replica quorum answered, say) are
        # per-object failures: the caller retries them with the same UUIDs or records each.
        failed = {int(i): self._explain_write_error(message) for i, message in errors.items()}
        written = [m.uuid for i, m in enumerate(memories) if i not in failed]
        return WriteOutcome(written, failed)

    def _too_few_replicas(self) -> str:
        """Why a write cannot meet its consistency level now, or "".

        Weaviate resolves a level against the replicas it can still reach: once a dead node
        has left its member list (a few seconds), ALL means "all the live ones" and a write
        succeeds on fewer copies than the operator asked for. memsys holds the level to the
        collection's replication factor instead, counting each node that is down as a
        missing replica (exact when every node holds a copy, the default)."""
        if self._replication_factor is None:
            config = self.collection.config.get()
            self._replication_factor = config.replication_config.factor if config.replication_config else 1
        factor = self._replication_factor
        level = self.settings.write_consistency
        if factor <= 1 or level == "ONE":
            return ""
        need = factor if level == "ALL" else factor // 2 + 1
        down = self._nodes_down()
        if factor - len(down) >= need:
            return ""
        return (f"not enough replicas for consistency {level}: it needs {need} of {factor} copies and "
                f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} down")

    def _nodes_down(self) -> list[str]:
        """The nodes of the cluster that are down, as far as this store is told."""
        return self._down_nodes(self) if self._down_nodes is not None else []

    def _explain_write_error(self, message: str) -> str:
        if not is_replica_error(message):
            return message
        down = self._nodes_down()
        where = f"{', '.join(down)} {'is' if len(down) == 1 else 'are'} down" if down else "a replica did not answer"
        return (f"too few replicas took the write for consistency {self.settings.write_consistency} ({where}); "
                f"Weaviate said: {message}")

    def rewrite(self, memories: Sequence[Memory], created_at: Sequence[dt.datetime | None]) -> WriteOutcome:
        """Rewrite the properties of stored memories (same content, new metadata) with the
        vectors they already have: nothing is embedded. One read and one batch write."""
        if not memories:
            return WriteOutcome([], {})
        vectors = self.vectors([m.uuid for m in memories])
        missing = {i: "it is no longer stored; import it again" for i, m in enumerate(memories) if m.uuid not in vectors}
        present = [i for i in range(len(memories)) if i not in missing]
        outcome = self.write([memories[i] for i in present], [vectors[memories[i].uuid] for i in present],
                             created_at=[created_at[i] for i in present])
        failed = dict(missing)
        failed.update({present[j]: reason for j, reason in outcome.failed.items()})
        return WriteOutcome(outcome.written, failed)

    def vectors(self, uuids: Sequence[str]) -> dict[str, list[float]]:
        """The stored vectors of `uuids` (those that exist), by uuid."""
        found: dict[str, list[float]] = {}
        ids = list(dict.fromkeys(uuids))
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            res = self.read(lambda c: c.query.fetch_objects(
                filters=Filter.by_id().contains_any(chunk), limit=len(chunk), include_vector=True, return_properties=[]
            ))
            for obj in res.objects:
                found[str(obj.uuid)] = obj.vector["default"]
        return found

    def delete_matching(self, where: MemoryFilter, before_delete: Callable[[list[str]], None] | None = None) -> int:
        """Delete every memory matching a non-empty filter, however many, a page of uuids
        at a time; `before_delete(uuids)` runs before each page goes (to forget them
        elsewhere first). Returns how many were deleted."""
        flt = where.to_weaviate()
        if flt is None:
            raise ValueError("refusing to delete with an empty filter; name at least one field")
        total = 0
        while True:
            res = self.read(lambda c: c.query.fetch_objects(filters=flt, limit=MAX_RESULTS, return_properties=[]))
            ids = [str(o.uuid) for o in res.objects]
            if not ids:
                return total
            if before_delete is not None:
                before_delete(ids)
            total += self.delete_ids(ids)

    def document_ids(self, document_id: str) -> list[str]:
        """The uuids of every memory stored for one document, however many."""
        flt = Filter.by_property("document_id").equal(document_id)
        return [str(o.uuid) for o in self._objects(flt, None, MAX_RESULTS, properties=[])]

    def delete_ids(self, uuids: Sequence[str]) -> int:
        """Delete the memories with these uuids; returns how many were deleted."""
        total = 0
        ids = list(dict.fromkeys(uuids))
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            result = self._writing().data.delete_many(where=Filter.by_id().contains_any(chunk))
            total += int(result.successful)
        return total

    def _counts_by(self, prop: str, where: MemoryFilter | None, limit: int) -> dict[str, int]:
        """How many memories (within the filter) hold each value of `prop`, in one aggregate;
        at most `limit` values, empty ones left out."""
        res = self.on_a_node(lambda: self.collection.aggregate.over_all(
            filters=where.to_weaviate() if where else None,
            group_by=GroupByAggregate(prop=prop, limit=limit),
            total_count=True,
        ))
        return {str(g.grouped_by.value): int(g.total_count or 0) for g in res.groups if g.grouped_by.value}

    def documents(self, where: MemoryFilter | None = None, limit: int = 1000) -> list[StoredDocument]:
        """The documents stored (within the filter), most memories first, at most `limit`."""
        counts = self._counts_by("document_id", where, limit)
        out = []
        for doc_id, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            # One chunk says where the document came from.
            obj = self.read(lambda c: c.query.fetch_objects(
                filters=Filter.by_property("document_id").equal(doc_id), limit=1,
                return_properties=["project", "repo", "source_file"],
            )).objects
            p = obj[0].properties if obj else {}
            out.append(StoredDocument(doc_id, p.get("project") or "", p.get("repo") or "", p.get("source_file") or "", n))
        return out

    def value_counts(self, prop: str, where: MemoryFilter | None = None, limit: int = 10_000) -> dict[str, int]:
        """How many memories (within the filter) hold each value of the property `prop`
        (for a list property such as tags, each of its values), in one aggregate."""
        return self._counts_by(prop, where, limit)
    def document_counts(self, where: MemoryFilter | None = None, limit: int = 10_000) -> dict[str, int]:
        """How many memories each stored document holds (within the filter), by document
        id, in one aggregate; at most `limit` documents."""
        return self._counts_by("document_id", where, limit)

    def source_files(self, where: MemoryFilter | None = None, limit: int = 10_000) -> list[str]:
        """The file names documents were imported under (within the filter), sorted, in one
        aggregate."""
        return sorted(self._counts_by("source_file", where, limit))

    def knowledge_bases(self, limit: int = 1000) -> list[tuple[str, str, int, int]]:
        """(project, repo, documents, memories) of every knowledge base holding memories,
        sorted: one aggregate for the projects, then one per project for its repos and
        one per knowledge base for its documents."""
        out = []
        for project in sorted(self._counts_by("project", None, limit)):
            for repo, n in sorted(self._counts_by("repo", MemoryFilter(project=project), limit).items()):
                documents = len(self._counts_by("document_id", MemoryFilter(project=project, repo=repo), 100_000))
                out.append((project, repo, documents, n))
        return out

    def delete_all(self) -> None:
        """Drop the store: the alias and every physical collection of this name (a new one
        is created on next use)."""
        versions = self.versions()
        if not self.physical:
            self.client.alias.delete(alias_name=self.collection_name)
        for name in versions:
            self.client.collections.delete(name)
        self._ready = False
        self._replication_factor = None

    # --- reads ---------------------------------------------------------------------
    def existing(self, uuids: Sequence[str], level: str | None = None,
                 properties: list[str] = RETURN_PROPERTIES) -> dict[str, StoredMemory]:
        """The stored memories among `uuids`, by uuid (read at `level`, default the
        configured read consistency), with `properties` read (those left out read as
        empty: SETTLE_PROPERTIES is what `settle` needs)."""
        found: dict[str, StoredMemory] = {}
        ids = list(dict.fromkeys(uuids))
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            fetch = lambda c: c.query.fetch_objects(  # noqa: E731
                filters=Filter.by_id().contains_any(chunk), limit=len(chunk), return_properties=properties
            )
            # A check at an explicit level (ALL, for verification) must not fall back.
            res = fetch(self.collection.with_consistency_level(ConsistencyLevel(level))) if level else self.read(fetch)
            for obj in res.objects:
                found[str(obj.uuid)] = StoredMemory.from_object(obj)
        return found

    def stored_count(self, uuids: Sequence[str]) -> int:
        """How many of `uuids` are stored: counted by Weaviate (an aggregate over an id
        filter, a thousand ids per request), nothing read back."""
        ids = list(dict.fromkeys(uuids))
        found = 0
        for start in range(0, len(ids), 1000):
            flt = Filter.by_id().contains_any(ids[start:start + 1000])
            res = self.on_a_node(lambda: self.collection.aggregate.over_all(total_count=True, filters=flt))
            found += int(res.total_count or 0)
        return found

    def get(self, uuid: str) -> StoredMemory | None:
        obj = self.read(lambda c: c.query.fetch_object_by_id(uuid, return_properties=RETURN_PROPERTIES))
        return StoredMemory.from_object(obj) if obj is not None else None

    def count(self, where: MemoryFilter | None = None) -> int:
        flt = where.to_weaviate() if where else None
        res = self.on_a_node(lambda: self.collection.aggregate.over_all(total_count=True, filters=flt))
        return int(res.total_count or 0)

    def search(
        self,
        vector: np.ndarray | Sequence[float] | None,
        limit: int = 10,
        where: MemoryFilter | None = None,
        *,
        text: str = "",
        mode: str = "vector",
        alpha: float = 0.5,
    ) -> list[StoredMemory]:
        """Search by meaning (`vector`), by keyword (BM25 over `text`, with the collection's
        tokenizer: gse for Chinese, kagome for Japanese) or both fused (`hybrid`, `alpha`
        1 = meaning only, 0 = keywords only). Each hit says how it matched."""
        filters = where.to_weaviate() if where else None
        try:
            hits = self.read(lambda c: self._search(c.query, vector, _asked(limit, mode), filters, text, mode, alpha,
                                                   self._keyword_properties(text)))
        except weaviate_errors() as e:
            if mode == "keyword" or not text or not _OTHER_LENGTH.search(str(e)):
                raise
            # The collection holds vectors of another length than the query's: another model's,
            # such as while a re-embed to a model of other dimensions has not switched yet.
            # Keywords still answer, and each hit says it matched by keyword.
            mode = "keyword"
            hits = self.read(lambda c: self._search(c.query, None, _asked(limit, mode), filters, text, mode, alpha,
                                                   self._keyword_properties(text)))
        return truthful_hits(hits, text, limit, keyword_only=mode == "keyword")

    def _keyword_properties(self, text: str) -> list[str]:
        self.ensure_collection()  # it learns whether every memory holds its plain words
        return keyword_properties(text, self._words_complete)

    @staticmethod
    def _search(query: Any, vector: np.ndarray | Sequence[float] | None, limit: int, filters: Any, text: str, mode: str,
                alpha: float, keyword_properties: list[str]) -> list[StoredMemory]:
        if mode == "keyword":
            res = query.bm25(query=keyword_text(text), query_properties=keyword_properties, limit=limit, filters=filters,
                             return_metadata=MetadataQuery(score=True), return_properties=RETURN_PROPERTIES)
            return [StoredMemory.from_object(o, score=o.metadata.score, matched_by="keyword") for o in res.objects]
        if vector is None:
            raise ValueError(f"a {mode} search needs the query's vector")
        vec = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
        if mode == "vector":
            res = query.near_vector(near_vector=vec, limit=limit, filters=filters,
                                    return_metadata=MetadataQuery(distance=True), return_properties=RETURN_PROPERTIES)
            return [
                StoredMemory.from_object(o, score=None if o.metadata.distance is None else 1.0 - float(o.metadata.distance),
                                         matched_by="meaning")
                for o in res.objects
            ]
        if mode != "hybrid":
            raise ValueError(f"search mode {mode!r} is not one of {', '.join(SEARCH_MODES)}")
        # Weaviate reads each side's candidates (100 of each) with the properties asked for:
        # the hits come back with their ids and scores only, and the few shown are read by id.
        res = query.hybrid(query=keyword_text(text), vector=vec, alpha=alpha, limit=limit, filters=filters,
                           query_properties=keyword_properties,
                           return_metadata=MetadataQuery(score=True, explain_score=True),
                           return_properties=[])
        ids = [str(o.uuid) for o in res.objects]
        found = {str(o.uuid): o for o in query.fetch_objects(
            filters=Filter.by_id().contains_any(ids), limit=len(ids), return_properties=RETURN_PROPERTIES).objects} if ids else {}
        return [StoredMemory.from_object(found[str(o.uuid)], score=o.metadata.score,
                                         matched_by=_matched_by(o.metadata.explain_score))
                for o in res.objects if str(o.uuid) in found]

    def browse(self, offset: int = 0, limit: int = 50, where: MemoryFilter | None = None) -> list[StoredMemory]:
        res = self.read(lambda c: c.query.fetch_objects(
            limit=limit,
            offset=offset,
            filters=where.to_weaviate() if where else None,
            sort=Sort.by_property("created_at", ascending=False),
            return_properties=RETURN_PROPERTIES,
        ))
        return [StoredMemory.from_object(o) for o in res.objects]

    @property
    def rest_url(self) -> str:
        """The REST address of the node memsys talks to (for the per-node checks)."""
        return self._connection.node_url.rstrip("/")

    def rest_headers(self) -> dict[str, str]:
        key = self.settings.weaviate_api_key.get()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def scan(self, where: MemoryFilter | None = None, after: str | None = None, include_vector: bool = False,
             page: int = 1000) -> Iterator[tuple[StoredMemory, list[float] | None]]:
        """Every memory matching `where` (all when None), in uuid order from after the
        uuid `after`, with its vector if asked; there is no 10,000 cap. Unfiltered, this is
        Weaviate's cursor. The cursor takes no filter, so a filtered scan asks for the
        filter's matches with a uuid after the last one seen, sorted by uuid, a page at a
        time: Weaviate reads only the matches, however large the store."""
        for obj in self._objects(where.to_weaviate() if where is not None else None, after, page,
                                 include_vector=include_vector):
            yield StoredMemory.from_object(obj), (obj.vector["default"] if include_vector else None)

    def _objects(self, filters: Any, after: str | None, page: int, *, include_vector: bool = False,
                 properties: list[str] = RETURN_PROPERTIES) -> Iterator[Any]:
        """Every object matching `filters` (all when None) in uuid order after `after`, read
        a page at a time (see `scan`)."""
        for objects in self._pages(filters, after, page, include_vector=include_vector, properties=properties):
            yield from objects

    def _pages(self, filters: Any, after: str | None, page: int, *, include_vector: bool = False,
               properties: list[str] = RETURN_PROPERTIES) -> Iterator[list[Any]]:
        """The objects of `_objects`, a page (one request) at a time; a short page is the last."""
        while True:
            if filters is None:
                query = dict(after=after)
            else:
                query = dict(filters=filters & Filter.by_property("_id").greater_than(after) if after else filters,
                             sort=Sort.by_property("_id"))
            res = self.read(lambda c, query=query: c.query.fetch_objects(  # type: ignore[misc]
                limit=page, include_vector=include_vector, return_properties=properties, **query))
            if not res.objects:
                return
            yield list(res.objects)
            if len(res.objects) < page:  # the last page: asking again would only find nothing
                return
            after = str(res.objects[-1].uuid)

    def page_after(self, after: str | None, limit: int = 50, where: MemoryFilter | None = None) -> "BrowsePage":
        """One page of memories in uuid order after the cursor `after` (None: the first
        page), and the cursor of the next page (None after the last)."""
        filters = where.to_weaviate() if where is not None else None
        if after and filters is not None:
            page = self._filtered_page_after(filters, where, after, limit)  # type: ignore[arg-type]
            if page is not None:
                return page
        # One request for the page and one memory more, which says whether a next page exists
        # (a page of the most Weaviate answers at once asks again for that one).
        objects = next(self._pages(filters, after, min(limit + 1, MAX_RESULTS)), [])
        memories = [StoredMemory.from_object(o) for o in objects[:limit]]
        more = len(objects) > limit or (len(memories) == limit and limit >= MAX_RESULTS
                                        and bool(next(self._pages(filters, memories[-1].uuid, 1), [])))
        return BrowsePage(memories, memories[-1].uuid if more else None)
    def _filtered_page_after(self, filters: Any, where: MemoryFilter, after: str, limit: int) -> BrowsePage | None:
        """A filtered page after a cursor, at a cost that follows the matches: the matches'
        uuids (no properties) in order, the page's memories by uuid. The filter "uuid after
        the cursor" would read every uuid of the store after it. None when more memories
        match than Weaviate lists at once (the caller pages by that filter then)."""
        if self.count(where) > MAX_RESULTS:
            return None
        res = self.read(lambda c: c.query.fetch_objects(filters=filters, sort=Sort.by_property("_id"),
                                                        limit=MAX_RESULTS, return_properties=[]))
        ids = [str(o.uuid) for o in res.objects]
        if len(ids) >= MAX_RESULTS:
            return None
        start = bisect.bisect_right(ids, after)
        chosen = ids[start:start + limit]
        found = {str(o.uuid): o for o in self.read(lambda c: c.query.fetch_objects(
            filters=Filter.by_id().contains_any(chosen), limit=len(chosen), return_properties=RETURN_PROPERTIES,
        )).objects} if chosen else {}
        memories = [StoredMemory.from_object(found[i]) for i in chosen if i in found]
        more = start + limit < len(ids) and bool(memories)
        return BrowsePage(memories, memories[-1].uuid if more else None)

    # --- indexing ------------------------------------------------------------------
    def index_queue(self) -> IndexQueue:
        """What the nodes API (verbose shard status) says is still waiting to be indexed."""
        live = self.live_collection()  # the nodes API knows physical collections only
        nodes = self.on_a_node(lambda: self.client.cluster.nodes(collection=live, output="verbose"))
        queued = shards = 0
        not_ready = []
        for node in nodes:
            for shard in node.shards or []:
                if shard.collection != live:
                    continue
                shards += 1
                queued += int(shard.vector_queue_length or 0)
                if shard.vector_indexing_status != "READY":
                    not_ready.append(f"{node.name}/{shard.name}: {shard.vector_indexing_status}")
        return IndexQueue(queued, shards, tuple(not_ready))

    def wait_for_indexing(self, timeout: float = 900.0, poll: float = 0.1) -> float:
        """Wait until every shard's index queue is empty and READY, so a search finds every
        object written so far; returns the seconds waited. With synchronous indexing the
        queue is always empty and this is one request. Raises StoreUnavailableError if the
        queue has not drained in `timeout` or the nodes API cannot answer (with async
        indexing off, an unanswering nodes API means nothing to wait for)."""
        started = time.monotonic()
        last = ""
        while True:
            try:
                queue = self.index_queue()
            except weaviate_errors() as e:
                if not self.settings.async_indexing:
                    return time.monotonic() - started
                queue, last = None, str(e)
            if queue is not None:
                if queue.drained:
                    return time.monotonic() - started
                last = f"{queue.queued:,} vectors still queued" + (f", {', '.join(queue.not_ready)}" if queue.not_ready else "")
            if time.monotonic() - started > timeout:
                raise StoreUnavailableError(
                    f"Weaviate has not finished indexing {self.collection_name} after {timeout:.0f}s ({last}); "
                    "the objects are stored: resume the import to wait again")
            time.sleep(poll)

    def server_info(self) -> dict[str, Any]:
        """What the dashboard shows: mode, server version, object count."""
        meta = self.on_a_node(lambda: self.client.get_meta())
        return {
            "mode": self.settings.weaviate_mode,
            "version": meta.get("version"),
            "collection": self.collection_name,
            "objects": self.count(),
        }


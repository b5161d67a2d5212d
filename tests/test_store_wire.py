"""memsys's write request (memsys/store/wire.py) stores exactly what the Weaviate
client's own insert_many stores for the same memories, vectors and times."""
from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
import weaviate.classes as wvc
from weaviate.exceptions import WeaviateConnectionError

from memsys import MemorySystem
from memsys.models import Memory
from memsys.store import wire


def _read_back(store, uuids):  # type: ignore[no-untyped-def]
    res = store.collection.query.fetch_objects(
        filters=wvc.query.Filter.by_id().contains_any(uuids), limit=len(uuids), include_vector=True)
    return {str(o.uuid): (dict(o.properties), np.asarray(o.vector["default"], dtype=np.float32)) for o in res.objects}


def test_a_memsys_write_reads_back_as_the_clients_insert_many(base_system: MemorySystem) -> None:
    ours = base_system.store.with_collection(f"Test_{uuid.uuid4().hex[:12]}")
    theirs = base_system.store.with_collection(f"Test_{uuid.uuid4().hex[:12]}")
    try:
        rng = np.random.default_rng(3)
        vectors = rng.standard_normal((4, 384)).astype(np.float32)
        created = [dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc), None,
                   dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))), None]
        memories = [
            Memory(content="Ünïcode text — with “quotes” and 東京", project="p", repo="r", agent="a", tags=("x", "y"),
                   source="document-import", source_file="docs/a.md", source_location="line 4", chunk_index=3,
                   document_hash="abc"),
            Memory(content="no tags at all", project="p", repo="r", agent="a"),
            Memory(content="a row with its id", project="p", repo="r", agent="a", record_id="row-7", tags=("one",)),
            Memory(content="vector as a list", project="q", repo="r", agent="b", chunk_index=0),
        ]
        # A list of vectors (as a restore reads them) and an array (as an import embeds them).
        as_lists = [v.tolist() for v in vectors]
        outcome = ours.write(memories[:2], vectors[:2], created_at=created[:2])
        outcome2 = ours.write(memories[2:], as_lists[2:], created_at=created[2:])
        assert not outcome.failed and not outcome2.failed
        now = dt.datetime.now(dt.timezone.utc)
        theirs.ensure_collection()
        theirs.collection.data.insert_many([
            wvc.data.DataObject(properties={**m.properties(), "content_words": m.content, "created_at": c or now},
                                uuid=m.uuid, vector=v.tolist())
            for m, v, c in zip(memories, vectors, created)])
        uuids = [m.uuid for m in memories]
        mine, client = _read_back(ours, uuids), _read_back(theirs, uuids)
        assert set(mine) == set(client) == set(uuids)
        for u in uuids:
            (p1, v1), (p2, v2) = mine[u], client[u]
            stamped_now = p1["created_at"] if created[uuids.index(u)] is None else None
            if stamped_now is not None:  # each writer stamps its own "now"
                assert abs((p1.pop("created_at") - p2.pop("created_at")).total_seconds()) < 60
            assert p1 == p2
            assert np.array_equal(v1, v2)
    finally:
        ours.delete_all()
        theirs.delete_all()


def test_an_object_weaviate_refuses_is_failed_with_its_reason(base_system: MemorySystem) -> None:
    store = base_system.store.with_collection(f"Test_{uuid.uuid4().hex[:12]}")
    try:
        good = Memory(content="fits", project="p", repo="r", agent="a")
        bad = Memory(content="other length", project="p", repo="r", agent="a")
        assert not store.write([good], np.ones((1, 384), dtype=np.float32)).failed
        outcome = store.write([good, bad], [np.ones(384, dtype=np.float32), np.ones(12, dtype=np.float32)])
        assert outcome.written == [good.uuid]
        assert list(outcome.failed) == [1] and "length" in outcome.failed[1].lower()
    finally:
        store.delete_all()


def test_a_write_on_a_channel_closed_under_it_is_a_connection_error_to_retry(base_system: MemorySystem) -> None:
    """Weaviate killed: one writer's retry replaces the client while another writer's
    request is still being retried on the old channel. Its 'closed channel' must come back as
    the connection error the write path retries, not stop the import (seen in CI)."""
    system = MemorySystem(base_system.settings)  # a client of its own, so closing its channel harms no one
    try:
        store = system.store
        request = wire.batch_request(store.collection_name, [Memory(content="late", project="p", repo="r", agent="a")],
                                     np.ones((1, 384), dtype=np.float32), [None], "ONE")
        collection = store.collection
        collection._connection._grpc_channel.close()
        with pytest.raises(WeaviateConnectionError, match="closed while a write was sent"):
            wire.send(collection, request)
    finally:
        system.close()

"""Memories as Weaviate's gRPC batch request, built directly: each vector goes over as its
float32 bytes (never a Python list of floats), and each memory's properties as the
protobuf message the server reads, without the client's per-value type dispatch. The
request is sent on the client's own gRPC connection (its channel, headers, timeout and
retries), so it is the same call `insert_many` makes, answered the same way.

This reaches into the Weaviate client (its proto modules and the collection's
connection), which requirements.txt pins; `tests/test_store_wire.py` checks that what it
writes reads back exactly as the client's own `insert_many` writes it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import numpy as np
from google.protobuf.struct_pb2 import Struct, Value
from weaviate.exceptions import WeaviateConnectionError
from weaviate.proto.v1 import base_pb2, batch_pb2

from memsys.models import Memory

_LEVELS = {
    "ONE": base_pb2.ConsistencyLevel.CONSISTENCY_LEVEL_ONE,
    "QUORUM": base_pb2.ConsistencyLevel.CONSISTENCY_LEVEL_QUORUM,
    "ALL": base_pb2.ConsistencyLevel.CONSISTENCY_LEVEL_ALL,
}
# The client's own retries for a batch request (`insert_many`'s).
_MAX_RETRIES = 2
# The text properties every memory has, besides content (and content_words, its copy).
_TEXT_FIELDS = ("project", "repo", "agent", "source", "source_file", "source_location", "document_hash", "record_id")


def stamp(when: dt.datetime) -> str:
    """A date property as the client sends it (a naive time counts as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.isoformat(sep="T", timespec="microseconds")


def vector_rows(vectors: np.ndarray | Sequence[Any]) -> list[bytes]:
    """Each vector as little-endian float32 bytes: one array conversion for the batch (a
    2-D array is only viewed), no list of floats."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        rows = vectors.astype("<f4", copy=False)
        return [row.tobytes() for row in rows]
    return [np.asarray(v, dtype="<f4").tobytes() for v in vectors]


def batch_object(collection: str, memory: Memory, vector: bytes, created_at: str) -> Any:
    """One memory as a BatchObject: every property `MemoryStore.write` stores."""
    fields = {
        "content": Value(string_value=memory.content),
        "content_words": Value(string_value=memory.content),
        "chunk_index": Value(number_value=memory.chunk_index),
        "content_hash": Value(string_value=memory.content_hash),
        "document_id": Value(string_value=memory.document_id),
        "created_at": Value(string_value=created_at),
    }
    for name in _TEXT_FIELDS:
        fields[name] = Value(string_value=getattr(memory, name))
    tags = list(memory.tags)
    properties = batch_pb2.BatchObject.Properties(
        non_ref_properties=Struct(fields=fields),
        text_array_properties=[base_pb2.TextArrayProperties(prop_name="tags", values=tags)] if tags else None,
        empty_list_props=None if tags else ["tags"],
    )
    return batch_pb2.BatchObject(collection=collection, uuid=memory.uuid, properties=properties, vector_bytes=vector)


def batch_request(collection: str, memories: Sequence[Memory], vectors: np.ndarray | Sequence[Any],
                  created_at: Sequence[str], level: str) -> Any:
    """The whole batch as one BatchObjectsRequest at the consistency `level`."""
    rows = vector_rows(vectors)
    objects = [batch_object(collection, m, rows[i], created_at[i]) for i, m in enumerate(memories)]
    return batch_pb2.BatchObjectsRequest(objects=objects, consistency_level=_LEVELS[level])


def send(collection: Any, request: Any) -> dict[int, str]:
    """Send a batch request on the connection of the client's `collection` handle; the
    per-object errors by index (Weaviate's words). A request that fails as a whole raises
    the client's own error (WeaviateBatchError, InsufficientPermissionsError)."""
    connection = collection._connection
    try:
        return dict(connection.grpc_batch_objects(request=request, timeout=connection.timeout_config.insert,
                                                  max_retries=_MAX_RETRIES))
    except ValueError as e:
        # Weaviate went away and another thread replaced the client meanwhile (closing this
        # one's channel under the client's own retries): a connection error like the others,
        # so the write is tried again, on the new client.
        if "closed channel" not in str(e):
            raise
        raise WeaviateConnectionError(f"the connection closed while a write was sent ({e})") from e

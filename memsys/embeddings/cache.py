"""The persistent embedding cache: diskcache (SQLite + files), thread-safe and process-safe.

Keys name the model: `v1:<model fingerprint>:<kind>:<sha256 of text>`, so a change of
provider, base URL, model or dimensions never returns another model's vector. Values are
compact: a 24-byte header (magic, dimensions, model fingerprint) then float32 data, so
every entry can be validated on its own.
"""
from __future__ import annotations

import hashlib
import json
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import diskcache
import numpy as np

MAGIC = b"MSV1"
HEADER = struct.Struct("<4sI16s")  # magic, dimensions, model fingerprint (16 ascii hex)
KEY_PREFIX = "v1:"
MODEL_PREFIX = "model:"
STATS_HITS = "stats:hits"
STATS_MISSES = "stats:misses"
# SQLite's limit on bound parameters is 32766 in modern builds; stay well below it.
_SQL_CHUNK = 900


class CorruptEntry(ValueError):
    """A cache value that cannot be trusted; `problem` names what is wrong with it."""

    def __init__(self, problem: str, detail: str) -> None:
        self.problem = problem
        super().__init__(detail)


def make_key(fingerprint: str, kind: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}{fingerprint}:{kind}:{digest}"


def key_fingerprint(key: str) -> str | None:
    parts = key.split(":")
    if len(parts) != 4 or parts[0] + ":" != KEY_PREFIX:
        return None
    return parts[1]


def encode_vector(vector: np.ndarray, fingerprint: str) -> bytes:
    v = np.asarray(vector, dtype="<f4")
    return HEADER.pack(MAGIC, v.shape[0], fingerprint.encode("ascii")) + v.tobytes()


def decode_vector(raw: Any, fingerprint: str | None = None, dimensions: int | None = None) -> np.ndarray:
    """Decode and validate a value; raise CorruptEntry naming the problem."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise CorruptEntry("wrong_type", f"value is a {type(raw).__name__}, not bytes")
    raw = bytes(raw)
    if len(raw) < HEADER.size:
        raise CorruptEntry("truncated", f"value has {len(raw)} bytes, shorter than its header")
    magic, dims, fp = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptEntry("bad_header", "value does not start with the memsys vector header")
    if len(raw) != HEADER.size + 4 * dims:
        raise CorruptEntry("truncated", f"value holds {(len(raw) - HEADER.size) / 4:g} floats, header says {dims}")
    if fingerprint is not None and fp.decode("ascii", "replace") != fingerprint:
        raise CorruptEntry("model_mismatch", "value was made by another model than its key names")
    if dimensions is not None and dims != dimensions:
        raise CorruptEntry("wrong_dimension", f"vector has {dims} dimensions, its model has {dimensions}")
    vector = np.frombuffer(raw, dtype="<f4", offset=HEADER.size)
    if not np.isfinite(vector).all():
        raise CorruptEntry("not_finite", "vector contains NaN or infinity")
    return vector


@dataclass(frozen=True)
class ModelInfo:
    fingerprint: str
    provider: str
    model: str
    base_url: str
    dimensions: int


class EmbeddingCache:
    """Vectors by (model, kind, text). Safe to share between threads and processes."""

    def __init__(
        self,
        directory: Path,
        size_limit_bytes: int = 64 * 2**30,
        eviction_policy: str = "none",
        min_file_size: int = 2**15,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.eviction_policy = eviction_policy
        self._cache = diskcache.Cache(
            str(self.directory),
            size_limit=size_limit_bytes,
            eviction_policy=eviction_policy,
            disk_min_file_size=min_file_size,
            cull_limit=0 if eviction_policy == "none" else 10,
        )
        self._models: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()

    @property
    def diskcache(self) -> diskcache.Cache:
        return self._cache

    @property
    def size_limit_bytes(self) -> int:
        return int(self._cache.size_limit)

    def close(self) -> None:
        self._cache.close()

    # --- models -------------------------------------------------------------------
    def register_model(self, info: ModelInfo) -> None:
        with self._lock:
            if self._models.get(info.fingerprint) == info:
                return
            self._models[info.fingerprint] = info
        self._cache.set(MODEL_PREFIX + info.fingerprint, json.dumps(info.__dict__).encode("utf-8"))

    def models(self) -> dict[str, ModelInfo]:
        found: dict[str, ModelInfo] = {}
        for key in self._cache.iterkeys():
            if isinstance(key, str) and key.startswith(MODEL_PREFIX):
                raw = self._cache.get(key)
                try:
                    found[key[len(MODEL_PREFIX):]] = ModelInfo(**json.loads(bytes(raw)))
                except (TypeError, ValueError):
                    continue
        return found

    # --- vectors ------------------------------------------------------------------
    def get_many(self, keys: Sequence[str], fingerprint: str, dimensions: int | None) -> dict[str, np.ndarray]:
        """The valid cached vectors among `keys`; corrupt entries count as misses."""
        found: dict[str, np.ndarray] = {}
        if self.eviction_policy not in ("none", "least-recently-stored"):
            # These policies update access statistics on every read: use diskcache's get.
            for key in keys:
                raw = self._cache.get(key)
                if raw is not None:
                    self._decode_into(found, key, raw, fingerprint, dimensions)
            return found
        for raw_rows in self._select(keys):
            for key, raw in raw_rows:
                self._decode_into(found, key, raw, fingerprint, dimensions)
        return found

    def _select(self, keys: Sequence[str]) -> Iterator[list[tuple[str, Any]]]:
        # One query per ~900 keys instead of one per key: diskcache stores small bytes
        # values inline (mode 1, raw) and larger ones in files (mode 2), read via its Disk.
        cache = self._cache
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[start:start + _SQL_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = cache._sql(  # noqa: SLF001 - bulk read of diskcache's own table
                f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN ({marks})"
                " AND (expire_time IS NULL OR expire_time > strftime('%s','now'))",
                chunk,
            ).fetchall()
            out = []
            for key, mode, filename, value in rows:
                if mode == diskcache.core.MODE_RAW:
                    out.append((key, value))
                else:
                    try:
                        out.append((key, cache.disk.fetch(mode, filename, value, True)))
                    except (OSError, ValueError):
                        continue  # a missing value file is a miss; the health check reports it
            yield out

    @staticmethod
    def _decode_into(found: dict[str, np.ndarray], key: str, raw: Any, fp: str, dims: int | None) -> None:
        try:
            found[key] = decode_vector(raw, fp, dims)
        except CorruptEntry:
            pass

    def set_many(self, items: Iterable[tuple[str, np.ndarray]], fingerprint: str) -> int:
        count = 0
        with self._cache.transact():
            for key, vector in items:
                self._cache.set(key, encode_vector(vector, fingerprint))
                count += 1
        return count

    def record_lookups(self, hits: int, misses: int) -> None:
        if hits:
            self._cache.incr(STATS_HITS, hits)
        if misses:
            self._cache.incr(STATS_MISSES, misses)

    def lifetime_stats(self) -> tuple[int, int]:
        return int(self._cache.get(STATS_HITS, 0)), int(self._cache.get(STATS_MISSES, 0))

    def count_vectors(self) -> int:
        row = self._cache._sql(  # noqa: SLF001
            "SELECT COUNT(*) FROM Cache WHERE raw = 1 AND key LIKE ?", (KEY_PREFIX + "%",)
        ).fetchone()
        return int(row[0])

    def count_by_model(self) -> dict[str, int]:
        rows = self._cache._sql(  # noqa: SLF001
            "SELECT substr(key, 4, 16), COUNT(*) FROM Cache WHERE raw = 1 AND key LIKE ? GROUP BY 1",
            (KEY_PREFIX + "%",),
        ).fetchall()
        return {fp: int(n) for fp, n in rows}

    def volume(self) -> int:
        return int(self._cache.volume())

    def clear(self) -> int:
        with self._lock:
            self._models.clear()
        return int(self._cache.clear(retry=True))

    def __len__(self) -> int:
        return len(self._cache)

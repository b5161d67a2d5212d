"""The persistent embedding cache: diskcache (SQLite + files), thread-safe and process-safe.

Keys name the model: `v1:<model fingerprint>:<kind>:<sha256 of text>`, so a change of
provider, model or dimensions never returns another model's vector. The endpoint is not
part of the key: every server of one model shares the entries, and moving a server keeps
them (entries made before that, keyed by base URL too, are moved over by `rekey_model`). Values are
compact: a 24-byte header (magic, dimensions, model fingerprint) then float32 data, so
every entry can be validated on its own.

Maintenance (the health check's repair, a rebuild) takes the cache's exclusive lock; every
other operation takes it shared, so a repair never runs in the middle of a write and an
import only waits for it, in this process or another.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import diskcache
import numpy as np

from memsys.errors import MemsysError

MAGIC = b"MSV1"
HEADER = struct.Struct("<4sI16s")  # magic, dimensions, model fingerprint (16 ascii hex)
KEY_PREFIX = "v1:"
MODEL_PREFIX = "model:"
STATS_HITS = "stats:hits"
STATS_MISSES = "stats:misses"
# SQLite's limit on bound parameters is 32766 in modern builds; stay well below it.
_SQL_CHUNK = 900
# A cache hit notes its entry's use at most this often (seconds).
_TOUCH_EVERY = 86400.0


class CacheDamagedError(MemsysError):
    """The cache's SQLite database is damaged; `python -m memsys cache check --fix` repairs it."""

    def __init__(self, directory: Path, detail: str) -> None:
        self.directory = directory
        super().__init__(
            f"the embedding cache at {directory} is damaged ({detail}); "
            "run `python -m memsys cache check --fix` to repair it"
        )


class CorruptEntry(ValueError):
    """A cache value that cannot be trusted; `problem` names what is wrong with it."""

    def __init__(self, problem: str, detail: str) -> None:
        self.problem = problem
        super().__init__(detail)


def make_key(fingerprint: str, kind: str, text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}{fingerprint}:{kind}:{digest}"


def vector_header(fingerprint: str, dimensions: int) -> bytes:
    return HEADER.pack(MAGIC, dimensions, fingerprint.encode("ascii"))


def encode_vector(vector: np.ndarray, fingerprint: str) -> bytes:
    v = np.asarray(vector, dtype="<f4")
    return vector_header(fingerprint, v.shape[0]) + v.tobytes()


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
    """Vectors by (model, kind, text). Safe to share between threads and processes.

    A cache whose database is damaged still opens: `open_error` says what is wrong, lookups
    and writes raise CacheDamagedError, and the health check can rebuild it.
    """

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
        # Passed to diskcache.Cache, again when a rebuild creates a fresh database.
        self.diskcache_settings: dict[str, Any] = {
            "size_limit": size_limit_bytes,
            "eviction_policy": eviction_policy,
            "disk_min_file_size": min_file_size,
            # "none" never evicts: a large import's vectors are never dropped silently.
            "cull_limit": 0 if eviction_policy == "none" else 10,
        }
        # Beside the directory, not in it: a rebuild replaces the directory, the locks stay.
        self._lock_path = self.directory.with_name(f".{self.directory.name}.lock")
        self._gate_path = self.directory.with_name(f".{self.directory.name}.gate")
        self._models: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()
        self._cache: diskcache.Cache | None = None
        self._inode: int | None = None
        self.open_error: str | None = None
        with _flock(self._gate_path, fcntl.LOCK_EX):
            pass
        with _flock(self._lock_path, fcntl.LOCK_SH):
            self._open()

    @property
    def database_path(self) -> Path:
        return self.directory / diskcache.core.DBNAME

    @property
    def diskcache(self) -> diskcache.Cache:
        """The diskcache underneath; raises CacheDamagedError when its database cannot be opened."""
        if self._cache is None:
            raise CacheDamagedError(self.directory, self.open_error or "cannot be opened")
        return self._cache

    @property
    def size_limit_bytes(self) -> int:
        return int(self.diskcache_settings["size_limit"])

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    # --- opening, locking, maintenance ------------------------------------------
    def _open(self) -> None:
        try:
            self._cache = diskcache.Cache(str(self.directory), **self.diskcache_settings)
            self.open_error = None
        except sqlite3.DatabaseError as e:
            if type(e) is not sqlite3.DatabaseError:  # locked, I/O, ...: not damage, report as is
                raise
            self._cache = None
            self.open_error = str(e)
        self._inode = _inode(self.database_path)

    def _current(self) -> diskcache.Cache:
        """The diskcache, reopened first if a rebuild (here or in another process) replaced it."""
        if _inode(self.database_path) != self._inode:
            with self._lock:
                if _inode(self.database_path) != self._inode:
                    self.close()
                    self._models.clear()  # the new database may lack their records
                    self._open()
        return self.diskcache

    @contextmanager
    def _shared(self) -> Iterator[diskcache.Cache]:
        # The gate makes new operations queue behind a waiting maintenance, so a steady stream
        # of lookups cannot starve a repair. Never nest: the gate would deadlock.
        with _flock(self._gate_path, fcntl.LOCK_EX):
            pass
        with _flock(self._lock_path, fcntl.LOCK_SH):
            try:
                yield self._current()
            except sqlite3.DatabaseError as e:
                if type(e) is not sqlite3.DatabaseError:
                    raise
                raise CacheDamagedError(self.directory, str(e)) from None

    @contextmanager
    def maintenance(self) -> Iterator[diskcache.Cache | None]:
        """Exclusive use of the cache across threads and processes; every other operation
        waits until it ends. Yields the diskcache, or None if its database cannot be opened.
        Inside, use only the yielded diskcache, never this object's other methods."""
        with _flock(self._gate_path, fcntl.LOCK_EX), _flock(self._lock_path, fcntl.LOCK_EX):
            try:
                db: diskcache.Cache | None = self._current()
            except CacheDamagedError:
                db = None
            yield db

    def replace_directory(self, rebuilt: Path) -> None:
        """Put a rebuilt cache directory in place of this one (inside `maintenance()` only).
        Other processes notice the new database on their next operation and reopen it."""
        self.close()
        self._cache = None
        retired = self.directory.with_name(f".{self.directory.name}.retired-{os.getpid()}")
        os.rename(self.directory, retired)
        os.rename(rebuilt, self.directory)
        shutil.rmtree(retired, ignore_errors=True)
        self.forget_models()
        with self._lock:
            self._open()

    # --- models -------------------------------------------------------------------
    def register_model(self, info: ModelInfo) -> None:
        with self._lock:
            if self._models.get(info.fingerprint) == info:
                return
            self._models[info.fingerprint] = info
        with self._shared() as db:
            db.set(MODEL_PREFIX + info.fingerprint, json.dumps(info.__dict__).encode("utf-8"))

    def forget_models(self) -> None:
        """Forget which models this process has recorded: the next write records its model
        again (after a repair removed or lost the record)."""
        with self._lock:
            self._models.clear()

    def models(self) -> dict[str, ModelInfo]:
        with self._shared() as db:
            return read_models(db._sql, self.directory)  # noqa: SLF001

    def rekey_model(self, old_fingerprint: str, new: ModelInfo) -> int:
        """Move every vector of `old_fingerprint` to `new.fingerprint` (same vectors, the key
        and header renamed) and drop the old model record; returns how many moved. Runs under
        the exclusive lock, so no lookup sees the cache half moved; safe to repeat after a
        crash (what moved is under the new key, the rest still under the old one)."""
        moved = 0
        lo, hi = _prefix_range(f"{KEY_PREFIX}{old_fingerprint}:")
        with self.maintenance() as db:
            if db is None:
                raise CacheDamagedError(self.directory, self.open_error or "cannot be opened")
            db.set(MODEL_PREFIX + new.fingerprint, json.dumps(new.__dict__).encode("utf-8"))
            while True:
                keys = [k for (k,) in db._sql(  # noqa: SLF001 - a key range read from the index
                    "SELECT key FROM Cache WHERE key >= ? AND key < ? AND raw = 1 LIMIT ?", (lo, hi, _SQL_CHUNK)
                ).fetchall()]
                if not keys:
                    break
                with db.transact():
                    for key in keys:
                        raw = db.get(key)
                        db.delete(key)
                        try:
                            vector = decode_vector(raw, old_fingerprint, new.dimensions)
                        except CorruptEntry:
                            continue  # untrustworthy: dropped, re-embedded on the next miss
                        _, _, kind, digest = key.split(":")
                        db.set(f"{KEY_PREFIX}{new.fingerprint}:{kind}:{digest}", encode_vector(vector, new.fingerprint))
                        moved += 1
            db.delete(MODEL_PREFIX + old_fingerprint)
        with self._lock:
            self._models.pop(old_fingerprint, None)
            self._models[new.fingerprint] = new
        return moved

    # --- vectors ------------------------------------------------------------------
    def get_many(self, keys: Sequence[str], fingerprint: str, dimensions: int | None) -> dict[str, np.ndarray]:
        """The valid cached vectors among `keys`; corrupt entries count as misses."""
        found: dict[str, np.ndarray] = {}
        with self._shared() as db:
            for key, raw in (pair for rows in self._fetch_values(db, keys) for pair in rows):
                try:
                    found[key] = decode_vector(raw, fingerprint, dimensions)
                except CorruptEntry:
                    continue
        return found

    def get_matrix(self, keys: Sequence[str], fingerprint: str, dimensions: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached vectors for `keys` as one float32 matrix in key order, and a mask of
        the rows found valid; corrupt entries count as misses (rows of zeros).

        Validates whole chunks at once (header bytes and finiteness as array operations)
        instead of decoding entry by entry: this is the re-import hot path."""
        out = np.zeros((len(keys), dimensions), dtype=np.float32)
        ok = np.zeros(len(keys), dtype=bool)
        record = HEADER.size + 4 * dimensions
        expected = np.frombuffer(vector_header(fingerprint, dimensions), dtype=np.uint8)
        index = {key: i for i, key in enumerate(keys)}
        with self._shared() as db:
            for rows in self._fetch_values(db, keys):
                sized = [(index[key], raw) for key, raw in rows if isinstance(raw, bytes) and len(raw) == record]
                if not sized:
                    continue
                where = np.fromiter((i for i, _ in sized), dtype=np.int64, count=len(sized))
                buf = b"".join(raw for _, raw in sized)
                headers = np.frombuffer(buf, dtype=np.uint8).reshape(len(sized), record)[:, : HEADER.size]
                floats = np.frombuffer(buf, dtype="<f4").reshape(len(sized), record // 4)[:, HEADER.size // 4:]
                valid = (headers == expected).all(axis=1) & np.isfinite(floats).all(axis=1)
                out[where[valid]] = floats[valid]
                ok[where[valid]] = True
        return out, ok

    def _fetch_values(self, db: diskcache.Cache, keys: Sequence[str]) -> Iterator[list[tuple[str, Any]]]:
        """(key, stored value) for the keys present, a list per chunk of keys; call with the
        shared lock held."""
        for start in range(0, len(keys), _SQL_CHUNK):
            chunk = list(keys[start:start + _SQL_CHUNK])
            if self.eviction_policy not in ("none", "least-recently-stored"):
                # These policies update access statistics on every read: use diskcache's get.
                yield [(key, raw) for key, raw in zip(chunk, map(db.get, chunk)) if raw is not None]
                continue
            # One query per ~900 keys instead of one per key: diskcache stores small bytes
            # values inline (mode 1, raw) and larger ones in files (mode 2), read via its Disk.
            marks = ",".join("?" * len(chunk))
            rows = db._sql(  # noqa: SLF001 - bulk read of diskcache's own table
                f"SELECT key, mode, filename, value, access_time FROM Cache WHERE raw = 1 AND key IN ({marks})"
                " AND (expire_time IS NULL OR expire_time > strftime('%s','now'))",
                chunk,
            ).fetchall()
            stale = time.time() - _TOUCH_EVERY
            self._touch(db, [r[0] for r in rows if (r[4] or 0) < stale])
            out = []
            for key, mode, filename, value, _used in rows:
                if mode == diskcache.core.MODE_RAW:
                    out.append((key, value))
                elif mode == diskcache.core.MODE_BINARY:
                    try:
                        out.append((key, db.disk.fetch(mode, filename, value, False)))
                    except OSError:
                        continue  # a missing value file is a miss; the health check reports it
            yield out

    @staticmethod
    def _touch(db: diskcache.Cache, keys: Sequence[str]) -> None:
        """Note that these entries were used today (their access time, which the bulk read
        does not update), so pruning by age keeps what imports still use. Called only with
        entries not touched for a day: a re-import the same day writes nothing."""
        if not keys:
            return
        now = time.time()
        marks = ",".join("?" * len(keys))
        try:
            db._sql(  # noqa: SLF001 - diskcache's own table
                f"UPDATE Cache SET access_time = ? WHERE access_time < ? AND key IN ({marks})",
                [now, now - _TOUCH_EVERY, *keys],
            )
        except sqlite3.OperationalError:
            pass  # busy: the entry is touched on its next use

    def prune_candidates(self, *, fingerprint: str | None = None,
                         unused_seconds: float | None = None) -> tuple[int, int]:
        """How many vectors (and bytes) `prune` with the same arguments would remove."""
        where, params = self._prune_filter(fingerprint, unused_seconds)
        with self._shared() as db:
            n, size = db._sql(  # noqa: SLF001
                f"SELECT COUNT(*), COALESCE(SUM(size + COALESCE(length(value), 0)), 0) FROM Cache WHERE {where}", params,
            ).fetchone()
        return int(n), int(size)

    def prune(self, *, fingerprint: str | None = None, unused_seconds: float | None = None) -> tuple[int, int]:
        """Remove the vectors of one model (`fingerprint`, with its registry record) and/or
        those not used for `unused_seconds`; returns how many went and their bytes."""
        where, params = self._prune_filter(fingerprint, unused_seconds)
        removed = freed = 0
        with self._shared() as db:
            while True:
                rows = db._sql(  # noqa: SLF001
                    f"SELECT key, size + COALESCE(length(value), 0) FROM Cache WHERE {where} LIMIT {_SQL_CHUNK}", params,
                ).fetchall()
                if not rows:
                    break
                with db.transact():
                    for key, size in rows:
                        if db.delete(key, retry=True):
                            removed += 1
                            freed += int(size)
            if fingerprint is not None:
                db.delete(MODEL_PREFIX + fingerprint, retry=True)
                self._models.pop(fingerprint, None)
        return removed, freed

    @staticmethod
    def _prune_filter(fingerprint: str | None, unused_seconds: float | None) -> tuple[str, list[Any]]:
        if fingerprint is None and unused_seconds is None:
            raise ValueError("name a model or an age to prune the cache by")
        low, high = _prefix_range(KEY_PREFIX + fingerprint + ":") if fingerprint else _prefix_range(KEY_PREFIX)
        where, params = "key >= ? AND key < ? AND raw = 1", [low, high]
        if unused_seconds is not None:
            where += " AND access_time < ?"
            params.append(time.time() - unused_seconds)
        return where, params

    def set_many(self, items: Iterable[tuple[str, np.ndarray]], fingerprint: str) -> int:
        count = 0
        with self._shared() as db, db.transact():
            for key, vector in items:
                db.set(key, encode_vector(vector, fingerprint))
                count += 1
        return count

    def record_lookups(self, hits: int, misses: int) -> None:
        if not (hits or misses):
            return
        with self._shared() as db:
            if hits:
                db.incr(STATS_HITS, hits)
            if misses:
                db.incr(STATS_MISSES, misses)

    def lifetime_stats(self) -> tuple[int, int]:
        with self._shared() as db:
            return int(db.get(STATS_HITS, 0)), int(db.get(STATS_MISSES, 0))

    def count_by_model(self) -> dict[str, int]:
        # A key range, not LIKE: SQLite answers it from the key index without reading values.
        with self._shared() as db:
            rows = db._sql(  # noqa: SLF001
                "SELECT substr(key, 4, 16), COUNT(*) FROM Cache WHERE key >= ? AND key < ? AND raw = 1 GROUP BY 1",
                _prefix_range(KEY_PREFIX),
            ).fetchall()
        return {fp: int(n) for fp, n in rows}

    def volume(self) -> int:
        with self._shared() as db:
            return int(db.volume())

    def clear(self) -> int:
        self.forget_models()
        with self._shared() as db:
            return int(db.clear(retry=True))

    def __len__(self) -> int:
        with self._shared() as db:
            return len(db)


def read_models(execute: Any, directory: Path) -> dict[str, ModelInfo]:
    """The model registry (`model:<fingerprint>` entries) through an SQL `execute` on the
    cache's database; entries that do not read as a model record are left out (the health
    check names them)."""
    found: dict[str, ModelInfo] = {}
    rows = execute(
        "SELECT key, mode, filename, value FROM Cache WHERE key >= ? AND key < ? AND raw = 1",
        _prefix_range(MODEL_PREFIX),
    ).fetchall()
    for key, mode, filename, value in rows:
        try:
            raw = (directory / filename).read_bytes() if mode == diskcache.core.MODE_BINARY else value
            info = ModelInfo(**json.loads(bytes(raw)))
        except (OSError, TypeError, ValueError):
            continue
        if info.fingerprint == key[len(MODEL_PREFIX):]:
            found[info.fingerprint] = info
    return found


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


@contextmanager
def _flock(path: Path, mode: int) -> Iterator[None]:
    # One open file per acquisition: flock locks belong to an open file, so two threads of
    # one process exclude each other exactly as two processes do.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)

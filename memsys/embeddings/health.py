"""The embedding cache's health check and repair: diskcache's own consistency check, then
every entry read and validated, in rowid order and in chunks so a cache of any size fits
in memory. `check_cache(fix=True)` removes what cannot be trusted, lets diskcache repair
its bookkeeping, and rebuilds the database when SQLite itself is damaged.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import diskcache

from memsys.embeddings.cache import (
    KEY_PREFIX,
    MODEL_PREFIX,
    STATS_HITS,
    STATS_MISSES,
    CorruptEntry,
    EmbeddingCache,
    ModelInfo,
    decode_vector,
    read_models,
)

Progress = Callable[[int, int], None]

# What each problem means, in an operator's words. Entry problems first, then the cache database's.
PROBLEMS: dict[str, str] = {
    "truncated": "the value is shorter or longer than its header says",
    "bad_header": "the value is not a memsys vector (foreign or random bytes)",
    "wrong_dimension": "the vector's size differs from its model's",
    "not_finite": "the vector contains NaN or infinity",
    "model_mismatch": "the vector was made by another model than its key names",
    "wrong_type": "the value is not stored as bytes",
    "missing_file": "the value's file is missing from disk",
    "unreadable_file": "the value's file cannot be read",
    "unreadable_row": "the entry sits in a damaged part of the database",
    "bad_key": "the key is not a well-formed memsys cache key",
    "unknown_key": "the entry was not written by memsys",
    "bad_model_record": "a model record that cannot be read",
    "bad_statistic": "a hit/miss counter that is not a whole number",
    "database_damaged": "SQLite reports damage in cache.db",
    "wrong_file_size": "a value file's size differs from the size diskcache recorded",
    "unknown_file": "a file in the cache directory that no entry refers to",
    "empty_directory": "an empty folder in the cache directory",
    "count_mismatch": "diskcache's entry count is off",
    "size_mismatch": "diskcache's size total is off",
    "other": "diskcache reported an inconsistency",
}

_CHUNK = 1000  # rows read per query
_KINDS = ("passage", "query")
_HEX = re.compile(r"[0-9a-f]+")
_SELECT = "SELECT rowid, key, raw, store_time, mode, filename, value FROM Cache"


@dataclass(frozen=True)
class BadEntry:
    """One cache entry that cannot be trusted. `key` is empty when a damaged database
    lost even the key."""

    key: str
    problem: str
    detail: str
    rowid: int | None = None


@dataclass(frozen=True)
class CacheDatabaseProblem:
    """A warning from diskcache's own check or from SQLite, about the cache database as a whole."""

    problem: str
    detail: str


@dataclass
class CacheHealthReport:
    """What a check found and, with `fix`, what it did about it."""

    directory: str
    fix: bool
    total: int = 0  # entries the database said it holds when the check began
    checked: int = 0  # entries read and judged
    healthy: int = 0
    bad_entries: list[BadEntry] = field(default_factory=list)
    database_problems: list[CacheDatabaseProblem] = field(default_factory=list)
    removed: list[BadEntry] = field(default_factory=list)  # entries the fix deleted
    repaired: list[CacheDatabaseProblem] = field(default_factory=list)  # what diskcache repaired
    rebuilt: bool = False  # the fix recreated the database from the entries that still read
    kept: int = 0  # entries carried into a rebuilt database
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.bad_entries and not self.database_problems

    @property
    def database_damaged(self) -> bool:
        return _is_damaged(self.database_problems)

    def problem_counts(self) -> dict[str, int]:
        """How many entries and database warnings of each kind, most frequent first."""
        counts: dict[str, int] = {}
        for item in [*self.bad_entries, *self.database_problems]:
            counts[item.problem] = counts.get(item.problem, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def removed_keys(self) -> set[str]:
        return {e.key for e in self.removed if e.key}


def _is_damaged(problems: list[CacheDatabaseProblem]) -> bool:
    return any(p.problem == "database_damaged" for p in problems)


def check_cache(
    cache: EmbeddingCache,
    known_dimensions: Mapping[str, int] | None = None,
    fix: bool = False,
    progress: Progress | None = None,
) -> CacheHealthReport:
    """Check `cache` and, with `fix`, repair it; afterwards a second check is clean.

    `known_dimensions` maps model fingerprints to their vector size (the router passes its
    current model's); other models' sizes come from the cache's model registry. Safe while
    imports write: diskcache's check and every repair run under the cache's exclusive lock,
    the entry scan reads without it and re-reads an entry before calling it bad.
    """
    started = time.monotonic()
    report = CacheHealthReport(directory=str(cache.directory), fix=fix)
    with cache.maintenance() as db:
        # Exclusive: a value file written just before its row is committed must not be
        # taken for a stray file.
        report.database_problems = _diskcache_check(db, cache, fix=False)
    with _Database(cache) as execute:
        dims = _dimensions(execute, cache.directory, known_dimensions or {})
        report.total = _count(execute)
        for row in _rows(execute, report.total, progress, damaged=_is_damaged(report.database_problems)):
            bad = _judge(row, execute, cache.directory, dims)
            report.checked += 1
            if bad is None:
                report.healthy += 1
            else:
                report.bad_entries.append(bad)
    if not report.database_damaged and any(e.problem == "unreadable_row" for e in report.bad_entries):
        report.database_problems.append(CacheDatabaseProblem("database_damaged", "rows of cache.db cannot be read"))
    if fix and not report.ok:
        if report.database_damaged:
            _rebuild(cache, dims, report)
        else:
            _remove(cache, dims, report)
            with cache.maintenance() as db:
                report.repaired = _diskcache_check(db, cache, fix=True)
                # diskcache removes empty folders top-down, leaving parents it emptied.
                _remove_empty_folders(cache.directory)
        if any(e.key.startswith(MODEL_PREFIX) for e in report.removed) or report.rebuilt:
            cache.forget_models()
    report.seconds = time.monotonic() - started
    return report


# --- diskcache's own check ---------------------------------------------------------

_WARNINGS = (
    ("wrong file size", "wrong_file_size"),
    ("file not found", "missing_file"),
    ("unknown file", "unknown_file"),
    ("empty directory", "empty_directory"),
    ("Settings.count", "count_mismatch"),
    ("Settings.size", "size_mismatch"),
)


def _diskcache_check(db: diskcache.Cache | None, cache: EmbeddingCache, fix: bool) -> list[CacheDatabaseProblem]:
    """diskcache's `check(fix)` as CacheDatabaseProblems; SQLite damage reported, never raised."""
    if db is None:
        return [CacheDatabaseProblem("database_damaged", f"cache.db cannot be opened: {cache.open_error}")]
    try:
        warns = db.check(fix=fix, retry=True)
    except sqlite3.DatabaseError as e:
        return [CacheDatabaseProblem("database_damaged", _integrity_detail(db, e))]
    problems = []
    for w in warns:
        message = str(w.message)
        kind = next((k for prefix, k in _WARNINGS if message.startswith(prefix)), None)
        if kind is None:
            # PRAGMA integrity_check's own lines ("*** in database main ***", "Page 5: ...").
            kind = "database_damaged" if not message.startswith("Settings") else "other"
            message = _first_lines(message)
        problems.append(CacheDatabaseProblem(kind, message.replace(str(cache.directory) + "/", "")))
    return problems


def _integrity_detail(db: diskcache.Cache, error: Exception) -> str:
    try:
        lines = [r[0] for r in db._sql("PRAGMA integrity_check(10)").fetchall()]  # noqa: SLF001
    except sqlite3.DatabaseError:
        lines = []
    return _first_lines("\n".join([str(error), *lines]))


def _first_lines(text: str, n: int = 6) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("***")]
    more = f" (+{len(lines) - n} more lines)" if len(lines) > n else ""
    return "; ".join(lines[:n]) + more


# --- reading every entry -------------------------------------------------------------

class _Database:
    """An SQL `execute` on the cache's database: diskcache's own connection when it opens,
    else a plain SQLite connection that reads what it can of a damaged file."""

    def __init__(self, cache: EmbeddingCache) -> None:
        self.cache = cache
        self.connection: sqlite3.Connection | None = None

    def __enter__(self) -> Callable[..., sqlite3.Cursor]:
        if self.cache.open_error is None:
            return self.cache.diskcache._sql  # noqa: SLF001
        self.connection = sqlite3.connect(self.cache.database_path, isolation_level=None)
        return self.connection.execute

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.close()


def _count(execute: Callable[..., sqlite3.Cursor]) -> int:
    for query in ("SELECT COUNT(*) FROM Cache", "SELECT MAX(rowid) FROM Cache"):
        try:
            return int(execute(query).fetchone()[0] or 0)
        except sqlite3.DatabaseError:
            continue
    return 0


def _dimensions(execute: Callable[..., sqlite3.Cursor], directory: Path, known: Mapping[str, int]) -> dict[str, int]:
    try:
        registry = read_models(execute, directory)
    except sqlite3.DatabaseError:
        registry = {}
    dims = {fp: info.dimensions for fp, info in registry.items()}
    dims.update(known)
    return dims


@dataclass(frozen=True)
class _Lost:
    """A row a damaged database no longer returns; its key comes from the key index."""

    rowid: int | None
    key: str


def _rows(
    execute: Callable[..., sqlite3.Cursor], total: int, progress: Progress | None, damaged: bool
) -> Iterator[tuple[Any, ...] | _Lost]:
    """Every row in rowid order, a chunk per query. Around a damaged page rows are read one
    rowid at a time; in a damaged database the key index (which holds every row's key and
    rowid) then names the rows the table no longer returns."""
    last, count = 0, 0
    seen = bytearray()
    failed: list[int] = []
    top = _top_rowid(execute)
    while True:
        try:
            rows = execute(f"{_SELECT} WHERE rowid > ? ORDER BY rowid LIMIT ?", (last, _CHUNK)).fetchall()
        except sqlite3.DatabaseError:
            rows = None
        if rows is None:
            if top is None or last >= top:
                break
            stop = min(last + _CHUNK, top)
            rows = []
            for rowid in range(last + 1, stop + 1):
                try:
                    row = execute(f"{_SELECT} WHERE rowid = ?", (rowid,)).fetchone()
                except sqlite3.DatabaseError:
                    failed.append(rowid)
                    continue
                if row is not None:
                    rows.append(row)
            last = stop
        elif not rows or rows[-1][0] <= last:
            break
        else:
            last = rows[-1][0]
        for row in rows:
            if damaged:
                _mark(seen, row[0])
            yield row
        count += len(rows)
        if progress is not None:
            progress(count, max(total, count))
    if damaged:
        yield from _missing_from_table(execute, seen, failed)
    else:
        # SQLite's own check passed, yet rows failed to read: report them all the same.
        yield from (_Lost(rowid, "") for rowid in failed)


def _mark(seen: bytearray, rowid: int) -> None:
    if rowid >= len(seen):
        seen.extend(bytes(rowid + 1 - len(seen) + 4096))
    seen[rowid] = 1


def _missing_from_table(execute: Callable[..., sqlite3.Cursor], seen: bytearray, failed: list[int]) -> Iterator[_Lost]:
    indexed: set[int] = set()
    index_complete = True
    try:
        for rowid, key in execute("SELECT rowid, key FROM Cache INDEXED BY Cache_key_raw"):
            if rowid >= len(seen) or not seen[rowid]:
                indexed.add(rowid)
                yield _Lost(rowid, key if isinstance(key, str) else repr(key)[:80])
    except sqlite3.DatabaseError:
        index_complete = False
    if not index_complete:
        # Rows neither the table nor the index returns: their keys are gone with the damage.
        for rowid in failed:
            if rowid not in indexed:
                yield _Lost(rowid, "")


def _top_rowid(execute: Callable[..., sqlite3.Cursor]) -> int | None:
    """The highest rowid, from the table or else from the key index (which holds rowids too)."""
    for query in ("SELECT MAX(rowid) FROM Cache", "SELECT MAX(rowid) FROM Cache INDEXED BY Cache_key_raw"):
        try:
            return int(execute(query).fetchone()[0] or 0)
        except sqlite3.DatabaseError:
            continue
    return None


def _judge(
    row: tuple[Any, ...] | _Lost,
    execute: Callable[..., sqlite3.Cursor],
    directory: Path,
    dims: Mapping[str, int],
) -> BadEntry | None:
    """None for a healthy entry, else what is wrong with it. A suspect row is read again
    first: a concurrent write may have replaced it (and removed its old value file)."""
    if isinstance(row, _Lost):
        return BadEntry(row.key, "unreadable_row", f"row {row.rowid} cannot be read from the damaged database", row.rowid)
    bad = _problem(row, directory, dims)
    if bad is None:
        return None
    try:
        again = execute(f"{_SELECT} WHERE rowid = ?", (row[0],)).fetchone()
    except sqlite3.DatabaseError:
        return bad
    if again is None:
        return None  # deleted meanwhile
    if again[3] != row[3] or again[5] != row[5]:
        return _problem(again, directory, dims)
    return bad


def _problem(row: tuple[Any, ...], directory: Path, dims: Mapping[str, int]) -> BadEntry | None:
    rowid, key, raw, _stored, mode, filename, value = row
    if not raw or not isinstance(key, str):
        return BadEntry(repr(key)[:80], "unknown_key", "the key is not a string", rowid)

    def bad(problem: str, detail: str) -> BadEntry:
        return BadEntry(key, problem, detail, rowid)

    if mode == diskcache.core.MODE_BINARY:
        try:
            value = (directory / filename).read_bytes()
        except FileNotFoundError:
            return bad("missing_file", f"value file {filename} is missing")
        except OSError as e:
            return bad("unreadable_file", f"value file {filename}: {e.strerror}")
    elif mode != diskcache.core.MODE_RAW:
        # Text or pickle: memsys never writes them, and unpickling untrusted bytes is unsafe.
        return bad("wrong_type", f"the value is stored in diskcache mode {mode}, not as bytes")

    if key.startswith(KEY_PREFIX):
        parts = key.split(":")
        if len(parts) != 4 or not _is_hex(parts[1], 16) or parts[2] not in _KINDS or not _is_hex(parts[3], 64):
            return bad("bad_key", "the key is not v1:<16 hex>:<passage|query>:<64 hex>")
        try:
            decode_vector(value, parts[1], dims.get(parts[1]))
        except CorruptEntry as e:
            return bad(e.problem, str(e))
        return None
    if key.startswith(MODEL_PREFIX):
        try:
            info = ModelInfo(**json.loads(bytes(value)))
        except (TypeError, ValueError) as e:
            return bad("bad_model_record", f"the model record does not read: {e}")
        if info.fingerprint != key[len(MODEL_PREFIX):]:
            return bad("bad_model_record", "the model record names another fingerprint than its key")
        return None
    if key in (STATS_HITS, STATS_MISSES):
        if type(value) is not int or value < 0:
            return bad("bad_statistic", f"the counter holds {type(value).__name__}, not a whole number")
        return None
    return bad("unknown_key", "memsys writes no entry with this key")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.fullmatch(text) is not None


# --- repair --------------------------------------------------------------------------

def _remove(cache: EmbeddingCache, dims: Mapping[str, int], report: CacheHealthReport) -> None:
    """Delete the bad entries, each only if it is still bad: an import may have rewritten
    it since the scan."""
    with cache.maintenance() as db:
        assert db is not None  # a database that does not open is rebuilt, not repaired
        sql = db._sql  # noqa: SLF001
        files: list[str] = []
        with db.transact(retry=True):
            for entry in report.bad_entries:
                current = sql(f"{_SELECT} WHERE rowid = ?", (entry.rowid,)).fetchone()
                if current is None or (isinstance(current[1], str) and current[1] != entry.key):
                    continue
                if _problem(current, cache.directory, dims) is None:
                    continue
                sql("DELETE FROM Cache WHERE rowid = ?", (entry.rowid,))
                if current[5]:
                    files.append(current[5])
                report.removed.append(entry)
        # After the commit, as diskcache does: a rolled-back delete must not lose its file.
        for filename in files:
            db.disk.remove(filename)


def _rebuild(cache: EmbeddingCache, dims: Mapping[str, int], report: CacheHealthReport) -> None:
    """Recreate the database from every entry that still reads and validates; everything
    else is reported as removed. Imports wait meanwhile and continue on the new database."""
    rebuilt = cache.directory.with_name(f".{cache.directory.name}.rebuild")
    shutil.rmtree(rebuilt, ignore_errors=True)
    with cache.maintenance(), _Database(cache) as execute:
        fresh = diskcache.Cache(str(rebuilt), **cache.diskcache_settings)
        try:
            batch: list[tuple[str, Any]] = []
            for row in _rows(execute, report.total, None, damaged=True):
                bad = _judge(row, execute, cache.directory, dims)
                if bad is not None:
                    report.removed.append(bad)
                    continue
                assert not isinstance(row, _Lost)
                key, mode, filename, value = row[1], row[4], row[5], row[6]
                if mode == diskcache.core.MODE_BINARY:
                    value = (cache.directory / filename).read_bytes()
                batch.append((key, value))
                if len(batch) >= _CHUNK:
                    _copy(fresh, batch)
                    report.kept += len(batch)
                    batch = []
            _copy(fresh, batch)
            report.kept += len(batch)
        finally:
            fresh.close()
        cache.replace_directory(rebuilt)
    report.rebuilt = True


def _remove_empty_folders(root: Path) -> None:
    for folder, _, _ in os.walk(root, topdown=False):
        if Path(folder) != root:
            with contextlib.suppress(OSError):  # rmdir refuses a folder that is not empty
                os.rmdir(folder)


def _copy(fresh: diskcache.Cache, batch: list[tuple[str, Any]]) -> None:
    with fresh.transact():
        for key, value in batch:
            fresh.set(key, value)

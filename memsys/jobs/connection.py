"""The SQLite file under the job database (and the audit trail kept in it): how it is
opened (WAL, waiting for another process's write), how a write is one transaction, and
how a failure becomes a `JobStoreError` in the user's words. A write that fails never
leaves a lock held, and after a read-only, I/O or cannot-open failure the connection is
opened afresh on the next call, so the same process carries on once the cause is gone.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from memsys.errors import JobStoreError


class SqliteFile:
    """One SQLite file, thread-safe and process-safe. Writes go through one connection,
    reads through another, so a page reading progress never waits behind a write that
    waits for another process's lock. The file is opened on first use, and opened again
    after a read-only or I/O failure, so a data directory that was read-only, missing or
    full works as soon as it is fixed. A write waits `timeout` seconds for another
    process's write, then raises JobStoreError.

    `prepare` brings the file's schema up to date when it is opened (memsys/jobs/migrations.py)
    and returns the migrations it ran; `applied` keeps them."""

    dialect = "sqlite"

    def __init__(self, path: Path, timeout: float, prepare: Callable[[sqlite3.Connection], Sequence[Any]]) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._prepare = prepare
        self.applied: list[Any] = []
        self._lock = threading.RLock()  # the writing connection and its transaction
        self._read_lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._schema_ready = False  # once true, reading never waits for the writing connection

    def close(self) -> None:
        with self._lock, self._read_lock:
            for db in (self._db, self._reader):
                if db is not None:
                    db.close()
            self._db = self._reader = None

    def transaction(self) -> "_Transaction":
        """`with file.transaction() as db:` runs its statements as one transaction."""
        return _Transaction(self)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            if self._reader is None:
                if not self._schema_ready:
                    with self._lock:
                        self._writer()  # the schema exists before anything reads it
                with self._translated(reading=True):
                    self._reader = sqlite3.connect(str(self.path), timeout=self.timeout, check_same_thread=False,
                                                   isolation_level=None)
            with self._translated(reading=True):
                cur = self._reader.execute(sql, params)
                cur.row_factory = sqlite3.Row
                return cur.fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def _open(self) -> sqlite3.Connection:
        db = open_database(self.path, self.timeout)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            self.applied = list(self._prepare(db))
        except sqlite3.Error:
            db.close()
            raise
        db.row_factory = sqlite3.Row  # rows read inside a transaction by name too, as outside
        return db

    def _writer(self) -> sqlite3.Connection:
        """The writing connection, opened if needed (call with `_lock` held)."""
        if self._db is None:
            with self._translated():
                self._db = self._open()
            self._schema_ready = True
        return self._db

    @contextmanager
    def _translated(self, reading: bool = False) -> Iterator[None]:
        """sqlite3 and OS errors become JobStoreError with a plain reason. After a failure
        that may have spoiled the connection (read-only, I/O, cannot open) it is closed, so
        the next call opens the database afresh."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise self._failure(e, reading) from e

    def _failure(self, e: BaseException, reading: bool) -> JobStoreError:
        error = explain_db_error(e, self.path, self.timeout)
        if error.kind in ("read_only", "cannot_open", "io"):
            self._drop(reading)
        return error

    def _drop(self, reading: bool) -> None:
        db = self._reader if reading else self._db
        if reading:
            self._reader = None
        else:
            self._db = None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass  # closing a connection that already failed; the next call opens a new one


def open_database(path: Path, timeout: float) -> sqlite3.Connection:
    """A writing connection to the job database's file: its folder made, WAL, waiting up
    to `timeout` for another writer. sqlite3 and OS errors pass through, nothing left open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        db.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error:
        db.close()
        raise
    return db


def explain_db_error(e: BaseException, path: Path, timeout: float) -> JobStoreError:
    """A database failure in the user's words, with what to do about it."""
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e).lower()
    folder = path.parent
    code = getattr(e, "errno", None)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return JobStoreError("locked", f"the job database {path} is locked by another process (waited {timeout:g} s "
                                       "for it); nothing was changed: try again when that process has finished writing")
    if name == "SQLITE_FULL" or code == errno.ENOSPC or "disk is full" in text or _disk_full(folder):
        return JobStoreError("disk_full", f"the disk holding the data directory {folder} is full; nothing was changed: "
                                          "free some space there and memsys carries on (no restart needed)")
    if name.startswith("SQLITE_READONLY") or code == errno.EROFS or not _writable(folder):
        return JobStoreError("read_only", f"the data directory {folder} is read-only; nothing was changed: make it "
                                          "writable and memsys carries on (no restart needed)")
    if name.startswith("SQLITE_CANTOPEN") or isinstance(e, OSError):
        return JobStoreError("cannot_open", f"the job database {path} cannot be opened ({e}): check that the data "
                                            "directory exists and that memsys may write there")
    return JobStoreError("io", f"the job database {path} could not be read or written ({e}); nothing was changed: "
                               "try again, and check the disk if it keeps happening")


def _writable(folder: Path) -> bool:
    """Whether this process may write in `folder` (False on a read-only mount, even for root)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return os.access(probe, os.W_OK)


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free == 0
    except OSError:
        return False


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT on the writing connection, holding the file's lock.
    Whatever fails (BEGIN, a statement, COMMIT), the transaction is rolled back and the
    lock released before the error goes on as a JobStoreError."""

    def __init__(self, file: SqliteFile) -> None:
        self._file = file

    def __enter__(self) -> sqlite3.Connection:
        file = self._file
        file._lock.acquire()
        try:
            db = file._writer()
            with file._translated():
                db.execute("BEGIN IMMEDIATE")
        except BaseException:
            file._lock.release()
            raise
        return db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        file = self._file
        try:
            if exc_type is None:
                try:
                    with file._translated():
                        file._writer().execute("COMMIT")
                except JobStoreError:
                    self._rollback()
                    raise
                return
            self._rollback()
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise file._failure(exc, reading=False) from exc
        finally:
            file._lock.release()

    def _rollback(self) -> None:
        db = self._file._db
        if db is None or not db.in_transaction:
            return  # SQLite rolled it back itself, or the connection was dropped (which rolls back)
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            self._file._drop(reading=False)  # closing the connection rolls the transaction back

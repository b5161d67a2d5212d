"""memsys's own log: one JSON object per line (time, level, component, job id, batch,
event, message and the event's fields), written to a size-bounded rotating file in the
data directory and to stderr, and read back, filtered, for the Logs page and `memsys logs`.

`configure_logging` sets it up once per process (the dashboard, the CLI, a script); every
record passes `SecretScrubber` on its way to any handler, so no secret reaches a log line
whatever a message or an exception says. The job id and batch come from `job_context`
(context variables, set by the pipeline in each thread that works on a job) or from `extra`.
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import getpass
import json
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from memsys.config import LOG_LEVELS as LEVELS, Settings
from memsys.errors import scrub

ROOT = "memsys"
LOG_FILE = "memsys.log"
# The fields every line has, in this order; an event's own fields follow them.
CORE_FIELDS = ("time", "level", "component", "process", "job_id", "batch", "event", "message")

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("memsys_job_id", default=None)
_batch: contextvars.ContextVar[int | None] = contextvars.ContextVar("memsys_batch", default=None)


def get_logger(component: str) -> logging.Logger:
    """The logger of one part of memsys ("pipeline", "cache", "dashboard", ...); its name
    is the `component` of its lines."""
    return logging.getLogger(f"{ROOT}.{component}")


def event(name: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a log call: the event's name (e.g. "import.planned") and its fields
    (counts, durations, item, reason), kept as JSON fields of the line."""
    return {"event": name, "fields": fields}


@contextlib.contextmanager
def job_context(job_id: str | None, batch: int | None = None) -> Iterator[None]:
    """Lines logged inside carry this job id (and batch). Context variables do not cross
    into new threads, so each worker thread of a job enters its own context."""
    job_token = _job_id.set(job_id)
    batch_token = _batch.set(batch)
    try:
        yield
    finally:
        _batch.reset(batch_token)
        _job_id.reset(job_token)


# --- secrets ------------------------------------------------------------------------------

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secrets(values: Iterable[str]) -> None:
    """Scrub these from every log line from now on (keys, URL passwords)."""
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


# The password in a URL (scheme://user:password@host), whether or not it was configured.
_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@")


def scrub_text(text: str) -> str:
    """`errors.scrub` with every registered secret, and URL passwords masked."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leftovers
    return _URL_PASSWORD.sub(r"\1:***@", scrub(text, known))


def scrub_value(value: Any) -> Any:
    """`scrub_text` through strings, mappings and sequences (an event's fields, audit details)."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, Mapping):
        return {str(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [scrub_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return scrub_text(str(value))


class SecretScrubber(logging.Filter):
    """Rewrites a record before any handler formats it: the message (with its arguments
    applied), the event's fields and the exception text, all scrubbed; the job id and
    batch stamped from the context when the call did not give them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "_memsys_scrubbed", False):
            record.msg = scrub_text(record.getMessage())
            record.args = None
            record.fields = scrub_value(getattr(record, "fields", None) or {})
            if record.exc_info:
                record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = scrub_text(record.exc_text)
            if record.stack_info:
                record.stack_info = scrub_text(record.stack_info)
            if getattr(record, "job_id", None) is None:
                record.job_id = _job_id.get()
            if getattr(record, "batch", None) is None:
                record.batch = _batch.get()
            record._memsys_scrubbed = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-ASCII text kept as is (UTF-8 file)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "component": record.name.removeprefix(ROOT + ".") if record.name != ROOT else ROOT,
            "process": f"{_program}:{record.process}",
            "job_id": getattr(record, "job_id", None),
            "batch": getattr(record, "batch", None),
            "event": getattr(record, "event", None) or "",
            "message": record.msg if isinstance(record.msg, str) else str(record.msg),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            if key not in line:
                line[key] = value
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class SharedRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler several processes (the dashboard and CLI commands on one data
    directory) can share: a lock file serialises writes and rotation, and the file is
    opened for each line and closed after it, so every process writes to the current file
    (whoever rotated it), the set of files stays within `backupCount + 1` files of
    `maxBytes`, and between lines no file of the data directory is held open (it can be
    remounted read-only, unmounted or moved). A data directory that cannot be written
    (read-only, full) loses the lines meanwhile, said once on stderr, never an error to
    the caller: logging must not stop the work it describes."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        super().__init__(str(path), maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
        self._lock_path = str(path) + ".lock"
        self._failing = ""  # the error that stops writing now, said once

    def emit(self, record: logging.LogRecord) -> None:
        try:
            Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    super().emit(record)  # opens the file (delay=True), rotating first if due
                finally:
                    self.close_stream()
                    fcntl.flock(lock, fcntl.LOCK_UN)
            self._failing = ""
        except OSError as e:
            self.close_stream()
            said = f"{type(e).__name__}: {e.strerror or e}"
            if said != self._failing:
                self._failing = said
                print(f"memsys: cannot write the log {self.baseFilename} ({said}); its lines are lost until it can",
                      file=sys.stderr)

    def handleError(self, record: logging.LogRecord) -> None:
        # RotatingFileHandler.emit reports its own OSError here: raise it to emit() above.
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            raise error
        super().handleError(record)

    def close_stream(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass  # a failed flush on a full disk: the line is lost, the handle goes anyway
            self.stream = None  # type: ignore[assignment]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (a test's capture, Streamlit's console)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current sys.stderr


# --- configuration, once per process --------------------------------------------------------

_program = "python"
_configure_lock = threading.Lock()
_file_handler: SharedRotatingFileHandler | None = None
_stderr_handler: logging.Handler | None = None


def set_program(name: str) -> None:
    """Which program this process is ("dashboard", "cli"); shown in every line's `process`
    and in the default actor of audit records."""
    global _program
    _program = name


def program() -> str:
    return _program


def default_actor() -> str:
    """Who acts when no signed-in user is known: the dashboard (anyone who reached it),
    or the OS user running the CLI or a script."""
    if _program == "dashboard":
        return "dashboard"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return f"{user} (cli)" if _program == "cli" else user


def log_path(settings: Settings) -> Path:
    return settings.log_dir / LOG_FILE


def configure_logging(settings: Settings) -> None:
    """Install memsys's handlers once per process, register the settings' secrets and
    point the file handler at this data directory. Safe to call again (every Engine does):
    a later call with another data directory moves the file there (tests, scripts)."""
    global _file_handler, _stderr_handler
    register_secrets(settings.secrets)
    with _configure_lock:
        root = logging.getLogger(ROOT)
        stderr_level = logging.getLevelName(settings.log_level)
        file_level = min(logging.INFO, stderr_level)
        path = log_path(settings)
        if _file_handler is None or Path(_file_handler.baseFilename) != path.resolve():
            handler = SharedRotatingFileHandler(path.resolve(), settings.log_max_bytes, settings.log_backups)
            handler.addFilter(SecretScrubber())
            handler.setFormatter(JsonFormatter())
            if _file_handler is not None:
                root.removeHandler(_file_handler)
                _file_handler.close()
            root.addHandler(handler)
            _file_handler = handler
        _file_handler.maxBytes = settings.log_max_bytes
        _file_handler.backupCount = settings.log_backups
        _file_handler.setLevel(file_level)
        if _stderr_handler is None:
            _stderr_handler = _StderrHandler()
            _stderr_handler.addFilter(SecretScrubber())
            _stderr_handler.setFormatter(JsonFormatter())
            root.addHandler(_stderr_handler)
        _stderr_handler.setLevel(stderr_level)
        root.setLevel(min(file_level, stderr_level))


# --- reading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One line of the log, parsed."""

    time: dt.datetime
    level: str
    component: str
    process: str
    job_id: str | None
    batch: int | None
    event: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
    raw: str = ""

    @classmethod
    def parse(cls, raw: str) -> "LogLine | None":
        """None for a line that is not one of ours (torn by a crash mid-write)."""
        try:
            data = json.loads(raw)
            when = dt.datetime.fromisoformat(data["time"])
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(data, dict):
            return None
        extra = {k: v for k, v in data.items() if k not in CORE_FIELDS}
        batch = data.get("batch")
        return cls(
            time=when,
            level=str(data.get("level") or "INFO"),
            component=str(data.get("component") or ""),
            process=str(data.get("process") or ""),
            job_id=data.get("job_id") or None,
            batch=batch if isinstance(batch, int) else None,
            event=str(data.get("event") or ""),
            message=str(data.get("message") or ""),
            fields=extra,
            raw=raw,
        )


@dataclass(frozen=True)
class LogQuery:
    """Which lines: at least `level`, one of `components` (all when empty), of `job_id`,
    between `since` and `until`, containing `text`; the newest `limit` of them."""

    level: str = "DEBUG"
    components: tuple[str, ...] = ()
    job_id: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str = ""
    limit: int = 1000

    def __post_init__(self) -> None:
        if self.level.upper() not in LEVELS:
            raise ValueError(f"log level {self.level!r} is not one of {', '.join(LEVELS)}")
        if self.limit < 1:
            raise ValueError(f"limit must be at least 1, got {self.limit}")

    def matches(self, line: LogLine) -> bool:
        if _level_no(line.level) < _level_no(self.level):
            return False
        if self.components and line.component not in self.components:
            return False
        if self.job_id and line.job_id != self.job_id:
            return False
        if self.since and line.time < _aware(self.since):
            return False
        if self.until and line.time > _aware(self.until):
            return False
        return not self.text or self.text.lower() in line.raw.lower()

    def prefilter(self, raw: str) -> bool:
        """A cheap test on the raw text before parsing (most lines of another job fail it)."""
        return not self.job_id or self.job_id in raw


def _level_no(level: str) -> int:
    value = logging.getLevelName(level.upper())
    return value if isinstance(value, int) else logging.INFO


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.astimezone()


def log_files(folder: Path) -> list[Path]:
    """The log's files, oldest first: memsys.log.N ... memsys.log.1, memsys.log."""
    rotated = []
    for p in folder.glob(LOG_FILE + ".*"):
        suffix = p.name.removeprefix(LOG_FILE + ".")
        if suffix.isdigit():
            rotated.append((int(suffix), p))
    current = folder / LOG_FILE
    return [p for _, p in sorted(rotated, reverse=True)] + ([current] if current.exists() else [])


def read_logs(folder: Path, query: LogQuery, *, end: "LogPosition | None" = None) -> list[LogLine]:
    """The newest `query.limit` lines matching `query`, oldest first. Reads files newest
    first and stops once it has enough, or reaches lines older than `query.since`. With
    `end`, only the lines written before that position."""
    found: list[LogLine] = []
    files = list(reversed(log_files(folder)))
    if end is not None:
        inodes = [_inode(p) for p in files]
        if end.inode not in inodes:
            return []  # every file there is now was started after the position
        files = files[inodes.index(end.inode):]
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # rotated away while we listed
        if end is not None and path is files[0]:
            data = data[:end.offset]
        text = data.decode("utf-8", errors="replace")
        for raw in reversed(text.splitlines()):
            if not raw or not query.prefilter(raw):
                continue
            line = LogLine.parse(raw)
            if line is None:
                continue
            if query.since and line.time < _aware(query.since):
                return list(reversed(found))
            if query.matches(line):
                found.append(line)
                if len(found) >= query.limit:
                    return list(reversed(found))
    return list(reversed(found))


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class LogPosition:
    """Where the current log file ended at some moment: following from here misses no
    line written after it, even one written while older lines were being printed."""

    inode: int
    offset: int


def log_position(folder: Path) -> LogPosition | None:
    """The end of the current log file now; None when there is none yet."""
    try:
        st = os.stat(folder / LOG_FILE)
    except FileNotFoundError:
        return None
    return LogPosition(st.st_ino, st.st_size)


def follow_logs(
    folder: Path,
    query: LogQuery,
    *,
    start: LogPosition | None = None,
    poll: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[LogLine]:
    """Lines matching `query` as they are written, across rotations, until `stop()` says
    so (checked at least every `poll` seconds, also when nothing is written). From
    `start` when given, else from the end of the current file; a file that was not there
    at the start (or has been rotated since) is read from its beginning."""
    path = folder / LOG_FILE
    start = start or log_position(folder)
    stream = None
    inode = None
    pending = ""
    try:
        while not stop():
            if stream is None:
                try:
                    stream = path.open("r", encoding="utf-8", errors="replace")
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
                inode = os.fstat(stream.fileno()).st_ino
                if start is not None and start.inode == inode:
                    stream.seek(start.offset)
                start = None  # only the first file opened starts part-way
            chunk = stream.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split("\n")
                for raw in complete:
                    line = LogLine.parse(raw) if raw and query.prefilter(raw) else None
                    if line is not None and query.matches(line):
                        yield line
                continue
            try:
                rotated = os.stat(path).st_ino != inode
            except FileNotFoundError:
                rotated = True
            if rotated:
                stream.close()
                stream = None  # the next file is read from its start
                pending = ""
            else:
                time.sleep(poll)
    finally:
        if stream is not None:
            stream.close()

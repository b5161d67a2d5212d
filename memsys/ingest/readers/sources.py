"""What readers take and produce: an `Item` to read (a file on disk or a zip entry), the
`SourceText` pieces read from it, the `InputProblem`s that bad input becomes, the
`ReadLimits` of one import, and the `FieldMapping` of csv columns / json keys to memory
fields.
"""
from __future__ import annotations

import re

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, TypeVar

from memsys.ingest.readers.ocr import OcrSettings
from memsys.units import size as human_size  # one size formatter for the whole of memsys


@dataclass(frozen=True)
class SourceText:
    """One piece of text read from a file, before chunking."""

    text: str
    source_file: str  # display name relative to the import root: "docs/a.pdf", "bundle.zip/x.md"
    location: str = ""  # "page 3", "row 12", "line 4" or ""
    # Memory fields a structured row maps (project/repo/agent/tags/source), overriding defaults.
    fields: Mapping[str, Any] = field(default_factory=dict)
    # Plain text: locate each chunk by the line it starts on ("line 40").
    locate_lines: bool = False


@dataclass(frozen=True)
class InputProblem:
    """Bad input: the item ("report.pdf", "data.csv row 7") and a plain-sentence reason."""

    item: str
    reason: str
    # A warning goes with a piece that was still read (bytes replaced, an uncertain
    # encoding guess): it is reported, and nothing is rejected for it.
    warning: bool = False

    def __str__(self) -> str:
        return f"{self.item}: {'warning: ' if self.warning else ''}{self.reason}"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one import reads, decided by the engine (README, "Limits on what is
    read"). What breaks one is that file's problem: a zip bomb or a huge file is refused,
    not read; a parser that runs past the time or memory limit is stopped."""

    max_file_bytes: int = 100 * 2**20  # one file, one zip entry or one docx part, once expanded
    max_archive_bytes: int = 1024 * 2**20  # all entries of one zip archive, expanded
    max_archive_entries: int = 10_000
    max_pdf_pages: int = 2_000
    # All streams of one PDF once decompressed, as text extraction decodes them: pypdf bounds
    # each stream (75 MB), not their sum, so a PDF of many inflating streams is ours to stop.
    max_pdf_stream_bytes: int = 256 * 2**20
    max_json_depth: int = 64  # nesting of objects and lists in one json/jsonl record
    max_records: int = 1_000_000  # rows of a csv, lines of a jsonl, items of a json list
    max_field_bytes: int = 10 * 2**20  # one csv cell
    max_problems: int = 1_000  # problems named in one file before the rest of it is skipped
    seconds_per_file: float = 60.0  # time the import waits for one file (or archive entry)
    reader_memory_bytes: int = 1024 * 2**20  # address space of a reader process
    isolate: bool = True  # each file on disk read in a worker process (False: in the importing process)

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_archive_bytes", "max_archive_entries", "max_pdf_pages", "max_pdf_stream_bytes", "max_json_depth",
                     "max_records", "max_field_bytes", "max_problems", "reader_memory_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} is {value!r}; it must be a whole number of at least 1")
        if not isinstance(self.seconds_per_file, (int, float)) or self.seconds_per_file <= 0:
            raise ValueError(f"seconds_per_file is {self.seconds_per_file!r}; it must be a number above 0")


@dataclass(frozen=True)
class Item:
    """A file to read: a path on disk or a zip entry, behind one way of opening it."""

    name: str  # display name
    size: int
    open: Callable[[], BinaryIO]
    path: Path | None = None  # on disk; None for a zip entry

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()


class TooLargeError(ValueError):
    """More bytes than the limit (a zip entry larger than it said, a docx that expands too far)."""


class LimitError(ValueError):
    """A file goes past one of the import's read limits (pages, depth, records)."""


def read_bytes(item: Item, limit: int) -> bytes:
    """The whole item, refusing (TooLargeError) more than `limit` bytes whatever its size said."""
    with item.open() as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise TooLargeError(f"is larger than the limit of {human_size(limit)} per file")
    return data


def check_expansion(source: Any, limit: int) -> None:
    """Refuse an office file or e-book (a zip inside) whose parts expand past `limit` once
    unpacked, before any parser sees it. zipfile never returns more than a member's
    declared size, so the declared sizes bound what parsing can unpack. Not a zip at all:
    nothing to check (the format's reader says what is wrong)."""
    import zipfile

    try:
        with zipfile.ZipFile(source) as archive:
            expanded = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile:
        return
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    if expanded > limit:
        raise TooLargeError(f"expands to {human_size(expanded)} once unpacked; the limit is {human_size(limit)} per file")


# --- Field mapping for csv / jsonl / json ------------------------------------------------

MAPPED_FIELDS = ("content", "project", "repo", "agent", "tags", "source", "record_id")
# Column or key names recognised without any mapping, tried in this order, ignoring case.
USUAL_NAMES: Mapping[str, tuple[str, ...]] = {
    "content": ("content", "text", "body", "message", "memory"),
    "project": ("project",),
    "repo": ("repo", "repository"),
    "agent": ("agent", "author"),
    "tags": ("tags", "tag", "labels"),
    "source": ("source",),
    # Only when the mapping names it: a column that happens to be called "id" does not
    # make every row a document of its own.
    "record_id": (),
}


class MissingColumnError(ValueError):
    """A structured file lacks a column the mapping needs."""


@dataclass(frozen=True)
class FieldMapping:
    """Which csv column or json key fills which memory field. A field left as None takes
    the first of its usual names that is present (see USUAL_NAMES); names ignore case.
    In csv, a tags cell is split on `tag_separator`, or read as a JSON list if it is one."""

    content: str | None = None
    project: str | None = None
    repo: str | None = None
    agent: str | None = None
    tags: str | None = None
    source: str | None = None
    # The column holding each row's own id: each row is then a document of its own (keyed
    # by project, repo and that id), replaced on re-import and removed by a mirror once gone.
    record_id: str | None = None
    tag_separator: str = ","

    def columns(self, names: Iterable[str]) -> dict[str, str]:
        """Memory field -> the name (as spelled in `names`) that fills it; fields with no
        column are left out. Raises MissingColumnError for an explicitly mapped name that
        is absent, or when no content column can be found."""
        by_lower = {}
        for name in names:
            by_lower.setdefault(name.strip().lower(), name)
        found: dict[str, str] = {}
        for field_name in MAPPED_FIELDS:
            wanted = getattr(self, field_name)
            if wanted is not None:
                if wanted.strip().lower() not in by_lower:
                    raise MissingColumnError(f"has no column {wanted!r} for {field_name} (columns: {_list(by_lower.values())})")
                found[field_name] = by_lower[wanted.strip().lower()]
                continue
            for usual in USUAL_NAMES[field_name]:
                if usual in by_lower:
                    found[field_name] = by_lower[usual]
                    break
        if "content" not in found:
            raise MissingColumnError(
                f"has no content column; name one {_list(USUAL_NAMES['content'])} or choose the "
                f"content column in the mapping (columns: {_list(by_lower.values())})"
            )
        return found


def _list(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names) or "none"


Pieces = Iterator[SourceText | InputProblem]


@dataclass
class ReadTally:
    """What one read counts for the progress and the preview: pages read by OCR, or, while
    only estimating, pages that would be. `on_ocr_page` is called after each page read."""

    ocr_pages: int = 0
    on_ocr_page: Callable[[int], None] | None = None

    def ocr_page_done(self) -> None:
        self.ocr_pages += 1
        if self.on_ocr_page is not None:
            self.on_ocr_page(self.ocr_pages)


@dataclass(frozen=True)
class ReadContext:
    """What every reader is given beside the item: the import's field mapping, limits and
    OCR settings, how to read a file found inside another (an archive entry, an e-mail
    attachment) with the same readers, and the tally of the read. `estimate_only` (the
    import preview) skips work that is slow and only counted, such as OCR."""

    mapping: FieldMapping
    limits: ReadLimits
    read_entry: Callable[[Item], Pieces]
    ocr: OcrSettings = field(default_factory=OcrSettings)
    tally: ReadTally = field(default_factory=ReadTally)
    estimate_only: bool = False


# How one file on disk is read: `(path, display name, context) -> pieces`. The walk over
# paths is handed one, so where a file is read (this process, a worker) and what comes back
# (text pieces, or memories already cut from them) is the caller's choice.
Piece = TypeVar("Piece")
FileReader = Callable[[Path, str, ReadContext], Iterator[Piece]]


# A path on this machine inside a parser's message (the spool, a temporary folder): never
# shown, the file is named by the sentence around it.
_ERRNO = re.compile(r"^\[Errno \d+\]\s*")
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/|\\)(?:[^\s'\"/\\:]+(?:/|\\))+[^\s'\",:;)]*")


def parser_said(e: BaseException, limit: int = 200) -> str:
    """What a parser said when it gave up, for a page: its own words (not its exception
    class, which means nothing to the person importing), no path on this machine, cut to
    `limit` characters; "no reason given" when it said nothing."""
    words = " ".join(_PATH.sub("the file", _ERRNO.sub("", str(e))).split())
    if len(words) > limit:
        words = words[: limit - 1].rstrip() + "…"
    return words or "no reason given"


def plain_failure(e: BaseException) -> str:
    """Why a parser gave up on a file, in a sentence."""
    if isinstance(e, RecursionError):
        return "nests too deeply to be read (lists, objects or references inside each other thousands of levels deep)"
    if isinstance(e, NotImplementedError):
        return f"uses something memsys cannot read ({str(e) or 'not supported'}; e.g. Deflate64 compression in a zip)"
    return f"could not be read ({parser_said(e)})"

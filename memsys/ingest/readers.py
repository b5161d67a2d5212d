"""Readers: turn files, folders and zip archives into `SourceText` pieces (a page, a row,
a whole document) and bad input into `InputProblem`s, one per file or row, so one broken
file never stops the others.

Everything streams: a csv or jsonl file is read a row at a time, a zip archive an entry at
a time, and nothing is ever extracted to disk (so no entry name can write outside the
spool). Text encodings are detected with charset-normalizer.
"""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Sequence

from charset_normalizer import from_bytes

# --- What readers produce ---------------------------------------------------------------


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

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what one import reads; a zip bomb or a huge file is refused, not read."""

    max_file_bytes: int = 100 * 2**20  # one file, or one zip entry once expanded
    max_archive_bytes: int = 1024 * 2**20  # all entries of one zip archive, expanded
    max_archive_entries: int = 10_000

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_archive_bytes", "max_archive_entries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} is {value!r}; it must be a whole number of at least 1")


class UnsafeNameError(ValueError):
    """A file name that could point outside its folder ('..', an absolute path)."""


# --- Field mapping for csv / jsonl / json ------------------------------------------------

MAPPED_FIELDS = ("content", "project", "repo", "agent", "tags", "source")
# Column or key names recognised without any mapping, tried in this order, ignoring case.
USUAL_NAMES: Mapping[str, tuple[str, ...]] = {
    "content": ("content", "text", "body", "message", "memory"),
    "project": ("project",),
    "repo": ("repo", "repository"),
    "agent": ("agent", "author"),
    "tags": ("tags", "tag", "labels"),
    "source": ("source",),
}


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


class MissingColumnError(ValueError):
    """A structured file lacks a column the mapping needs."""


def _list(names: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in names) or "none"


# --- Entry point ---------------------------------------------------------------------------

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown", ".rst", ".log"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
CSV_SUFFIXES = frozenset({".csv", ".tsv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
SUPPORTED = "txt, md, html, pdf, docx, csv, jsonl, json and zip"


@dataclass(frozen=True)
class _Item:
    """A file to read: a path on disk or a zip entry, behind one way of opening it."""

    name: str  # display name
    size: int
    open: Callable[[], BinaryIO]
    path: Path | None = None  # on disk; None for a zip entry

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix.lower()


def read_sources(
    paths: Sequence[Path | str],
    *,
    mapping: FieldMapping | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[SourceText | InputProblem]:
    """Read files, folders (recursively) and zip archives, in order. A folder's files are
    named "<folder>/<relative path>"; hidden files and folders (".git", ".DS_Store") are
    left out; anything else that cannot be read yields an InputProblem saying why."""
    mapping = mapping or FieldMapping()
    limits = limits or ReadLimits()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _read_folder(path, mapping, limits)
        elif path.is_file():
            yield from _read_disk_file(path, path.name, mapping, limits)
        else:
            yield InputProblem(path.name or str(path), "does not exist or is not a file or folder")


def _read_disk_file(path: Path, name: str, mapping: FieldMapping, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    try:
        size = path.stat().st_size
    except OSError as e:
        yield InputProblem(name, f"could not be read: {e.strerror or e}")
        return
    yield from _read_item(_Item(name, size, lambda: path.open("rb"), path), mapping, limits)


def _read_folder(root: Path, mapping: FieldMapping, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            path = Path(folder) / file_name
            name = f"{root.name}/{path.relative_to(root).as_posix()}"
            if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                yield InputProblem(name, "is a link to a file outside the folder; links out are not followed")
            elif not path.is_file():
                yield InputProblem(name, "is not a regular file")
            else:
                yield from _read_disk_file(path, name, mapping, limits)


def _read_item(item: _Item, mapping: FieldMapping, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    if item.size > limits.max_file_bytes:
        yield InputProblem(item.name, f"is {_size(item.size)}; the limit is {_size(limits.max_file_bytes)} per file")
        return
    if item.size == 0:
        yield InputProblem(item.name, "is empty")
        return
    suffix = item.suffix
    try:
        if suffix == ".zip":
            yield from _read_zip(item, mapping, limits)
        elif suffix == ".pdf":
            yield from _read_pdf(item, limits)
        elif suffix == ".docx":
            yield from _read_docx(item, limits)
        elif suffix in CSV_SUFFIXES:
            yield from _read_csv(item, mapping)
        elif suffix in JSONL_SUFFIXES:
            yield from _read_jsonl(item, mapping)
        elif suffix == ".json":
            yield from _read_json(item, mapping, limits)
        elif suffix in HTML_SUFFIXES:
            yield from _read_html(item, limits)
        elif suffix in (".doc", ".xls", ".xlsx", ".ppt", ".pptx"):
            yield InputProblem(item.name, f"is a {suffix} file, which memsys cannot read; save it as .docx, .pdf or .csv")
        else:
            # .txt, .md and files with other or no extensions: anything that is text.
            yield from _read_text(item, limits)
    except (_TooLarge, UndecodableError) as e:
        yield InputProblem(item.name, str(e))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        # A damaged zip entry (bad CRC, truncated data) or an I/O failure of this file only.
        yield InputProblem(item.name, f"could not be read: {e}")


# --- Bytes and encodings -------------------------------------------------------------------

# The encodings memsys recognises, in order of preference when a short text fits several.
PREFERRED_ENCODINGS = ("utf_8", "gb18030", "cp932", "big5", "cp1252")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY_REASON = "is a binary file, not text (supported: " + SUPPORTED + ")"
_UNDECODABLE_REASON = (
    "could not be decoded: its bytes are not text in UTF-8, UTF-16, GB18030/GBK, "
    "Shift-JIS, Big5 or Latin-1"
)


class UndecodableError(ValueError):
    """Bytes that are not text in any encoding memsys recognises (or are binary)."""


def detect_encoding(data: bytes) -> str:
    """The encoding of `data` (a whole file or its first block). Raises UndecodableError
    with a plain reason for binary data or bytes that are text in no known encoding."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if b"\x00" in data[:8192]:
        raise UndecodableError(_BINARY_REASON)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Short texts fit several legacy encodings; trying the usual ones first picks GBK over
    # EUC-KR and Latin-1 over Mac Roman, and the full set is the fallback.
    best = from_bytes(data, cp_isolation=list(PREFERRED_ENCODINGS)).best() or from_bytes(data).best()
    if best is None:
        raise UndecodableError(_UNDECODABLE_REASON)
    return best.encoding


def decode_bytes(data: bytes) -> str:
    """Decode a whole file's bytes; raises UndecodableError."""
    encoding = detect_encoding(data)
    try:
        return _normalise(data.decode(encoding))
    except UnicodeDecodeError as e:
        raise UndecodableError(f"is not valid {encoding} text at byte {e.start}") from None


def _normalise(text: str) -> str:
    # NUL cannot be stored; Windows and old Mac line ends become \n.
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def _read_bytes(item: _Item, limit: int) -> bytes:
    with item.open() as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise _TooLarge(f"is larger than the limit of {_size(limit)} per file")
    return data


class _TooLarge(ValueError):
    """More bytes than the limit (a zip entry larger than it said)."""


def _size(n: int) -> str:
    """A byte count for people: "512 bytes", "3.2 MB"."""
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1024
        if value < 1024 or unit == "TB":
            break
    return f"{value:.1f} {unit}"


def _text_of(item: _Item, limits: ReadLimits) -> str | InputProblem:
    """The decoded text of a whole file; raises UndecodableError or _TooLarge."""
    text = decode_bytes(_read_bytes(item, limits.max_file_bytes))
    if not text.strip():
        return InputProblem(item.name, "is empty (only white space)")
    return text


# --- Plain text and HTML -------------------------------------------------------------------


def _read_text(item: _Item, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    text = _text_of(item, limits)
    if isinstance(text, InputProblem):
        yield text
    else:
        yield SourceText(text, item.name, locate_lines=True)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements on lines of their own."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCKS = frozenset(
        {"p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "ul", "ol",
         "table", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "form",
         "figure", "figcaption", "dl", "dt", "dd", "title", "body"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skipping:
            self._skipping -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).split("\n"))
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


def _read_html(item: _Item, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    html = _text_of(item, limits)
    if isinstance(html, InputProblem):
        yield html
        return
    text = html_to_text(html)
    if not text:
        yield InputProblem(item.name, "has no visible text")
    else:
        yield SourceText(text, item.name)


# --- PDF and Word ------------------------------------------------------------------------------


def _read_pdf(item: _Item, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    data = _read_bytes(item, limits.max_file_bytes)
    if b"%PDF-" not in data[:1024]:
        yield InputProblem(item.name, "is not a PDF (it does not start with %PDF-)")
        return
    pages: list[tuple[int, str]] = []
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            yield InputProblem(item.name, "is password-protected; remove the password and import it again")
            return
        for number, page in enumerate(reader.pages, start=1):
            text = _normalise(page.extract_text() or "").strip()
            if text:
                pages.append((number, text))
        page_count = len(reader.pages)
    except FileNotDecryptedError:
        yield InputProblem(item.name, "is password-protected; remove the password and import it again")
        return
    except Exception as e:  # noqa: BLE001 - pypdf raises many kinds of error on damaged files
        yield InputProblem(item.name, f"is damaged and could not be read as a PDF ({type(e).__name__}: {e})")
        return
    if not pages:
        yield InputProblem(
            item.name,
            f"has no text layer on any of its {page_count} page(s) (a scan or images only?); "
            "run OCR on it first",
        )
        return
    for number, text in pages:
        yield SourceText(text, item.name, f"page {number}")


def _read_docx(item: _Item, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    import docx
    from docx.table import Table

    data = _read_bytes(item, limits.max_file_bytes)
    if not data.startswith(b"PK"):
        yield InputProblem(
            item.name, "is not a valid .docx file (password-protected, an old .doc renamed, or damaged)"
        )
        return
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    cells = [c.text.strip() for c in row.cells]
                    if any(cells):
                        blocks.append(" | ".join(dict.fromkeys(cells)))
            elif block.text.strip():
                blocks.append(block.text.strip())
    except Exception as e:  # noqa: BLE001 - python-docx raises many kinds of error on damaged files
        yield InputProblem(item.name, f"is damaged and could not be read as a .docx ({type(e).__name__}: {e})")
        return
    text = _normalise("\n\n".join(blocks))
    if not text.strip():
        yield InputProblem(item.name, "has no text (images or empty pages only?)")
    else:
        yield SourceText(text, item.name)


# --- Structured: csv, jsonl, json ------------------------------------------------------------

_SAMPLE_BYTES = 64 * 1024


def _open_text(item: _Item) -> tuple[io.TextIOWrapper, str]:
    """The file as a text stream (newline="" for csv) and its encoding, told from the
    first block; raises UndecodableError."""
    with item.open() as f:
        sample = f.read(_SAMPLE_BYTES)
    if len(sample) == _SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]  # never judge half a character
    encoding = detect_encoding(sample)
    # Bytes the encoding cannot decode become lone surrogates (\udc80-\udcff) instead of
    # an exception in the middle of a buffer, so the row or line holding them is reported
    # and the rest of the file is still read.
    stream = io.TextIOWrapper(item.open(), encoding=encoding, errors="surrogateescape", newline="")
    return stream, encoding


_BAD_BYTES = re.compile("[\udc80-\udcff]")


def _bad_bytes_reason(encoding: str) -> str:
    return f"has bytes that are not valid {encoding} text (the encoding was judged from the start of the file)"


def _read_csv(item: _Item, mapping: FieldMapping) -> Iterator[SourceText | InputProblem]:
    stream, encoding = _open_text(item)
    # The csv module's per-field limit (128 KiB) is process-wide; a long text cell is normal.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with stream:
        first_line = stream.readline()
        delimiter = "\t" if item.suffix == ".tsv" else _guess_delimiter(first_line)
        reader = csv.reader(itertools.chain([first_line], stream), delimiter=delimiter, strict=True)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
        except csv.Error as e:
            yield InputProblem(item.name, f"has a malformed header row: {e}")
            return
        if not any(header):
            yield InputProblem(item.name, "is empty (no header row)")
            return
        try:
            columns = mapping.columns(header)
        except MissingColumnError as e:
            yield InputProblem(item.name, str(e))
            return
        index = {f: header.index(name) for f, name in columns.items()}
        row_number = 1  # the header is row 1, as a spreadsheet shows it
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                row_number += 1
                yield InputProblem(f"{item.name} row {row_number}", f"is malformed: {e}")
                continue
            row_number += 1
            where = f"{item.name} row {row_number}"
            if not any(cell.strip() for cell in row):
                continue
            if any(_BAD_BYTES.search(cell) for cell in row):
                yield InputProblem(where, _bad_bytes_reason(encoding))
            elif len(row) != len(header):
                yield InputProblem(where, f"has {len(row)} values but the header has {len(header)} columns")
            else:
                yield _csv_row(row, index, columns, mapping, item.name, row_number)
    if row_number == 1:
        yield InputProblem(item.name, "has a header row but no data rows")


def _guess_delimiter(line: str) -> str:
    counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _csv_row(
    row: list[str], index: Mapping[str, int], columns: Mapping[str, str], mapping: FieldMapping, name: str, number: int
) -> SourceText | InputProblem:
    content = _normalise(row[index["content"]]).strip()
    if not content:
        return InputProblem(f"{name} row {number}", f"has no content (column {columns['content']!r} is empty)")
    fields: dict[str, Any] = {}
    for field_name, i in index.items():
        value = row[i].strip()
        if field_name == "content" or not value:
            continue
        if field_name == "tags":
            tags = _parse_tags(value, mapping.tag_separator)
            if isinstance(tags, str):
                return InputProblem(f"{name} row {number}", tags)
            fields["tags"] = tags
        else:
            fields[field_name] = value
    return SourceText(content, name, f"row {number}", fields)


def _parse_tags(cell: str, separator: str) -> list[str] | str:
    """A tags cell: a JSON list ('["a", "b"]') or text split on the separator; a str is the problem."""
    if cell.startswith("["):
        try:
            tags = json.loads(cell)
        except json.JSONDecodeError:
            return f"has a tags cell that starts like a JSON list but is not one: {cell[:60]!r}"
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return "has a tags cell whose JSON is not a list of strings"
        return tags
    return [t.strip() for t in cell.split(separator) if t.strip()]


def _map_record(record: Any, mapping: FieldMapping, name: str, where: str) -> SourceText | InputProblem:
    """One json/jsonl record: an object mapped by field names, or a bare string as content."""
    if isinstance(record, str):
        record = {"content": record}
    if not isinstance(record, dict):
        return InputProblem(f"{name} {where}", f"is {_json_kind(record)}, not an object with a content field")
    try:
        columns = mapping.columns(record.keys())
    except MissingColumnError as e:
        return InputProblem(f"{name} {where}", str(e).replace("has no content column", "has no content field"))
    content = record[columns["content"]]
    if not isinstance(content, str):
        return InputProblem(f"{name} {where}", f"has content that is {_json_kind(content)}, not text")
    content = _normalise(content).strip()
    if not content:
        return InputProblem(f"{name} {where}", f"has no content ({columns['content']!r} is empty)")
    # Values go on as they are: Memory validation reports a wrong type (tags not a list).
    fields = {f: record[key] for f, key in columns.items() if f != "content" and record[key] not in (None, "")}
    return SourceText(content, name, where, fields)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "text"


def _read_jsonl(item: _Item, mapping: FieldMapping) -> Iterator[SourceText | InputProblem]:
    stream, encoding = _open_text(item)
    records = 0
    with stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            records += 1
            where = f"{item.name} line {line_number}"
            if _BAD_BYTES.search(line):
                yield InputProblem(where, _bad_bytes_reason(encoding))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield InputProblem(where, f"is not valid JSON: {e.msg} at column {e.colno}")
                continue
            yield _map_record(record, mapping, item.name, f"line {line_number}")
    if not records:
        yield InputProblem(item.name, "is empty (only blank lines)")


# A top-level object holding the records under one of these keys is a list of records.
_LIST_KEYS = ("memories", "records", "items", "documents", "data")


def _read_json(item: _Item, mapping: FieldMapping, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    text = _text_of(item, limits)
    if isinstance(text, InputProblem):
        yield text
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        yield InputProblem(item.name, f"is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}")
        return
    if isinstance(data, dict):
        key = next((k for k in _LIST_KEYS if isinstance(data.get(k), list)), None)
        if key is None:
            yield _map_record(data, mapping, item.name, "")
            return
        data = data[key]
    if not isinstance(data, list):
        yield InputProblem(item.name, f"is {_json_kind(data)}; expected a list of records or an object")
        return
    if not data:
        yield InputProblem(item.name, "has an empty list of records")
    for number, record in enumerate(data, start=1):
        yield _map_record(record, mapping, item.name, f"item {number}")


# --- Zip archives ------------------------------------------------------------------------------


def is_safe_relative_name(name: str) -> bool:
    """True for a relative name that stays inside its folder: no '..', no absolute path,
    no drive letter, no NUL. Backslashes count as separators (zips made on Windows)."""
    if not name or "\x00" in name:
        return False
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return False
    return ".." not in PurePosixPath(posix).parts


def spool_path(spool_dir: Path, name: str) -> Path:
    """Where an uploaded file called `name` goes inside `spool_dir`; raises UnsafeNameError
    for a name that could land outside it."""
    if not is_safe_relative_name(name):
        raise UnsafeNameError(f"{name!r} has '..' or an absolute path in its name; not saved")
    target = (spool_dir / name.replace("\\", "/")).resolve()
    if not target.is_relative_to(spool_dir.resolve()):
        raise UnsafeNameError(f"{name!r} would be saved outside the upload folder; not saved")
    return target


def _zip_entry_name(info: zipfile.ZipInfo) -> str:
    # Zips from Windows often store UTF-8 names without the UTF-8 flag; zipfile then
    # decodes them as cp437. Undo that when the bytes are valid UTF-8.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _read_zip(item: _Item, mapping: FieldMapping, limits: ReadLimits) -> Iterator[SourceText | InputProblem]:
    if item.path is None:
        yield InputProblem(item.name, "is a zip archive inside a zip archive; unpack the outer one first")
        return
    try:
        archive = zipfile.ZipFile(item.path)
    except zipfile.BadZipFile:
        yield InputProblem(item.name, "is not a valid zip archive (damaged or not a zip)")
        return
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > limits.max_archive_entries:
            yield InputProblem(
                item.name,
                f"has {len(entries):,} files; the limit is {limits.max_archive_entries:,} per archive "
                "(nothing was imported from it)",
            )
            return
        expanded = sum(info.file_size for info in entries)
        if expanded > limits.max_archive_bytes:
            yield InputProblem(
                item.name,
                f"would expand to {_size(expanded)}; the limit is {_size(limits.max_archive_bytes)} per archive "
                "(nothing was imported from it)",
            )
            return
        for info in entries:
            entry = _zip_entry_name(info)
            name = f"{item.name}/{entry}"
            if not is_safe_relative_name(entry):
                yield InputProblem(
                    name, "has '..' or an absolute path in its name, which could point outside the import folder; skipped"
                )
                continue
            parts = PurePosixPath(entry.replace("\\", "/")).parts
            if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
                continue  # Finder's resource forks and hidden files, as in folders
            if info.flag_bits & 0x1:
                yield InputProblem(name, "is password-protected inside the archive")
                continue
            yield from _read_item(
                _Item(name, info.file_size, lambda info=info: archive.open(info)), mapping, limits
            )

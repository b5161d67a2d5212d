"""The entry point: `read_paths` walks files, folders and archives in order and hands
each file on disk to the file reader it is given; `read_disk_file` (the one that reads in
this process) hands it to the reader of its format (the registry below, keyed by the names
in `formats.FORMATS`). Anything that cannot be read becomes an `InputProblem` for that file
alone, so one broken file never stops the others, whatever a parser raises. What a parser
costs is bounded by the file reader the caller picks (memsys.ingest.workers reads each file
in a worker process within `ReadLimits`).
"""
from __future__ import annotations

import os
import stat
import unicodedata
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from memsys.ingest.readers import archives, ebooks, mail, pdf, sheets, slides, structured, text, word
from memsys.ingest.readers.encoding import UndecodableError
from memsys.ingest.readers.formats import FORMATS, UNREADABLE_SUFFIXES, format_of, save_as_advice
from memsys.ingest.readers.ocr import OcrSettings
from memsys.ingest.readers.sources import (
    FieldMapping,
    FileReader,
    InputProblem,
    Item,
    LimitError,
    Piece,
    Pieces,
    ReadContext,
    ReadLimits,
    ReadTally,
    TooLargeError,
    human_size,
    plain_failure,
)
from memsys.spool import not_copied
from memsys.spool import special_file_reason as _not_a_file

# The reader of each format in formats.FORMATS, by its name.
READERS: dict[str, Callable[[Item, ReadContext], Pieces]] = {
    "text": text.read_text,
    "html": text.read_html,
    "pdf": pdf.read_pdf,
    "docx": word.read_docx,
    "csv": structured.read_csv,
    "jsonl": structured.read_jsonl,
    "json": structured.read_json,
    "xlsx": sheets.read_xlsx,
    "pptx": slides.read_pptx,
    "epub": ebooks.read_epub,
    "eml": mail.read_eml,
    "zip": archives.read_zip,
}
_missing = {f.name for f in FORMATS} ^ set(READERS)
if _missing:  # a format named without a reader (or the reverse) is a programming error
    raise ImportError(f"formats and readers disagree about: {sorted(_missing)}")


def read_paths(
    paths: Sequence[Path | str],
    read_file: FileReader[Piece],
    *,
    mapping: FieldMapping | None = None,
    limits: ReadLimits | None = None,
    ocr: OcrSettings | None = None,
    tally: ReadTally | None = None,
    estimate_only: bool = False,
) -> Iterator[Piece | InputProblem]:
    """Read files, folders (recursively) and zip archives, in order, each file on disk by
    `read_file` (`read_disk_file` reads it here). A folder's files are named
    "<folder>/<relative path>"; hidden files and folders (".git", ".DS_Store") are left
    out; anything else that cannot be read yields an InputProblem saying why. `tally`
    counts what the read did (OCR pages); `estimate_only` counts scanned pages instead of
    reading them by OCR (for a quick preview)."""
    ctx = make_context(mapping or FieldMapping(), limits or ReadLimits(), ocr or OcrSettings(),
                       tally if tally is not None else ReadTally(), estimate_only)
    for raw in paths:
        path = Path(raw)
        name = display_name(path.name or str(path))
        try:
            mode = path.stat().st_mode
        except OSError as e:
            yield InputProblem(name, "does not exist or is not a file or folder" if isinstance(e, FileNotFoundError)
                               else f"could not be read: {e.strerror or e}")
            continue
        if stat.S_ISDIR(mode):
            yield from _read_folder(path, ctx, read_file)
        elif stat.S_ISREG(mode):
            yield from read_file(path, name, ctx)
        else:
            yield InputProblem(name, _not_a_file(mode))


def make_context(mapping: FieldMapping, limits: ReadLimits, ocr: OcrSettings, tally: ReadTally, estimate_only: bool,
                 on_entry: Callable[[str], None] | None = None) -> ReadContext:
    """The context of one read; `on_entry(name)` is told as each archive entry starts."""

    def read_entry(entry: Item) -> Pieces:
        if on_entry is not None:
            on_entry(entry.name)
        return read_item(entry, ctx)

    ctx = ReadContext(mapping, limits, read_entry, ocr=ocr, tally=tally, estimate_only=estimate_only)
    return ctx


def display_name(name: str) -> str:
    """A file name as it can be shown and stored: control characters (a newline) and
    invisible formatting characters (a right-to-left override that makes "txt.exe" read
    as "exe.txt") are written as escapes, so a name never disguises itself."""
    return "".join(_escaped(c) if unicodedata.category(c) in ("Cc", "Cf") else c for c in name)


def _escaped(c: str) -> str:
    return repr(c)[1:-1] if c in "\n\r\t" else f"\\u{ord(c):04x}"


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading, never blocking on a FIFO swapped in meanwhile."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise IsADirectoryError(f"{path.name} {_not_a_file(mode)}") if stat.S_ISDIR(mode) else OSError(_not_a_file(mode))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_disk_file(path: Path, name: str, ctx: ReadContext) -> Pieces:
    """One file on disk, by the reader of its format. A file that changes while it is read
    (a log still being written, a file cut short or replaced by a save) is read as far as
    its reader got, and named with a warning saying what changed, so the user knows its
    memories may not match the file as it is now."""
    try:
        before = path.stat()
    except OSError as e:
        yield InputProblem(name, f"could not be read: {e.strerror or e}")
        return
    yield from read_item(Item(name, before.st_size, lambda: open_regular(path), path), ctx)
    change = _change_while_read(path, before)
    if change:
        yield InputProblem(name, f"{change} while it was being read; its memories are what was read then, which may "
                                 "not match the file now: import it again once nothing is writing to it", warning=True)


def _change_while_read(path: Path, before: os.stat_result) -> str:
    """What happened to the file since `before` was taken ("" when nothing did)."""
    try:
        after = path.stat()
    except OSError:
        return "was removed"
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        return "was replaced by another file"
    if after.st_size != before.st_size:
        grew = "grew" if after.st_size > before.st_size else "was cut short"
        return f"{grew} from {before.st_size:,} to {after.st_size:,} bytes"
    if after.st_mtime_ns != before.st_mtime_ns:
        return "was modified"
    return ""


def _read_folder(root: Path, ctx: ReadContext, read_file: FileReader[Piece]) -> Iterator[Piece | InputProblem]:
    """Every file under `root`, in name order. Links are followed only to files inside the
    folder; named pipes, sockets and devices are named and never opened; a folder that
    cannot be listed is named; nothing here refuses the whole folder."""
    real_root = root.resolve()
    for relative, reason in not_copied(root):  # entries the spool could not copy, and why
        yield InputProblem(display_name(f"{root.name}/{relative}"), reason)
    unlistable: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=unlistable.append):
        while unlistable:
            error = unlistable.pop(0)
            yield InputProblem(_name_in(root, Path(error.filename or folder)),
                               f"is a folder that could not be listed: {error.strerror or error}")
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file_name in sorted(files):
            if file_name.startswith("."):
                continue
            path = Path(folder) / file_name
            name = _name_in(root, path)
            try:
                mode = path.lstat().st_mode
                if stat.S_ISLNK(mode):
                    if not path.resolve().is_relative_to(real_root):
                        yield InputProblem(name, "is a link to a file outside the folder; links out are not followed")
                        continue
                    mode = path.stat().st_mode
            except OSError as e:
                yield InputProblem(name, f"could not be read: {e.strerror or e}")
                continue
            if stat.S_ISREG(mode):
                yield from read_file(path, name, ctx)
            elif not stat.S_ISDIR(mode):  # a link to a folder inside is walked as that folder
                yield InputProblem(name, _not_a_file(mode))
    for error in unlistable:
        yield InputProblem(_name_in(root, Path(error.filename or root)),
                           f"is a folder that could not be listed: {error.strerror or error}")


def _name_in(root: Path, path: Path) -> str:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.name
    return display_name(f"{root.name}/{relative}" if relative != "." else root.name)


def read_item(item: Item, ctx: ReadContext) -> Pieces:
    """One file or archive entry, by the reader of its format. Whatever goes wrong in it
    is its problem (with a plain reason), and after `limits.max_problems` problems the rest
    of it is skipped."""
    problems = 0
    for piece in _read_item(item, ctx):
        if isinstance(piece, InputProblem) and not piece.warning:
            problems += 1
            if problems > ctx.limits.max_problems:
                yield InputProblem(item.name, f"has more than {ctx.limits.max_problems:,} problems; the rest of it was "
                                              "skipped (fix the file and import it again)")
                return
        yield piece


def _read_item(item: Item, ctx: ReadContext) -> Pieces:
    limits = ctx.limits
    if item.size > limits.max_file_bytes:
        yield InputProblem(item.name, f"is {human_size(item.size)}; the limit is {human_size(limits.max_file_bytes)} per file")
        return
    if item.size == 0:
        yield InputProblem(item.name, "is empty")
        return
    file_format = format_of(item.name)
    try:
        if file_format is not None:
            yield from READERS[file_format.name](item, ctx)
        elif item.suffix in UNREADABLE_SUFFIXES:
            yield InputProblem(item.name, save_as_advice(item.name) or f"is a {item.suffix} file, which memsys cannot read")
        else:
            # Files with other or no extensions: anything that is text.
            yield from text.read_text(item, ctx)
    except (TooLargeError, UndecodableError, LimitError) as e:
        yield InputProblem(item.name, str(e))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        # A damaged zip entry (bad CRC, truncated data).
        yield InputProblem(item.name, f"could not be read: {e}")
    except OSError as e:
        # An I/O failure of this file only; the reason without the path (a spool folder's).
        yield InputProblem(item.name, f"could not be read: {e.strerror or e}")
    except MemoryError:
        raise  # the reader process reports it and is replaced
    except Exception as e:  # noqa: BLE001 - whatever a parser raises on one file is that file's problem
        yield InputProblem(item.name, plain_failure(e))


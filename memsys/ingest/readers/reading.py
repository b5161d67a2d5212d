"""The entry point: `read_sources` walks files, folders and archives in order and
hands each file to the reader of its format (the registry below, keyed by the names in
`formats.FORMATS`). Anything that cannot be read becomes an `InputProblem` for that file
alone, so one broken file never stops the others.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from memsys.ingest.readers import archives, documents, ebooks, mail, pdf, sheets, slides, structured, word
from memsys.ingest.readers.encoding import UndecodableError
from memsys.ingest.readers.formats import FORMATS, UNREADABLE_SUFFIXES, format_of
from memsys.ingest.readers.ocr import OcrSettings
from memsys.ingest.readers.sources import (
    FieldMapping,
    InputProblem,
    Item,
    Pieces,
    ReadContext,
    ReadLimits,
    ReadTally,
    TooLargeError,
    human_size,
)

# The reader of each format in formats.FORMATS, by its name.
READERS: dict[str, Callable[[Item, ReadContext], Pieces]] = {
    "text": documents.read_text,
    "html": documents.read_html,
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


def read_sources(
    paths: Sequence[Path | str],
    *,
    mapping: FieldMapping | None = None,
    limits: ReadLimits | None = None,
    ocr: OcrSettings | None = None,
    tally: ReadTally | None = None,
    estimate_only: bool = False,
) -> Pieces:
    """Read files, folders (recursively) and zip archives, in order. A folder's files are
    named "<folder>/<relative path>"; hidden files and folders (".git", ".DS_Store") are
    left out; anything else that cannot be read yields an InputProblem saying why.
    `tally` counts what the read did (OCR pages); `estimate_only` counts scanned pages
    instead of reading them by OCR (for a quick preview)."""
    ctx = ReadContext(
        mapping or FieldMapping(),
        limits or ReadLimits(),
        lambda entry: read_item(entry, ctx),
        ocr=ocr or OcrSettings(),
        tally=tally if tally is not None else ReadTally(),
        estimate_only=estimate_only,
    )
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _read_folder(path, ctx)
        elif path.is_file():
            yield from _read_disk_file(path, path.name, ctx)
        else:
            yield InputProblem(path.name or str(path), "does not exist or is not a file or folder")


def _read_disk_file(path: Path, name: str, ctx: ReadContext) -> Pieces:
    try:
        size = path.stat().st_size
    except OSError as e:
        yield InputProblem(name, f"could not be read: {e.strerror or e}")
        return
    yield from read_item(Item(name, size, lambda: path.open("rb"), path), ctx)


def _read_folder(root: Path, ctx: ReadContext) -> Pieces:
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
                yield from _read_disk_file(path, name, ctx)


def read_item(item: Item, ctx: ReadContext) -> Pieces:
    """One file or archive entry, by the reader of its format."""
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
            yield InputProblem(item.name, f"is a {item.suffix} file, which memsys cannot read; save it as .docx, .xlsx, .pptx, .pdf or .csv")
        else:
            # Files with other or no extensions: anything that is text.
            yield from documents.read_text(item, ctx)
    except (TooLargeError, UndecodableError) as e:
        yield InputProblem(item.name, str(e))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
        # A damaged zip entry (bad CRC, truncated data) or an I/O failure of this file only.
        yield InputProblem(item.name, f"could not be read: {e}")

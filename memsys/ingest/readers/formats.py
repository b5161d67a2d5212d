"""The file formats memsys reads, named once: every list of suffixes (the dashboard's
upload types, the "supported: ..." sentence, which files get a column mapping) is derived
from `FORMATS`. Which function reads each format is in `reading.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class FileFormat:
    """One kind of file: its name, the suffixes that select it (lower case, with the dot)
    and how people call it in a sentence ("txt, md")."""

    name: str
    suffixes: tuple[str, ...]
    label: str
    # Records whose columns / keys the Import page offers for mapping to memory fields.
    has_columns: bool = False
    # Holds other files (read with the same readers).
    archive: bool = False


# In the order the dashboard and messages list them. Files whose suffix is none of these
# are read as plain text when their bytes are text.
FORMATS: tuple[FileFormat, ...] = (
    FileFormat("text", (".txt", ".text", ".md", ".markdown", ".rst", ".log"), "txt, md"),
    FileFormat("html", (".html", ".htm", ".xhtml"), "html"),
    FileFormat("pdf", (".pdf",), "pdf"),
    FileFormat("docx", (".docx",), "docx"),
    FileFormat("csv", (".csv", ".tsv"), "csv", has_columns=True),
    FileFormat("jsonl", (".jsonl", ".ndjson"), "jsonl", has_columns=True),
    FileFormat("json", (".json",), "json"),
    FileFormat("xlsx", (".xlsx", ".xlsm"), "xlsx", has_columns=True),
    FileFormat("pptx", (".pptx",), "pptx"),
    FileFormat("epub", (".epub",), "epub"),
    FileFormat("eml", (".eml",), "eml"),
    FileFormat("zip", (".zip",), "zip", archive=True),
)

# Office formats people bring that memsys cannot read; refused with a way out.
_OLD_OFFICE = {".doc": ("Word", ".docx"), ".xls": ("Excel", ".xlsx"), ".ppt": ("PowerPoint", ".pptx")}
UNREADABLE_SUFFIXES = frozenset(_OLD_OFFICE)
# Their suffixes without the dot: the uploader takes them, to say how to convert them.
OLD_OFFICE_TYPES: tuple[str, ...] = tuple(s.lstrip(".") for s in _OLD_OFFICE)


def save_as_advice(name: str | PurePath) -> str | None:
    """For an old Office file ("report.doc"), what to do instead: "is an old Word file
    (.doc), which memsys cannot read: open it in Word or LibreOffice, save it as .docx and
    import that"; None for any other file."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in _OLD_OFFICE:
        return None
    program, modern = _OLD_OFFICE[suffix]
    return (f"is an old {program} file ({suffix}), which memsys cannot read: open it in {program} or LibreOffice, "
            f"save it as {modern} and import that")

_BY_SUFFIX = {suffix: f for f in FORMATS for suffix in f.suffixes}


def format_of(name: str | PurePath) -> FileFormat | None:
    """The format a file name selects by its suffix (ignoring case), or None."""
    return _BY_SUFFIX.get(PurePath(name).suffix.lower())


def suffixes_of(*names: str) -> frozenset[str]:
    """Every suffix of the named formats."""
    return frozenset(s for f in FORMATS if f.name in names for s in f.suffixes)


def _sentence(labels: list[str]) -> str:
    return ", ".join(labels[:-1]) + " and " + labels[-1] if len(labels) > 1 else "".join(labels)


# Suffixes without the dot, as Streamlit's file uploader wants them.
UPLOAD_TYPES: tuple[str, ...] = tuple(s.lstrip(".") for f in FORMATS for s in f.suffixes)
SUPPORTED = _sentence([f.label for f in FORMATS])  # "txt, md, html, ... and zip"
# The uploader's caption: "txt, md, html, pdf, docx, csv, jsonl, json, or a zip of them".
UPLOAD_CAPTION = ", ".join(f.label for f in FORMATS if not f.archive) + ", or a zip of them"
COLUMN_SUFFIXES = frozenset(s for f in FORMATS if f.has_columns for s in f.suffixes)
TEXT_SUFFIXES = suffixes_of("text")
HTML_SUFFIXES = suffixes_of("html")
CSV_SUFFIXES = suffixes_of("csv")
JSONL_SUFFIXES = suffixes_of("jsonl")
SHEET_SUFFIXES = suffixes_of("xlsx")

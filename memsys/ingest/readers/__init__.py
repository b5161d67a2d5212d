"""Readers: turn files, folders and zip archives into `SourceText` pieces (a page, a row,
a whole document) and bad input into `InputProblem`s, one per file or row, so one broken
file never stops the others.

Everything streams: a csv or jsonl file is read a row at a time, a workbook a row at a
time, a zip archive an entry at a time, and nothing is ever extracted to disk (so no entry name can write outside the
spool). One module per concern:

- `sources`: what readers take and produce, the read limits and the field mapping;
- `formats`: the supported formats and their suffixes, named once;
- `encoding`: text decoding (encoding detection with charset-normalizer);
- `text`: txt/md, html (main content by trafilatura);
- `pdf` and `ocr`: PDF pages, scanned ones read by Tesseract;
- `word`: docx;
- `rows`: one row of a table as a piece, for every reader of tables;
- `structured`: csv/tsv, jsonl, json;
- `sheets`: xlsx (streamed); `slides`: pptx; `ebooks`: epub; `mail`: eml;
- `archives`: zip;
- `columns`: the columns a file offers for mapping;
- `reading`: `read_paths`, the walk over paths, and the reader of each format;
- `warmup`: the texts of a cache warm-up file.

The walk is handed the function that reads each file on disk (`FileReader`): the readers
never decide in which process a file is read (memsys.ingest.workers does).
"""
from memsys.ingest.readers.columns import has_columns, structured_columns
from memsys.ingest.readers.encoding import PREFERRED_ENCODINGS, UndecodableError, decode_bytes, detect_encoding
from memsys.ingest.readers.formats import (
    CSV_SUFFIXES,
    FORMATS,
    HTML_SUFFIXES,
    JSONL_SUFFIXES,
    OLD_OFFICE_TYPES,
    SUPPORTED,
    TEXT_SUFFIXES,
    UPLOAD_CAPTION,
    UPLOAD_TYPES,
    FileFormat,
    format_of,
    save_as_advice,
)
from memsys.ingest.readers.ocr import OCR_SECONDS_PER_PAGE, OcrSettings
from memsys.ingest.readers.reading import display_name, read_disk_file, read_paths
from memsys.ingest.readers.sources import (
    MAPPED_FIELDS,
    USUAL_NAMES,
    FieldMapping,
    FileReader,
    InputProblem,
    MissingColumnError,
    ReadLimits,
    ReadTally,
    SourceText,
)
from memsys.ingest.readers.structured import guess_delimiter
from memsys.ingest.readers.text import html_to_text
from memsys.ingest.readers.warmup import WARMUP_FORMAT, read_warmup_texts
from memsys.spool import UnsafeNameError, is_safe_relative_name, spool_path

__all__ = [
    "CSV_SUFFIXES",
    "FORMATS",
    "HTML_SUFFIXES",
    "JSONL_SUFFIXES",
    "MAPPED_FIELDS",
    "OCR_SECONDS_PER_PAGE",
    "PREFERRED_ENCODINGS",
    "SUPPORTED",
    "TEXT_SUFFIXES",
    "UPLOAD_CAPTION",
    "UPLOAD_TYPES",
    "OLD_OFFICE_TYPES",
    "save_as_advice",
    "USUAL_NAMES",
    "WARMUP_FORMAT",
    "FieldMapping",
    "FileReader",
    "FileFormat",
    "InputProblem",
    "MissingColumnError",
    "OcrSettings",
    "ReadLimits",
    "ReadTally",
    "SourceText",
    "UndecodableError",
    "UnsafeNameError",
    "decode_bytes",
    "display_name",
    "detect_encoding",
    "format_of",
    "guess_delimiter",
    "has_columns",
    "html_to_text",
    "is_safe_relative_name",
    "read_disk_file",
    "read_paths",
    "read_warmup_texts",
    "spool_path",
    "structured_columns",
]

"""The columns a file offers for a `FieldMapping`: the header of a csv/tsv file or of a
workbook's sheets, or the keys of a jsonl file's first records, read with the same
encoding and delimiter the import uses. The Import page asks before anything is imported.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from memsys.ingest.readers.encoding import UndecodableError, detect_encoding, first_block
from memsys.ingest.readers.formats import COLUMN_SUFFIXES, CSV_SUFFIXES, SHEET_SUFFIXES
from memsys.ingest.readers.sheets import sheet_columns
from memsys.ingest.readers.structured import delimiter_of

_SAMPLE_RECORDS = 50


def has_columns(path: Path | str) -> bool:
    """True for a file whose columns (csv) or keys (jsonl) can be mapped to memory fields."""
    return Path(path).suffix.lower() in COLUMN_SUFFIXES


def structured_columns(path: Path | str) -> list[str]:
    """Header names of a csv/tsv file or of a workbook's sheets, or the keys of the first
    records of a jsonl file, read from the file's first block; [] when the file has none
    that can be read (the import will say why)."""
    path = Path(path)
    if path.suffix.lower() in SHEET_SUFFIXES:
        return sheet_columns(path)
    with path.open("rb") as f:
        sample = first_block(f)
    try:
        text = sample.decode(detect_encoding(sample), errors="replace")
    except UndecodableError:
        return []
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        first_line = text.split("\n", 1)[0]
        try:
            header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter_of(suffix, first_line)), [])
        except csv.Error:
            return []
        return [h.strip().lstrip("\ufeff") for h in header if h.strip()]
    keys: dict[str, None] = {}
    for line in text.splitlines()[:_SAMPLE_RECORDS]:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            keys.update(dict.fromkeys(str(k) for k in record))
    return list(keys)

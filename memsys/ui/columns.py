"""The column names of an uploaded csv/tsv/jsonl file, for the Import page's field
mapping. Reads only the first block of the file."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

# The readers' own delimiter guess, so the columns offered are the columns the import sees.
from memsys.ingest.readers import CSV_SUFFIXES, JSONL_SUFFIXES, UndecodableError, _guess_delimiter, detect_encoding

STRUCTURED_SUFFIXES = CSV_SUFFIXES | JSONL_SUFFIXES
_SAMPLE_BYTES = 64 * 1024
_SAMPLE_RECORDS = 50


def is_structured(path: Path) -> bool:
    return path.suffix.lower() in STRUCTURED_SUFFIXES


def columns_in(path: Path) -> list[str]:
    """Header names of a csv/tsv file, or the keys of the first records of a jsonl file;
    [] when the file has none that can be read (the import will say why)."""
    with path.open("rb") as f:
        sample = f.read(_SAMPLE_BYTES)
    if len(sample) == _SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]
    try:
        text = sample.decode(detect_encoding(sample), errors="replace")
    except UndecodableError:
        return []
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        first_line = text.split("\n", 1)[0]
        delimiter = "\t" if suffix == ".tsv" else _guess_delimiter(first_line)
        try:
            header = next(csv.reader(io.StringIO(first_line), delimiter=delimiter), [])
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

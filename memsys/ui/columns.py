"""The column names of an uploaded csv/tsv/jsonl file, for the Import page's field
mapping: the structured readers' own discovery, so the columns offered are the columns the
import sees."""
from __future__ import annotations

from pathlib import Path

from memsys.ingest.readers import has_columns, structured_columns


def is_structured(path: Path) -> bool:
    return has_columns(path)


def columns_in(path: Path) -> list[str]:
    """Header names of a csv/tsv file, or the keys of the first records of a jsonl file;
    [] when the file has none that can be read (the import will say why)."""
    return structured_columns(path)

"""Structured records: csv/tsv (a row at a time), jsonl (a line at a time) and json (a list
of records, or an object holding one). Each record's fields are mapped to memory fields by
a `FieldMapping`; a bad row or record is one problem and the rest of the file still goes in.
`structured_columns` tells the Import page which columns a file offers for that mapping.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from memsys.ingest.readers.encoding import (
    BAD_BYTES,
    UndecodableError,
    bad_bytes_reason,
    detect_encoding,
    first_block,
    normalise_text,
    open_text,
    text_of,
)
from memsys.ingest.readers.formats import COLUMN_SUFFIXES, CSV_SUFFIXES, SHEET_SUFFIXES
from memsys.ingest.readers.sources import (
    FieldMapping,
    InputProblem,
    Item,
    MissingColumnError,
    ReadContext,
    SourceText,
)

_SAMPLE_RECORDS = 50


def guess_delimiter(line: str) -> str:
    """The delimiter of a csv file told from its header line: the most frequent of , ; tab |
    (a comma when none occurs)."""
    counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _delimiter(suffix: str, first_line: str) -> str:
    return "\t" if suffix == ".tsv" else guess_delimiter(first_line)


def has_columns(path: Path | str) -> bool:
    """True for a file whose columns (csv) or keys (jsonl) can be mapped to memory fields."""
    return Path(path).suffix.lower() in COLUMN_SUFFIXES


def structured_columns(path: Path | str) -> list[str]:
    """Header names of a csv/tsv file or of a workbook's sheets, or the keys of the first
    records of a jsonl file,
    read from the file's first block with the same encoding and delimiter the import uses;
    [] when the file has none that can be read (the import will say why)."""
    path = Path(path)
    if path.suffix.lower() in SHEET_SUFFIXES:
        # Imported here: the sheet reader uses this module's row mapping.
        from memsys.ingest.readers.sheets import sheet_columns

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
            header = next(csv.reader(io.StringIO(first_line), delimiter=_delimiter(suffix, first_line)), [])
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


def read_csv(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    stream, encoding = open_text(item)
    # The csv module's per-field limit (128 KiB) is process-wide; a long text cell is normal.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    with stream:
        first_line = stream.readline()
        delimiter = _delimiter(item.suffix, first_line)
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
            columns = ctx.mapping.columns(header)
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
            if any(BAD_BYTES.search(cell) for cell in row):
                yield InputProblem(where, bad_bytes_reason(encoding))
            elif len(row) != len(header):
                yield InputProblem(where, f"has {len(row)} values but the header has {len(header)} columns")
            else:
                yield map_row(row, index, columns, ctx.mapping, item.name, f"row {row_number}")
    if row_number == 1:
        yield InputProblem(item.name, "has a header row but no data rows")


def map_row(
    row: Sequence[str], index: Mapping[str, int], columns: Mapping[str, str], mapping: FieldMapping, name: str, where: str
) -> SourceText | InputProblem:
    """One row of a table (csv, a spreadsheet) as a piece located at `where` ("row 7"):
    the mapped content column as text, the other mapped columns as memory fields."""
    content = normalise_text(row[index["content"]]).strip()
    if not content:
        return InputProblem(f"{name} {where}", f"has no content (column {columns['content']!r} is empty)")
    fields: dict[str, Any] = {}
    for field_name, i in index.items():
        value = row[i].strip()
        if field_name == "content" or not value:
            continue
        if field_name == "tags":
            tags = _parse_tags(value, mapping.tag_separator)
            if isinstance(tags, str):
                return InputProblem(f"{name} {where}", tags)
            fields["tags"] = tags
        else:
            fields[field_name] = value
    return SourceText(content, name, where, fields)


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
    content = normalise_text(content).strip()
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


def read_jsonl(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    stream, encoding = open_text(item)
    records = 0
    with stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            records += 1
            where = f"{item.name} line {line_number}"
            if BAD_BYTES.search(line):
                yield InputProblem(where, bad_bytes_reason(encoding))
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                yield InputProblem(where, f"is not valid JSON: {e.msg} at column {e.colno}")
                continue
            yield _map_record(record, ctx.mapping, item.name, f"line {line_number}")
    if not records:
        yield InputProblem(item.name, "is empty (only blank lines)")


# A top-level object holding the records under one of these keys is a list of records.
_LIST_KEYS = ("memories", "records", "items", "documents", "data")


def read_json(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    text = text_of(item, ctx.limits)
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
            yield _map_record(data, ctx.mapping, item.name, "")
            return
        data = data[key]
    if not isinstance(data, list):
        yield InputProblem(item.name, f"is {_json_kind(data)}; expected a list of records or an object")
        return
    if not data:
        yield InputProblem(item.name, "has an empty list of records")
    for number, record in enumerate(data, start=1):
        yield _map_record(record, ctx.mapping, item.name, f"item {number}")

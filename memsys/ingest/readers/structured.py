"""Structured records: csv/tsv (a row at a time), jsonl (a line at a time) and json (a list
of records, or an object holding one). Each record's fields are mapped to memory fields by
a `FieldMapping`; a bad row or record is one problem and the rest of the file still goes in.
A table's row becomes a piece by `rows.map_row`, as a spreadsheet's does.
"""
from __future__ import annotations

import csv
import itertools
import json
import re
from typing import Any, Callable, Iterator

from memsys.ingest.readers.encoding import (
    BAD_BYTES,
    normalise_text,
    open_text,
    replace_bad_bytes,
    replaced_warning,
    text_of,
)
from memsys.ingest.readers.rows import map_row
from memsys.ingest.readers.sources import (
    FieldMapping,
    InputProblem,
    Item,
    LimitError,
    MissingColumnError,
    ReadContext,
    ReadLimits,
    SourceText,
    plain_failure,
)


def guess_delimiter(line: str) -> str:
    """The delimiter of a csv file told from its header line: the most frequent of , ; tab |
    (a comma when none occurs)."""
    counts = {d: line.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def delimiter_of(suffix: str, first_line: str) -> str:
    """The delimiter of a csv/tsv file: a tab for .tsv, else told from its header line."""
    return "\t" if suffix == ".tsv" else guess_delimiter(first_line)


def read_csv(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    stream, guess = open_text(item)
    if guess.uncertain:
        yield InputProblem(item.name, guess.uncertain, warning=True)
    replaced = 0
    # The csv module's per-field limit is process-wide (readers run in their own processes).
    csv.field_size_limit(ctx.limits.max_field_bytes)
    with stream:
        first_line = stream.readline()
        delimiter = delimiter_of(item.suffix, first_line)
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
            if row_number - 1 > ctx.limits.max_records:
                raise LimitError(f"has more than {ctx.limits.max_records:,} rows; the limit is {ctx.limits.max_records:,} "
                                 "per file (the rows before it were read)")
            if not any(cell.strip() for cell in row):
                continue
            if any(BAD_BYTES.search(cell) for cell in row):
                fixed = [replace_bad_bytes(cell) for cell in row]
                row, replaced = [cell for cell, _ in fixed], replaced + sum(n for _, n in fixed)
            if len(row) != len(header):
                yield InputProblem(where, f"has {len(row)} values but the header has {len(header)} columns")
            else:
                yield _one_record(lambda: map_row(row, index, columns, ctx.mapping, item.name, f"row {row_number}"), where)
    if replaced:
        yield replaced_warning(item.name, guess, replaced)
    if row_number == 1:
        yield InputProblem(item.name, "has a header row but no data rows")


def _one_record(read: Callable[[], SourceText | InputProblem], where: str) -> SourceText | InputProblem:
    """One row, line or record: whatever goes wrong in it is its own problem."""
    try:
        return read()
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - one bad record costs only itself
        return InputProblem(where, plain_failure(e))


def _check_depth(value: Any, limit: int) -> None:
    """Raise LimitError when lists/objects nest deeper than `limit` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, (list, dict)):
            if depth > limit:
                raise LimitError(f"nests lists or objects more than {limit} levels deep; the limit is {limit}")
            stack.extend((v, depth + 1) for v in (current.values() if isinstance(current, dict) else current))


def _map_record(record: Any, mapping: FieldMapping, name: str, where: str, limits: ReadLimits | None = None) -> SourceText | InputProblem:
    """One json/jsonl record: an object mapped by field names, or a bare string as content."""
    if limits is not None:
        try:
            _check_depth(record, limits.max_json_depth)
        except LimitError as e:
            return InputProblem(f"{name} {where}".strip(), str(e))
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
    if isinstance(fields.get("record_id"), int) and not isinstance(fields["record_id"], bool):
        fields["record_id"] = str(fields["record_id"])  # {"id": 12}: a number is an id too
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
    stream, guess = open_text(item)
    if guess.uncertain:
        yield InputProblem(item.name, guess.uncertain, warning=True)
    records = replaced = 0
    with stream:
        for line_number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            records += 1
            where = f"{item.name} line {line_number}"
            if records > ctx.limits.max_records:
                raise LimitError(f"has more than {ctx.limits.max_records:,} records; the limit is "
                                 f"{ctx.limits.max_records:,} per file (the lines before it were read)")
            if BAD_BYTES.search(line):
                line, n = replace_bad_bytes(line)
                replaced += n
            yield _one_record(lambda: _jsonl_line(line, ctx, item.name, line_number), where)
    if replaced:
        yield replaced_warning(item.name, guess, replaced)
    if not records:
        yield InputProblem(item.name, "is empty (only blank lines)")


def _jsonl_line(line: str, ctx: ReadContext, name: str, line_number: int) -> SourceText | InputProblem:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return InputProblem(f"{name} line {line_number}", f"is not valid JSON: {e.msg} at column {e.colno}")
    return _map_record(record, ctx.mapping, name, f"line {line_number}", ctx.limits)


# A top-level object holding the records under one of these keys is a list of records.
_LIST_KEYS = ("memories", "records", "items", "documents", "data")


def read_json(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    text, warnings = text_of(item, ctx.limits)
    yield from warnings
    if isinstance(text, InputProblem):
        yield text
        return
    start = len(text) - len(text.lstrip())
    if text.startswith("[", start):
        # A list of records is read one record at a time: a list of millions of small
        # records never becomes millions of objects at once.
        yield from _json_list(text, start + 1, item, ctx)
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
    if len(data) > ctx.limits.max_records:
        raise LimitError(f"has {len(data):,} records; the limit is {ctx.limits.max_records:,} per file")
    for number, record in enumerate(data, start=1):
        yield _map_record(record, ctx.mapping, item.name, f"item {number}", ctx.limits)


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _json_list(text: str, at: int, item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    """The records of a top-level JSON list starting after its '[' at `at`."""
    number = 0
    at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
    if text.startswith("]", at):
        yield InputProblem(item.name, "has an empty list of records")
        return
    while True:
        number += 1
        if number > ctx.limits.max_records:
            raise LimitError(f"has more than {ctx.limits.max_records:,} records; the limit is "
                             f"{ctx.limits.max_records:,} per file (the records before it were read)")
        try:
            record, at = _DECODER.raw_decode(text, at)
        except json.JSONDecodeError as e:
            yield InputProblem(item.name, f"is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}")
            return
        yield _one_record(lambda: _map_record(record, ctx.mapping, item.name, f"item {number}", ctx.limits),
                          f"{item.name} item {number}")
        at = _SPACE.match(text, at).end()  # type: ignore[union-attr]
        if text.startswith(",", at):
            at = _SPACE.match(text, at + 1).end()  # type: ignore[union-attr]
        elif text.startswith("]", at):
            return
        else:
            yield InputProblem(item.name, f"is not valid JSON: expected ',' or ']' after item {number}")
            return

"""One row of a table as a piece of text: the mapped content column as the text, the other
mapped columns as memory fields. Shared by every reader of tables (csv/tsv, spreadsheets),
so a row means the same wherever it comes from.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from memsys.ingest.readers.encoding import normalise_text
from memsys.ingest.readers.sources import FieldMapping, InputProblem, SourceText


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
        except RecursionError:
            return "has a tags cell nested too deeply to read"
        except json.JSONDecodeError:
            return f"has a tags cell that starts like a JSON list but is not one: {cell[:60]!r}"
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return "has a tags cell whose JSON is not a list of strings"
        return tags
    return [t.strip() for t in cell.split(separator) if t.strip()]

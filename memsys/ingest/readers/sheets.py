"""Spreadsheets: .xlsx workbooks, streamed with openpyxl's read-only mode (a large workbook
is never loaded whole). Each sheet is a table whose first non-empty row is its header:
- with a content column (named in the mapping or by a usual name, as in csv), one piece
  per row, the other mapped columns filling memory fields, located "sheet Sales row 7";
- without one, blocks of rows written as "Header: value | Header: value" lines, located
  "sheet Sales rows 2-31", so a plain table is still searchable.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any, Iterator, Sequence

from memsys.ingest.readers.rows import map_row
from memsys.ingest.readers.sources import (
    USUAL_NAMES,
    InputProblem,
    Item,
    MissingColumnError,
    ReadContext,
    SourceText,
    check_expansion,
    parser_said,
    read_bytes,
)

# A block of rows (tables without a content column) ends at whichever comes first.
BLOCK_ROWS = 30
BLOCK_CHARACTERS = 1500
# Column discovery looks this far down each sheet for its header row.
_HEADER_SEARCH_ROWS = 50


def read_xlsx(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    workbook = _open(item, ctx)
    if isinstance(workbook, InputProblem):
        yield workbook
        return
    found = False
    try:
        for sheet in workbook.worksheets:
            for piece in _read_sheet(sheet, item.name, ctx):
                found = found or isinstance(piece, SourceText)
                yield piece
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds of error on damaged parts
        yield InputProblem(item.name, f"is damaged and could not be read as a workbook ({parser_said(e)})")
        return
    finally:
        workbook.close()
    if not found:
        yield InputProblem(item.name, "has no text in any of its sheets")


def sheet_columns(path: Path) -> list[str]:
    """The header names of every sheet of a workbook, each once, in order; [] when it
    cannot be opened (the import will say why)."""
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception:  # noqa: BLE001 - a damaged workbook offers no columns; the import reports it
        return []
    names: dict[str, None] = {}
    try:
        for sheet in workbook.worksheets:
            rows = sheet.iter_rows(min_row=1, max_row=_HEADER_SEARCH_ROWS, values_only=True)
            header = next((r for r in rows if any(_cell_text(v) for v in r)), None)
            if header is not None:
                names.update(dict.fromkeys(n for n in _header(header) if n))
    finally:
        workbook.close()
    return list(names)


def _open(item: Item, ctx: ReadContext) -> Any:
    import openpyxl

    # On disk the workbook is streamed from the file; a zip entry is read into memory
    # first (within the file size limit) because openpyxl needs to seek.
    source = item.path if item.path is not None else io.BytesIO(read_bytes(item, ctx.limits.max_file_bytes))
    check_expansion(source, ctx.limits.max_file_bytes)
    try:
        return openpyxl.load_workbook(source, read_only=True, data_only=True)
    except Exception as e:  # noqa: BLE001 - openpyxl raises many kinds of error on damaged files
        return InputProblem(
            item.name,
            f"is not a valid .xlsx workbook (password-protected, an old .xls renamed, or damaged: {parser_said(e)})",
        )


def _read_sheet(sheet: Any, name: str, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    title = sheet.title
    rows = enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1)
    header: list[str] = []
    for _, values in rows:
        if any(_cell_text(v) for v in values):
            header = _header(values)
            break
    if not header:
        return  # an empty sheet
    mapping = ctx.mapping
    has_content = mapping.content is not None or any(h.strip().lower() in USUAL_NAMES["content"] for h in header)
    if not has_content:
        yield from _blocks(rows, header, name, title)
        return
    try:
        columns = mapping.columns(header)
    except MissingColumnError as e:
        yield InputProblem(f"{name} sheet {title}", str(e))
        return
    index = {f: header.index(column) for f, column in columns.items()}
    for number, values in rows:
        cells = [_cell_text(v) for v in values]
        if not any(cells):
            continue
        cells += [""] * (len(header) - len(cells))  # read-only rows stop at their last value
        yield map_row(cells, index, columns, mapping, name, f"sheet {title} row {number}")


def _blocks(rows: Iterator[tuple[int, Sequence[Any]]], header: list[str], name: str, title: str) -> Iterator[SourceText]:
    lines: list[str] = []
    first = last = 0
    size = 0
    for number, values in rows:
        pairs = [f"{h}: {t}" for h, t in zip(header, (_cell_text(v) for v in values)) if t]
        if not pairs:
            continue
        if not lines:
            first = number
        line = " | ".join(pairs)
        lines.append(line)
        last, size = number, size + len(line)
        if len(lines) >= BLOCK_ROWS or size >= BLOCK_CHARACTERS:
            yield _block(lines, name, title, first, last)
            lines, size = [], 0
    if lines:
        yield _block(lines, name, title, first, last)


def _block(lines: list[str], name: str, title: str, first: int, last: int) -> SourceText:
    where = f"sheet {title} row {first}" if first == last else f"sheet {title} rows {first}-{last}"
    return SourceText("\n".join(lines), name, where)


def _header(values: Sequence[Any]) -> list[str]:
    """Header names; an unnamed column is called by its letter ("column C")."""
    from openpyxl.utils import get_column_letter

    names = [_cell_text(v) for v in values]
    while names and not names[-1]:
        names.pop()  # a sheet's used range often runs past its last named column
    return [n or f"column {get_column_letter(i)}" for i, n in enumerate(names, start=1)]


def _cell_text(value: Any) -> str:
    """A cell as people read it: 42 not 42.0, dates without a midnight time."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value).replace("\r\n", "\n").strip()

"""Slides: .pptx decks read with python-pptx, one piece per slide located "slide 3": the
title first, then the other text (text boxes, tables cell by cell, grouped shapes) from top
to bottom and left to right, then the speaker notes after a "Notes:" line.
"""
from __future__ import annotations

import io
from typing import Any, Iterable, Iterator

from memsys.ingest.readers.encoding import normalise_text
from memsys.ingest.readers.sources import (
    InputProblem, Item, ReadContext, SourceText, check_expansion, parser_said, read_bytes,
)


def read_pptx(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    from pptx import Presentation

    source = item.path if item.path is not None else io.BytesIO(read_bytes(item, ctx.limits.max_file_bytes))
    check_expansion(source, ctx.limits.max_file_bytes)
    try:
        deck = Presentation(source)
        slides = [(number, slide_text(slide)) for number, slide in enumerate(deck.slides, start=1)]
    except Exception as e:  # noqa: BLE001 - python-pptx raises many kinds of error on damaged files
        yield InputProblem(
            item.name,
            f"is not a valid .pptx deck (password-protected, an old .ppt renamed, or damaged: {parser_said(e)})",
        )
        return
    found = False
    for number, text in slides:
        if text:
            found = True
            yield SourceText(text, item.name, f"slide {number}")
    if not found:
        yield InputProblem(item.name, f"has no text on any of its {len(slides)} slide(s) (images only?)")


def slide_text(slide: Any) -> str:
    """A slide's text: title, the other shapes in reading order, then its speaker notes."""
    title = slide.shapes.title
    parts = [_shape_text(title)] if title is not None else []
    parts += [_shape_text(s) for s in _reading_order(s for s in slide.shapes if title is None or s.shape_id != title.shape_id)]
    if slide.has_notes_slide:
        notes = slide.notes_slide.notes_text_frame
        if notes is not None and notes.text.strip():
            parts.append("Notes: " + notes.text.strip())
    return normalise_text("\n\n".join(p for p in parts if p)).strip()


def _reading_order(shapes: Iterable[Any]) -> list[Any]:
    # Shapes are stored in drawing order; people read top to bottom, left to right.
    # A shape without a position (a placeholder inheriting it) keeps its drawing order.
    return sorted(shapes, key=lambda s: (s.top is None, s.top or 0, s.left or 0))


def _shape_text(shape: Any) -> str:
    from pptx.shapes.group import GroupShape

    if isinstance(shape, GroupShape):
        return "\n".join(t for t in (_shape_text(s) for s in _reading_order(shape.shapes)) if t)
    if getattr(shape, "has_table", False):
        rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in shape.table.rows]
        return "\n".join(r for r in rows if r.strip(" |"))
    if getattr(shape, "has_text_frame", False):
        return shape.text_frame.text.strip()
    return ""

"""Word documents: .docx read whole from its XML (through python-docx): body paragraphs,
tables (every cell, in order: "Yes | Yes" stays two cells), text boxes where they are
anchored, content controls, headers, footers, footnotes and endnotes.

The body is cut at its headings into one piece per section, located by its heading path,
"2 Setup > 2.1 Install", so every chunk of a section says where it sits (text before the
first heading has no location). The path is the headings' text as written; numbers that
Word adds by automatic numbering are not in the text and not in the path. Headers,
footers and notes follow as pieces located "header", "footer", "footnotes", "endnotes".
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

from memsys.ingest.readers.encoding import normalise_text
from memsys.ingest.readers.sources import (
    InputProblem, Item, ReadContext, SourceText, check_expansion, parser_said, read_bytes,
)

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
# Subtrees that are not the paragraph's own text: properties (whose w:tab are tab stops),
# text boxes (read as blocks of their own) and the fallback copy of a drawing (which
# repeats the text box of its mc:Choice for old readers).
_NOT_RUN_TEXT = frozenset({_W + "pPr", _W + "rPr", _W + "txbxContent", _MC + "Fallback"})
_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)
_PATH_HEADING_CHARACTERS = 60


@dataclass
class _Section:
    path: list[tuple[int, str]] = field(default_factory=list)  # (level, heading) from the top
    blocks: list[str] = field(default_factory=list)

    @property
    def location(self) -> str:
        return " > ".join(h[:_PATH_HEADING_CHARACTERS] for _, h in self.path)


def read_docx(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    import docx

    data = read_bytes(item, ctx.limits.max_file_bytes)
    if not data.startswith(b"PK"):
        yield InputProblem(
            item.name, "is not a valid .docx file (password-protected, an old .doc renamed, or damaged)"
        )
        return
    check_expansion(io.BytesIO(data), ctx.limits.max_file_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
        reader = _DocxText(_heading_levels(document))
        sections = reader.sections(document.element.body)
        extras = [("header", reader.headers_footers(document, "header")),
                  ("footer", reader.headers_footers(document, "footer")),
                  ("footnotes", reader.notes(document, "footnotes")),
                  ("endnotes", reader.notes(document, "endnotes"))]
    except Exception as e:  # noqa: BLE001 - python-docx and lxml raise many kinds of error on damaged files
        yield InputProblem(item.name, f"is damaged and could not be read as a .docx ({parser_said(e)})")
        return
    found = False
    for section, following in zip(sections, sections[1:] + [None]):
        if len(section.blocks) == 1 and section.path and following and following.path[:len(section.path)] == section.path:
            continue  # only a heading, whose subsections carry it in their path ("2 Setup" > "2.1 Install")
        text = normalise_text("\n\n".join(section.blocks)).strip()
        if text:
            found = True
            yield SourceText(text, item.name, section.location)
    for where, blocks in extras:
        text = normalise_text("\n\n".join(blocks)).strip()
        if text:
            found = True
            yield SourceText(text, item.name, where)
    if not found:
        yield InputProblem(item.name, "has no text (images or empty pages only?)")


def _heading_levels(document: Any) -> dict[str, int]:
    """Paragraph style id -> heading level (1 for "Heading 1"), following each style's
    base styles and outline level, so a custom style based on a heading is one too."""
    levels: dict[str, int] = {}
    for style in document.styles:
        level = None
        current = style
        while current is not None and level is None:
            match = _HEADING_STYLE.match(current.name or "")
            if match:
                level = int(match.group(1))
            else:
                outline = current.element.find(f"{_W}pPr/{_W}outlineLvl")
                if outline is not None and (outline.get(_W + "val") or "").isdigit() and int(outline.get(_W + "val")) < 9:
                    level = int(outline.get(_W + "val")) + 1
            current = getattr(current, "base_style", None)
        if level is not None and style.style_id:
            levels[style.style_id] = level
    return levels


class _DocxText:
    """Text of WordprocessingML elements, block by block."""

    def __init__(self, heading_levels: dict[str, int]) -> None:
        self.heading_levels = heading_levels

    def sections(self, body: Any) -> list[_Section]:
        sections = [_Section()]
        for level, text in self.blocks(body):
            if level:
                path = [h for h in sections[-1].path if h[0] < level] + [(level, " ".join(text.split()))]
                sections.append(_Section(path))
            sections[-1].blocks.append(text)
        return sections

    def blocks(self, parent: Any) -> Iterator[tuple[int, str]]:
        """(heading level or 0, text) for each paragraph and table row, in document order."""
        for child in parent:
            tag = child.tag
            if tag == _W + "p":
                yield from self._paragraph(child)
            elif tag == _W + "tbl":
                for row in child.iter(_W + "tr"):
                    if row.getparent() is not child:
                        continue  # a nested table's rows are read inside their cell
                    cells = [self._cell(cell) for cell in row if cell.tag == _W + "tc"]
                    if any(cells):
                        yield 0, " | ".join(cells)
            elif tag in (_W + "sdt", _W + "customXml", _W + "sdtContent"):
                yield from self.blocks(child.find(_W + "sdtContent") if tag == _W + "sdt" else child)

    def _cell(self, cell: Any) -> str:
        merge = cell.find(f"{_W}tcPr/{_W}vMerge")
        if merge is not None and merge.get(_W + "val") != "restart":
            return ""  # the lower part of a vertically merged cell; its text is in the top part
        return " ".join(" ".join(text.split()) for _, text in self.blocks(cell) if text.strip())

    def _paragraph(self, p: Any) -> Iterator[tuple[int, str]]:
        parts: list[str] = []
        _run_text(p, parts)
        text = "".join(parts).strip()
        if text:
            style = p.find(f"{_W}pPr/{_W}pStyle")
            level = self.heading_levels.get(style.get(_W + "val"), 0) if style is not None else 0
            yield level, text
        for box in _text_boxes(p):
            for _, box_text in self.blocks(box):
                yield 0, box_text

    def headers_footers(self, document: Any, kind: str) -> list[str]:
        """The distinct text of every section's headers (or footers), first, even and default."""
        seen: dict[str, None] = {}
        for section in document.sections:
            for part in (getattr(section, f"first_page_{kind}"), getattr(section, f"even_page_{kind}"), getattr(section, kind)):
                if part.is_linked_to_previous:
                    continue  # no definition of its own
                text = "\n".join(t for _, t in self.blocks(part._element))
                if text.strip():
                    seen.setdefault(text, None)
        return list(seen)

    def notes(self, document: Any, kind: str) -> list[str]:
        """Footnotes or endnotes as "[id] text", the separators Word keeps there left out."""
        from docx.opc.constants import RELATIONSHIP_TYPE as RT
        from lxml import etree

        reltype = RT.FOOTNOTES if kind == "footnotes" else RT.ENDNOTES
        part = next((r.target_part for r in document.part.rels.values() if r.reltype == reltype and not r.is_external), None)
        if part is None:
            return []
        element = getattr(part, "element", None)
        if element is None:  # a part python-docx loads as bytes: parsed without entities or network
            element = etree.fromstring(part.blob, etree.XMLParser(resolve_entities=False, no_network=True))
        out = []
        for note in element.iterchildren(_W + kind[:-1]):
            if note.get(_W + "type") in ("separator", "continuationSeparator", "continuationNotice"):
                continue
            text = " ".join(t for _, t in self.blocks(note))
            if text.strip():
                out.append(f"[{note.get(_W + 'id')}] {text}")
        return out


def _run_text(element: Any, out: list[str]) -> None:
    for child in element:
        tag = child.tag
        if tag in _NOT_RUN_TEXT:
            continue
        if tag == _W + "t":
            out.append(child.text or "")
        elif tag == _W + "tab":
            out.append("\t")
        elif tag in (_W + "br", _W + "cr"):
            out.append("\n")
        elif tag == _W + "noBreakHyphen":
            out.append("-")
        elif tag in (_W + "footnoteReference", _W + "endnoteReference"):
            out.append(f"[{child.get(_W + 'id')}]")
        else:
            _run_text(child, out)


def _text_boxes(element: Any) -> Iterator[Any]:
    """The text boxes anchored in a paragraph, each once (not the fallback copies)."""
    for child in element:
        if child.tag == _MC + "Fallback":
            continue
        if child.tag == _W + "txbxContent":
            yield child
        else:
            yield from _text_boxes(child)

"""Plain documents: text (txt, md, and any file whose bytes are text), HTML (visible text,
block elements on lines of their own), PDF (one piece per page with a text layer) and
Word .docx (paragraphs and tables in document order).
"""
from __future__ import annotations

import io
from html.parser import HTMLParser
from typing import Iterator

from memsys.ingest.readers.encoding import normalise_text, text_of
from memsys.ingest.readers.sources import InputProblem, Item, ReadContext, SourceText, read_bytes


def read_text(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    text = text_of(item, ctx.limits)
    if isinstance(text, InputProblem):
        yield text
    else:
        yield SourceText(text, item.name, locate_lines=True)


class _HTMLText(HTMLParser):
    """Visible text of an HTML page, with block elements on lines of their own."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BLOCKS = frozenset(
        {"p", "div", "section", "article", "header", "footer", "main", "nav", "aside", "ul", "ol",
         "table", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "form",
         "figure", "figcaption", "dl", "dt", "dd", "title", "body"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skipping:
            self._skipping -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skipping:
            self.parts.append(data)

    def text(self) -> str:
        lines = (" ".join(line.split()) for line in "".join(self.parts).split("\n"))
        out: list[str] = []
        for line in lines:
            if line or (out and out[-1]):
                out.append(line)
        return "\n".join(out).strip()


def html_to_text(html: str) -> str:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    return parser.text()


def read_html(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    html = text_of(item, ctx.limits)
    if isinstance(html, InputProblem):
        yield html
        return
    text = html_to_text(html)
    if not text:
        yield InputProblem(item.name, "has no visible text")
    else:
        yield SourceText(text, item.name)


def read_docx(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    import docx
    from docx.table import Table

    data = read_bytes(item, ctx.limits.max_file_bytes)
    if not data.startswith(b"PK"):
        yield InputProblem(
            item.name, "is not a valid .docx file (password-protected, an old .doc renamed, or damaged)"
        )
        return
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    cells = [c.text.strip() for c in row.cells]
                    if any(cells):
                        blocks.append(" | ".join(dict.fromkeys(cells)))
            elif block.text.strip():
                blocks.append(block.text.strip())
    except Exception as e:  # noqa: BLE001 - python-docx raises many kinds of error on damaged files
        yield InputProblem(item.name, f"is damaged and could not be read as a .docx ({type(e).__name__}: {e})")
        return
    text = normalise_text("\n\n".join(blocks))
    if not text.strip():
        yield InputProblem(item.name, "has no text (images or empty pages only?)")
    else:
        yield SourceText(text, item.name)

"""Plain documents: text (txt, md, and any file whose bytes are text) and HTML (the main
content of a page, without its navigation and footer).
"""
from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Iterator

from memsys.ingest.readers.encoding import normalise_text, text_of
from memsys.ingest.readers.sources import InputProblem, Item, ReadContext, SourceText


def read_text(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    text, warnings = text_of(item, ctx.limits)
    yield from warnings
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


_TITLE = re.compile(r"<title[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)


def page_text(html: str) -> str:
    """The main content of a web page: trafilatura drops navigation, menus, footers and
    cookie banners and keeps headings (as Markdown "#" lines) and tables; the page title
    leads. When it finds no main content, all visible text (`html_to_text`) is used."""
    import trafilatura

    main = trafilatura.extract(
        html, output_format="markdown", include_formatting=True, include_tables=True,
        include_comments=False, include_links=False, include_images=False, deduplicate=False,
    )
    if not main or not main.strip():
        return html_to_text(html)
    main = normalise_text(main).strip()
    found = _TITLE.search(html)
    title = " ".join(unescape(found.group(1)).split()) if found else ""
    if title and title not in main.split("\n", 1)[0]:
        main = f"{title}\n\n{main}"
    return main


def read_html(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    html, warnings = text_of(item, ctx.limits)
    yield from warnings
    if isinstance(html, InputProblem):
        yield html
        return
    text = page_text(html)
    if not text:
        yield InputProblem(item.name, "has no visible text")
    else:
        yield SourceText(text, item.name)

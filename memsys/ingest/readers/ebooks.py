"""E-books: .epub read with ebooklib (its XML parser does not resolve entities), one piece
per chapter in reading order (the spine), located "chapter 2: <title>" with the title from
the book's table of contents, or else the chapter's first line. The navigation document
(the table of contents itself) is not a chapter.
"""
from __future__ import annotations

import io
import posixpath
import warnings
from typing import Any, Iterator

from memsys.ingest.readers.text import html_to_text
from memsys.ingest.readers.encoding import UndecodableError, decode_bytes
from memsys.ingest.readers.sources import (
    InputProblem, Item, ReadContext, SourceText, check_expansion, parser_said, read_bytes,
)

_TITLE_CHARACTERS = 80


def read_epub(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    from ebooklib import ITEM_DOCUMENT, epub

    source = item.path if item.path is not None else io.BytesIO(read_bytes(item, ctx.limits.max_file_bytes))
    check_expansion(source, ctx.limits.max_file_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ebooklib warns about its own future defaults
            book = epub.read_epub(source, {"ignore_ncx": False})
        titles = _toc_titles(book.toc, {})
        documents = []
        for idref, _linear in book.spine:
            document = book.get_item_with_id(idref)
            if document is None or document.get_type() != ITEM_DOCUMENT or isinstance(document, epub.EpubNav):
                continue
            documents.append((document.get_name(), document.get_content()))
    except Exception as e:  # noqa: BLE001 - ebooklib raises many kinds of error on damaged books
        yield InputProblem(item.name, f"is not a valid .epub book (DRM-protected or damaged: {parser_said(e)})")
        return
    number = 0
    for name, content in documents:
        try:
            text = html_to_text(decode_bytes(content))
        except UndecodableError as e:
            yield InputProblem(f"{item.name} {name}", str(e))
            continue
        if not text:
            continue
        number += 1
        title = titles.get(name) or text.split("\n", 1)[0][:_TITLE_CHARACTERS]
        yield SourceText(text, item.name, f"chapter {number}: {title}")
    if not number:
        yield InputProblem(item.name, "has no chapter with text")


def _toc_titles(entries: Any, titles: dict[str, str]) -> dict[str, str]:
    """Chapter file -> its title in the table of contents (the first entry that names it)."""
    from ebooklib import epub

    for entry in entries:
        if isinstance(entry, tuple) and len(entry) == 2:  # (section, children)
            section, children = entry
            _toc_titles(children, titles)  # a chapter's own entry names it better than its part
            if getattr(section, "href", ""):
                titles.setdefault(_file(section.href), section.title)
        elif isinstance(entry, (epub.Link, epub.EpubHtml)):
            href = entry.href if isinstance(entry, epub.Link) else entry.file_name
            titles.setdefault(_file(href), entry.title)
    return titles


def _file(href: str) -> str:
    return posixpath.normpath(href.split("#", 1)[0])

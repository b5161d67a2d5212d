"""A search hit's text on screen: a snippet around the first place the query's words
occur, the words marked, everything else escaped so nothing in a memory renders as
Markdown or HTML."""
from __future__ import annotations

from memsys.engine import query_terms, term_spans
from components import format as fmt

MARK = ":orange-background[**{}**]"


def snippet(text: str, query: str, width: int = 400) -> str:
    """Markdown for up to `width` characters of `text`, starting a little before the first
    match of a query term, with every match in the window marked; "…" where text is cut."""
    spans = term_spans(text, query_terms(query))
    start = 0
    if spans and spans[0][0] > width // 4:
        start = spans[0][0] - width // 4
        space = text.rfind(" ", 0, start + 1)
        start = space + 1 if space > start - 30 else start
    end = min(len(text), start + width)
    parts, at = [], start
    for s, e in spans:
        if s < start or e > end:
            continue
        parts.append(fmt.plain(text[at:s]))
        parts.append(MARK.format(fmt.plain(text[s:e])))
        at = e
    parts.append(fmt.plain(text[at:end]))
    return ("…" if start else "") + "".join(parts) + ("…" if end < len(text) else "")

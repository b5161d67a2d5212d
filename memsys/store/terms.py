"""The words of a search in a memory's text: which query terms a hit really contains and
where, so keyword results hold their words (Weaviate's gse tokenizer matches pieces of an
English word, "zirconium" finds "zircon"-less filler) and snippets can mark them.

Terms follow Weaviate's `word` tokenization (letters and digits, lowercased) minus the
English stopwords BM25 leaves out; a run of Chinese or Japanese characters is a term of its
own, found as written or by its two-character pieces (most Chinese words are two
characters, and gse cuts the text the same way)."""
from __future__ import annotations

import re
from dataclasses import dataclass

# Weaviate's "en" stopword preset (BM25 ignores these words in a query).
STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then there "
    "these they this to was will with".split()
)
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_CJK_RUN = re.compile(f"[{_CJK}]+")
_WORD = re.compile(f"[^\\W_{_CJK}]+")


@dataclass(frozen=True)
class QueryTerms:
    """A query's words (lowercase) and its Chinese/Japanese runs."""

    words: tuple[str, ...]
    cjk: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.words + self.cjk

    def __bool__(self) -> bool:
        return bool(self.words or self.cjk)


def query_terms(query: str) -> QueryTerms:
    """The terms a keyword match must contain: "The history of Zirconium" -> ("history", "zirconium")."""
    words: list[str] = []
    for w in _WORD.findall(query.lower()):
        if w not in STOPWORDS and w not in words:
            words.append(w)
    cjk: list[str] = []
    for run in _CJK_RUN.findall(query):
        if run not in cjk:
            cjk.append(run)
    return QueryTerms(tuple(words), tuple(cjk))


def has_cjk(text: str) -> bool:
    """True when `text` holds a Chinese, Japanese or Korean character."""
    return _CJK_RUN.search(text) is not None


def term_spans(text: str, terms: QueryTerms) -> list[tuple[int, int]]:
    """Where the terms occur in `text`, as sorted, non-overlapping (start, end) spans: a word
    only as a whole word (any case), a CJK run as written or, failing that, by its
    two-character pieces."""
    spans: list[tuple[int, int]] = []
    lowered = text.lower()
    for word in terms.words:
        spans += [m.span() for m in re.finditer(rf"(?<![^\W_]){re.escape(word)}(?![^\W_])", lowered)]
    for run in terms.cjk:
        found = [m.span() for m in re.finditer(re.escape(run), text)]
        if not found and len(run) > 2:
            for i in range(len(run) - 1):
                found += [m.span() for m in re.finditer(re.escape(run[i:i + 2]), text)]
        spans += found
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def terms_found(text: str, terms: QueryTerms) -> tuple[str, ...]:
    """The query terms `text` contains (as the query wrote them, lowercased)."""
    return tuple(t for t in terms.all if term_spans(text, QueryTerms((t,), ()) if t in terms.words
                                                    else QueryTerms((), (t,))))

"""Search results that tell the truth, without a server: which query words a memory's text
really holds, hits kept or dropped by them, scores on one scale, and snippets that mark the
words and let nothing in a memory render as Markdown or HTML."""
from __future__ import annotations

import datetime as dt
import re

from components.snippets import MARK, snippet
from memsys.store.collection import truthful_hits
from memsys.store.records import StoredMemory
from memsys.store.terms import query_terms, term_spans, terms_found


def hit(content: str, score: float | None, matched_by: str = "keyword") -> StoredMemory:
    return StoredMemory(uuid="u", content=content, project="p", repo="r", agent="a", tags=(), source="s",
                        source_file="f.md", source_location="", chunk_index=0, content_hash="h",
                        created_at=dt.datetime(2026, 1, 1), score=score, matched_by=matched_by)


def test_query_terms_are_words_without_stopwords_and_cjk_runs() -> None:
    terms = query_terms("The history of Zirconium, and E4471 东京的观光")
    assert terms.words == ("history", "zirconium", "e4471")
    assert terms.cjk == ("东京的观光",)


def test_a_word_is_found_only_as_a_whole_word_in_any_case() -> None:
    terms = query_terms("zircon")
    assert terms_found("Zircon is a mineral.", terms) == ("zircon",)
    assert terms_found("Zirconium is an element.", terms) == ()
    assert term_spans("A ZIRCON, a zircon.", terms) == [(2, 8), (12, 18)]


def test_a_cjk_run_is_found_as_written_or_by_its_two_character_pieces() -> None:
    assert terms_found("东京的观光地很多", query_terms("东京观光")) == ("东京观光",)
    assert terms_found("大阪很好", query_terms("东京观光")) == ()


def test_a_keyword_search_keeps_only_hits_holding_a_query_word() -> None:
    hits = [hit("Nothing relevant here.", 11.76), hit("Zirconium is element 40.", 6.5), hit("zirconia tiles", 3.0)]
    kept = truthful_hits(hits, "zirconium", limit=10, keyword_only=True)
    assert [h.content for h in kept] == ["Zirconium is element 40."]
    assert kept[0].terms_found == ("zirconium",) and kept[0].match == 1.0


def test_a_meaning_search_keeps_every_hit_and_says_which_hold_the_words() -> None:
    hits = [hit("Titanium is a metal.", 0.9, "both"), hit("A river flows.", 0.45, "meaning")]
    kept = truthful_hits(hits, "titanium", limit=10, keyword_only=False)
    assert [h.terms_found for h in kept] == [("titanium",), ()]
    assert [h.match for h in kept] == [1.0, 0.5]  # one scale: a share of the best hit


def test_a_snippet_starts_near_the_first_match_and_marks_every_match() -> None:
    text = "filler " * 100 + "Zirconium is hard; zirconium is grey."
    shown = snippet(text, "zirconium", width=120)
    assert shown.startswith("…") and "filler filler" in shown
    assert shown.count(MARK.format("Zirconium")) == 1 and shown.count(MARK.format("zirconium")) == 1


def test_a_snippet_lets_nothing_in_the_memory_render_as_markdown_or_html() -> None:
    shown = snippet("<img src=x onerror=alert(1)> [link](http://evil) **bold** :red[x] zirconium", "zirconium")
    assert not re.search(r"(?<!\\)[<>]", shown) and "\\<img" in shown  # every < and > escaped
    assert "\\[link\\]" in shown and "\\*\\*bold\\*\\*" in shown and "\\:red\\[x\\]" in shown
    assert shown.endswith(MARK.format("zirconium"))

"""Token-aware chunking: cut a text into pieces the embedding model takes whole, with a
little overlap, preferring paragraph, then sentence, then clause and word boundaries, and
cutting inside a word only when a run of text has no boundary at all (CJK-aware: 。！？ end
sentences without a following space).

Tokens are counted by the model's own tokenizer (see `memsys.tokens`), once per sentence
rather than per character, and every chunk is checked against the limit before it is
returned, so the embedder never has to truncate.
"""
from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from memsys.config import ConfigError
from memsys.tokens import max_input_tokens, token_counter

# Defaults per model family: a chunk well under the model's limit is a better search hit
# than one that fills it, and leaves room for the check below never to fail.
LOCAL_DEFAULT = (400, 50)
OPENAI_DEFAULT = (1000, 100)
MIN_CHUNK_TOKENS = 16

# A paragraph break, a line break, a Western sentence end followed by a space, or a CJK
# sentence end (no space follows those in Chinese or Japanese), each with closing quotes.
_SENTENCE_END = re.compile(
    r"(?P<para>\n[ \t\r\f\v]*\n\s*)"
    r"|\n"
    r"|[.!?]+[\"'”’)\]]*(?=\s)"
    r"|[。！？；…．]+[”’」』）】〉》\"']*"
)
_CLAUSE_END = re.compile(r"[，、：；]|[,;:](?=\s)")
_WORD_END = re.compile(r"\s+")
# No token is longer than this many characters in practice; bounds the search of a hard cut.
_MAX_CHARS_PER_TOKEN = 32
# How often a chunk over the limit is split again, smaller, before giving up.
_MAX_RESPLITS = 8
# Texts whose cut a chunker remembers (by digest: 16 bytes and their offsets each), so a
# re-import of unchanged files in the same process (a reader worker kept in the pool, the
# dashboard's server) does not count their tokens again.
_REMEMBERED_CUTS = 50_000


@dataclass(frozen=True)
class ChunkSettings:
    """How long a chunk may be and how much consecutive chunks share, in model tokens."""

    max_tokens: int
    overlap_tokens: int

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or self.max_tokens < MIN_CHUNK_TOKENS:
            raise ConfigError(f"chunk max_tokens is {self.max_tokens!r}; it must be a whole number of at least {MIN_CHUNK_TOKENS}")
        if not isinstance(self.overlap_tokens, int) or not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ConfigError(
                f"chunk overlap_tokens is {self.overlap_tokens!r}; it must be a whole number "
                f"from 0 to half of max_tokens ({self.max_tokens // 2})"
            )

    @classmethod
    def for_model(cls, provider: str, model: str) -> "ChunkSettings":
        """The default for a model: 400/50 for the local e5 model (limit 512), 1000/100 for OpenAI's."""
        limit = max_input_tokens(provider, model)
        size, overlap = LOCAL_DEFAULT if limit <= LOCAL_DEFAULT[0] * 2 else OPENAI_DEFAULT
        size = min(size, limit)
        return cls(size, min(overlap, size // 2))

    def check_fits(self, provider: str, model: str) -> None:
        """Raise ConfigError when chunks this long would be more than the model accepts."""
        limit = max_input_tokens(provider, model)
        if self.max_tokens > limit:
            raise ConfigError(
                f"chunk max_tokens is {self.max_tokens}, more than the {limit} tokens model {model!r} accepts"
            )


@dataclass(frozen=True)
class Chunk:
    """A piece of a text; `start` and `end` are character offsets into the original."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    tokens: int
    paragraph_end: bool


class Chunker:
    """Splits texts for one tokenizer. `count_tokens` is what the model sees for a text,
    including any fixed overhead it adds (e5's "passage: " prefix and special tokens)."""

    def __init__(self, settings: ChunkSettings, count_tokens: Callable[[str], int], *, load_on_use: bool = False) -> None:
        self.settings = settings
        self._count = count_tokens
        if not load_on_use:
            self.load()
        self._cuts: dict[bytes, tuple[tuple[int, int], ...]] = {}  # text digest -> its chunks' offsets

    @functools.cached_property
    def _overhead(self) -> int:
        """What the model adds to every input. Not count(""): e5 counts an empty passage one
        higher than the prefix alone, while "a" is a single token in every vocabulary."""
        overhead = max(0, self._count("a") - 1)
        if self.settings.max_tokens - overhead < MIN_CHUNK_TOKENS // 2:
            raise ConfigError(f"chunk max_tokens {self.settings.max_tokens} leaves no room for text")
        return overhead

    def load(self) -> None:
        """Load the tokenizer now (and check the settings leave room for text)."""
        self._overhead  # noqa: B018 - computed, and cached, for its check and the tokenizer load

    @classmethod
    def for_model(cls, provider: str, model: str, settings: ChunkSettings | None = None) -> "Chunker":
        """The chunker of a model's tokenizer, which is loaded on the first text that needs
        counting: a process whose texts are all cut elsewhere (in reader workers) or
        remembered never loads it."""
        settings = settings or ChunkSettings.for_model(provider, model)
        settings.check_fits(provider, model)
        return cls(settings, lambda text: token_counter(provider, model)(text), load_on_use=True)

    def split(self, text: str) -> list[Chunk]:
        """Chunks of `text` in order, each within max_tokens; [] for blank text. A text
        cut before by this chunker is cut the same way again without counting tokens."""
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        cut = self._cuts.get(key)
        if cut is None:
            chunks = self._split(text, 0, len(text), self.settings.max_tokens - self._overhead, 0)
            if len(self._cuts) >= _REMEMBERED_CUTS:
                del self._cuts[next(iter(self._cuts))]  # the oldest goes
            self._cuts[key] = tuple((c.start, c.end) for c in chunks)
            return chunks
        return [Chunk(text[start:end], start, end) for start, end in cut]

    def _split(self, text: str, lo: int, hi: int, budget: int, retries: int) -> list[Chunk]:
        """Chunks of text[lo:hi]: spans are packed up to `budget` text tokens, and every
        chunk is checked against max_tokens with one count of the chunk as a whole."""
        limit = self.settings.max_tokens
        lo, hi = _strip(text, lo, hi)
        if lo >= hi:
            return []
        # Fast paths: no tokenizer makes more tokens of a text than it has UTF-8 bytes, so a
        # text that short fits without counting; otherwise count only what might fit.
        if hi - lo <= limit and len(text[lo:hi].encode("utf-8")) + self._overhead <= limit:
            return [Chunk(text[lo:hi], lo, hi)]
        if hi - lo <= limit * _MAX_CHARS_PER_TOKEN and self._count(text[lo:hi]) <= limit:
            return [Chunk(text[lo:hi], lo, hi)]
        spans = self._spans(text, lo, hi, budget)
        chunks: list[Chunk] = []
        for first, last in self._pack(spans, budget):
            start, end = spans[first].start, spans[last - 1].end
            piece = text[start:end]
            tokens = self._count(piece)
            if tokens <= limit:
                chunks.append(Chunk(piece, start, end))
            else:
                # Counting span by span underestimated the joined text (a BPE merge across
                # a boundary); pack this one again with a proportionally smaller budget.
                if retries >= _MAX_RESPLITS:
                    raise ValueError(f"could not cut a text into pieces of at most {limit} tokens")
                smaller = max(1, min(budget - 1, budget * limit // tokens))
                chunks.extend(self._split(text, start, end, smaller, retries + 1))
        return chunks

    def _spans(self, text: str, lo: int, hi: int, budget: int) -> list[_Span]:
        """Sentence-sized spans of text[lo:hi], each at most `budget` tokens."""
        spans: list[_Span] = []
        for lead, start, end, paragraph_end in _boundaries(text, lo, hi, _SENTENCE_END):
            tokens = self._tokens_within(text, lead, end, budget)
            if tokens <= budget:
                spans.append(_Span(start, end, tokens, paragraph_end))
            else:
                pieces = self._break_long(text, lead, end, budget)
                spans.extend(pieces[:-1])
                last = pieces[-1]
                spans.append(_Span(last.start, last.end, last.tokens, paragraph_end))
        return spans

    def _break_long(self, text: str, lo: int, hi: int, budget: int) -> list[_Span]:
        """A sentence longer than a chunk: split at clauses, then words, then anywhere."""
        for pattern in (_CLAUSE_END, _WORD_END):
            parts = list(_boundaries(text, lo, hi, pattern))
            if len(parts) > 1:
                out: list[_Span] = []
                for lead, start, end, _ in parts:
                    tokens = self._tokens_within(text, lead, end, budget)
                    if tokens <= budget:
                        out.append(_Span(start, end, tokens, False))
                    else:
                        out.extend(self._break_long(text, lead, end, budget))
                return out
        lo, hi = _strip(text, lo, hi)
        return self._hard_cut(text, lo, hi, budget)

    def _hard_cut(self, text: str, lo: int, hi: int, budget: int) -> list[_Span]:
        """A run with no boundary at all (a long token-less string, unpunctuated CJK): cut
        into pieces of about the size of the overlap, so that neighbouring chunks can still
        share one. Each piece is counted about once: its length is guessed from the last
        piece's characters per token, aiming a little under the target, and shrunk only when
        the guess was too long. (A longest-fit search per piece counted every character five
        or six times over, which made a megabyte without spaces take many seconds.)"""
        overlap = self.settings.overlap_tokens
        target = overlap if 0 < overlap < budget else budget
        aim = max(1, target * 9 // 10)  # leaves room for a piece that tokenizes a little denser
        out: list[_Span] = []
        chars_per_token = 2.0
        start = lo
        while start < hi:
            end = min(hi, start + max(1, int(aim * chars_per_token)))
            tokens = self._tokens(text, start, end)
            while tokens > target and end - start > 1:
                # Too long: shrink in proportion (and by at least one character).
                end = start + max(1, min(end - start - 1, (end - start) * aim // tokens))
                tokens = self._tokens(text, start, end)
            out.append(_Span(start, end, tokens, False))
            if tokens:
                chars_per_token = max(0.25, min(float(_MAX_CHARS_PER_TOKEN), (end - start) / tokens))
            start = end
        return out

    def _pack(self, spans: list[_Span], budget: int) -> list[tuple[int, int]]:
        """Group consecutive spans into chunks as [first, last) index pairs, with overlap."""
        groups: list[tuple[int, int]] = []
        overlap = self.settings.overlap_tokens
        start, n = 0, len(spans)
        while start < n:
            total, end = spans[start].tokens, start + 1
            while end < n and total + spans[end].tokens <= budget:
                total += spans[end].tokens
                end += 1
            if end < n and not spans[end - 1].paragraph_end:
                # Rather end at a paragraph if that still fills at least half the chunk.
                kept = total
                for k in range(end - 1, start, -1):
                    kept -= spans[k].tokens
                    if kept < budget // 2:
                        break
                    if spans[k - 1].paragraph_end:
                        end = k
                        break
            groups.append((start, end))
            if end >= n:
                break
            # The next chunk starts with as many trailing spans as fit in the overlap, and
            # still has room for at least one new span.
            next_start, shared = end, 0
            while next_start - 1 > start and shared + spans[next_start - 1].tokens <= overlap:
                next_start -= 1
                shared += spans[next_start].tokens
            while next_start < end and shared + spans[end].tokens > budget:
                shared -= spans[next_start].tokens
                next_start += 1
            start = next_start
        return groups

    def _tokens(self, text: str, start: int, end: int) -> int:
        return max(0, self._count(text[start:end]) - self._overhead)

    def _tokens_within(self, text: str, start: int, end: int, budget: int) -> int:
        """The tokens of text[start:end], or `budget + 1` without counting when it is too
        long to fit in any case (no token is longer than _MAX_CHARS_PER_TOKEN characters):
        a megabyte-long sentence is about to be broken up, and counting it whole first
        would cost as much as the rest of the cut."""
        if end - start > (budget + self._overhead) * _MAX_CHARS_PER_TOKEN:
            return budget + 1
        return self._tokens(text, start, end)


def chunk_text(text: str, settings: ChunkSettings, count_tokens: Callable[[str], int]) -> list[Chunk]:
    """Convenience: `Chunker(settings, count_tokens).split(text)`."""
    return Chunker(settings, count_tokens).split(text)


def _strip(text: str, lo: int, hi: int) -> tuple[int, int]:
    while lo < hi and text[lo].isspace():
        lo += 1
    while hi > lo and text[hi - 1].isspace():
        hi -= 1
    return lo, hi


def _boundaries(
    text: str, lo: int, hi: int, pattern: re.Pattern[str]
) -> Iterator[tuple[int, int, int, bool]]:
    """(lead, start, end, paragraph_end) of the non-blank pieces of text[lo:hi] that end at
    `pattern`. `lead` includes the whitespace before the piece: BPE tokenizers count a
    newline or a space before a CJK character as tokens of their own, so spans are counted
    with it and their sum does not fall short of the joined text."""
    prev = lo
    pending: list[Any] | None = None  # the last piece, held until we know if a paragraph ends it
    for m in pattern.finditer(text, lo, hi):
        start, end = _strip(text, prev, m.end())
        paragraph_end = m.lastgroup == "para"
        if start < end:
            if pending:
                yield tuple(pending)
            pending = [prev, start, end, paragraph_end]
            prev = end
        elif paragraph_end and pending:
            pending[3] = True  # "end." then a blank line: the sentence ends the paragraph
    start, end = _strip(text, prev, hi)
    if pending:
        yield tuple(pending)
    if start < end:
        yield prev, start, end, True

"""Text decoding: which encoding a file's bytes are in (BOM, UTF-8, then the usual legacy
encodings via charset-normalizer), whole files decoded at once and long structured files
as a stream whose undecodable bytes are reported per row instead of stopping the file.
"""
from __future__ import annotations

import codecs
import io
import re
from dataclasses import dataclass
from typing import BinaryIO

from charset_normalizer import from_bytes

from memsys.ingest.readers.formats import SUPPORTED
from memsys.ingest.readers.sources import InputProblem, Item, ReadLimits, read_bytes

# The encodings memsys recognises, in order of preference when a text fits several equally.
PREFERRED_ENCODINGS = ("utf_8", "gb18030", "big5", "cp932", "euc_jp", "euc_kr", "cp1251", "koi8_r", "cp1252")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY_REASON = "is a binary file, not text (supported: " + SUPPORTED + ")"
_UNDECODABLE_REASON = (
    "could not be decoded: its bytes are not text in UTF-8, UTF-16, GB18030/GBK, Big5, "
    "Shift-JIS, EUC-KR, KOI8-R, Windows-1251 or Latin-1"
)
_NAMES = {"utf-8": "UTF-8", "utf-16-le": "UTF-16LE", "utf-16-be": "UTF-16BE", "gb18030": "GB18030 (GBK)", "big5": "Big5", "cp932": "Shift-JIS", "euc_jp": "EUC-JP",
          "euc_kr": "EUC-KR", "cp1251": "Windows-1251", "koi8-r": "KOI8-R", "cp1252": "Windows-1252 (Latin-1)"}


def encoding_name(encoding: str) -> str:
    """An encoding as people call it ("EUC-KR", "Shift-JIS")."""
    try:
        key = codecs.lookup(encoding).name
    except LookupError:
        return encoding
    return _NAMES.get(key, key)
# At most this share of a file's bytes may be invalid UTF-8 for it to be read as UTF-8
# with those bytes replaced (a damaged byte, a cut-off last character), when the rest
# holds valid multi-byte UTF-8 that shows the file is UTF-8.
_UTF8_DAMAGE_SHARE = 0.01
_FEW_NON_ASCII = 16  # fewer non-ASCII bytes than this: a legacy encoding is only a guess
_SURROGATES = re.compile("[\udc80-\udcff]")
_KANA = re.compile("[\u3040-\u30ff]")  # full-width only: half-width kana is what Big5 bytes look like in Shift-JIS
_HANGUL = re.compile("[\uac00-\ud7a3]")


class UndecodableError(ValueError):
    """Bytes that are not text in any encoding memsys recognises (or are binary)."""


@dataclass(frozen=True)
class EncodingGuess:
    """How a file's bytes are read: the codec, whether undecodable bytes are replaced (and
    how many there are in what was judged), and a note when the guess is uncertain."""

    encoding: str
    replaced: int = 0  # bytes that are not valid in `encoding` (they become U+FFFD)
    uncertain: str = ""  # why the guess may be wrong; "" when it is sure

    @property
    def errors(self) -> str:
        return "replace" if self.replaced else "strict"

    def warnings(self, item: str) -> list[InputProblem]:
        """What a reader reports with the file's text (nothing is rejected for these)."""
        out = []
        if self.replaced:
            out.append(InputProblem(item, f"{self.replaced:,} byte(s) were not valid {encoding_name(self.encoding)} "
                                          "and were replaced with \ufffd; the rest was read", warning=True))
        if self.uncertain:
            out.append(InputProblem(item, self.uncertain, warning=True))
        return out


def judge_encoding(data: bytes, whole: bool = False) -> EncodingGuess:
    """How to read `data`: a whole file (`whole`), or its first block (whose last character
    may be cut by the block's end). Raises UndecodableError with a plain reason for binary
    data or bytes that are text in no known encoding."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return EncodingGuess(encoding)
    if b"\x00" in data[:8192]:
        utf16 = _utf16_without_bom(data, whole)
        if utf16:
            return EncodingGuess(utf16)
        raise UndecodableError(_BINARY_REASON)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=whole)
        return EncodingGuess("utf-8")
    except UnicodeDecodeError:
        pass
    escaped = data.decode("utf-8", "surrogateescape")
    bad = len(_SURROGATES.findall(escaped))
    valid_multibyte = sum(1 for c in escaped if "\u0080" <= c and not "\udc80" <= c <= "\udcff")
    if valid_multibyte and bad <= max(3, len(data) * _UTF8_DAMAGE_SHARE) and valid_multibyte >= bad:
        return EncodingGuess("utf-8", replaced=bad)
    return _legacy(data)


# UTF-16 written without a byte-order mark (as some Windows tools do) holds zero bytes, so it
# must be told apart from binary data and from a text file with a stray NUL. It is UTF-16
# when it looks like it (Latin-script UTF-16: at least every second pair has its zero byte,
# almost all on one side; other scripts: many bytes above 0x7F that are not UTF-8) and one
# byte order reads as text in the scripts people write while the other does not ("\n" read
# the wrong way round is U+0A00, an unassigned character).
_UTF16_SAMPLE = 65536
_UTF16_TEXT_SHARE = 0.9  # at least this share of the characters must be in _TEXT_RANGES
_TEXT_RANGES = (
    (0x09, 0x0D), (0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x52F), (0x2000, 0x206F), (0x20A0, 0x20CF),
    (0x2100, 0x22FF), (0x3000, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
)
_ASCII = bytes(range(0x80))


def _looks_like_utf16(sample: bytes, final: bool) -> bool:
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    if max(odd, even) >= 0.95 * (odd + even) and max(odd, even) >= len(sample) // 4:
        return True
    if len(sample.translate(None, _ASCII)) < len(sample) // 5:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=final)
    except UnicodeDecodeError:
        return True
    return False


def _text_share(text: str) -> float:
    inside = sum(1 for c in text if any(low <= ord(c) <= high for low, high in _TEXT_RANGES))
    return inside / len(text)


def _utf16_without_bom(data: bytes, whole: bool) -> str:
    """"utf-16-le" or "utf-16-be" when `data` reads as text in that byte order, else ""."""
    sample = data[:_UTF16_SAMPLE]
    sample = sample[: len(sample) // 2 * 2]
    final = whole and len(sample) == len(data)  # else the sample may end inside a surrogate pair
    if len(sample) < 4 or not _looks_like_utf16(sample, final):
        return ""
    best, best_share = "", _UTF16_TEXT_SHARE
    for encoding in ("utf-16-le", "utf-16-be"):
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(sample, final=final)
        except UnicodeDecodeError:
            continue
        share = _text_share(text) if text else 0.0
        if share >= best_share:
            best, best_share = encoding, share
    return best


def _legacy(data: bytes) -> EncodingGuess:
    """A legacy encoding told by charset-normalizer among the candidates, post-checked by
    script: a Japanese reading without any kana, or a Korean one without Hangul, is the
    wrong reading of Chinese (or other) bytes that merely fit."""
    matches = list(from_bytes(data, cp_isolation=list(PREFERRED_ENCODINGS[1:])))
    if not matches:
        raise UndecodableError(_UNDECODABLE_REASON)
    lowest = min(m.chaos for m in matches)
    close = [m for m in matches if m.chaos <= lowest + 0.02]
    kept = [m for m in close if _script_fits(m.encoding, str(m)[:65536])] or close
    rank = {name: i for i, name in enumerate(PREFERRED_ENCODINGS)}
    kept.sort(key=lambda m: (m.chaos, -m.coherence, rank.get(m.encoding, 99)))
    best = kept[0]
    non_ascii = sum(1 for b in data if b >= 0x80)
    name = encoding_name(best.encoding)
    others = [m for m in kept[1:] if str(m) != str(best)]
    if non_ascii < _FEW_NON_ASCII and not _reads_as_words(str(best)):
        note = (f"its encoding was guessed as {name} from only {non_ascii} non-ASCII byte(s); "
                "check its accented or non-Latin characters")
    elif others:
        note = (f"its encoding was guessed as {name}, but it reads as well as "
                f"{', '.join(encoding_name(m.encoding) for m in others[:2])}; check its text")
    elif best.chaos > 0.2:
        note = f"its encoding was guessed as {name}, but the text still looks garbled; check it"
    else:
        note = ""
    return EncodingGuess(best.encoding, uncertain=note)


def _script_fits(encoding: str, text: str) -> bool:
    if encoding in ("cp932", "euc_jp"):
        return bool(_KANA.search(text))
    if encoding == "euc_kr":
        # Korean puts spaces between words; Chinese bytes read as EUC-KR give Hangul too, but unspaced.
        hangul = len(_HANGUL.findall(text))
        return hangul > 0 and text.count(" ") >= hangul * 0.1
    return True


_TYPOGRAPHY = frozenset("\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u00a0\u20ac\u00b0")


def _reads_as_words(text: str) -> bool:
    """Whether the few non-ASCII characters of a mostly-ASCII text are letters inside words
    ("Café") or typography (curly quotes, dashes), not stray bytes standing alone."""
    for i, c in enumerate(text):
        if c < "\u0080" or c in _TYPOGRAPHY:
            continue
        if not c.isalpha():
            return False
        around = text[max(0, i - 1):i] + text[i + 1:i + 2]
        if not any(a.isascii() and a.isalpha() for a in around):
            return False
    return True


def detect_encoding(data: bytes) -> str:
    """The encoding of `data` (a whole file or its first block); raises UndecodableError."""
    return judge_encoding(data).encoding


def decode_bytes(data: bytes) -> str:
    """Decode a whole file's bytes (undecodable bytes of a damaged UTF-8 file become
    U+FFFD); raises UndecodableError."""
    return decode_with_warnings(data, "")[0]


def decode_with_warnings(data: bytes, item: str) -> tuple[str, list[InputProblem]]:
    """A whole file's text, and the warnings to report with it; raises UndecodableError."""
    guess = judge_encoding(data, whole=True)
    try:
        return normalise_text(data.decode(guess.encoding, guess.errors)), guess.warnings(item)
    except UnicodeDecodeError as e:
        raise UndecodableError(f"is not valid {encoding_name(guess.encoding)} text at byte {e.start}") from None


def normalise_text(text: str) -> str:
    """Text as memsys stores it: NUL cannot be stored; Windows and old Mac line ends become \\n."""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def text_of(item: Item, limits: ReadLimits) -> tuple[str | InputProblem, list[InputProblem]]:
    """The decoded text of a whole file (or why it has none) and the warnings to report
    with it; raises UndecodableError or TooLargeError."""
    text, warnings = decode_with_warnings(read_bytes(item, limits.max_file_bytes), item.name)
    if not text.strip():
        return InputProblem(item.name, "is empty (only white space)"), []
    return text, warnings


SAMPLE_BYTES = 64 * 1024


def first_block(stream: BinaryIO) -> bytes:
    """The first 64 KiB of a binary stream, cut at its last line end so that the sample
    never ends in half a character."""
    sample = stream.read(SAMPLE_BYTES)
    if len(sample) == SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]
    return sample


def open_text(item: Item) -> tuple[io.TextIOWrapper, EncodingGuess]:
    """The file as a text stream (newline="" for csv) and how it is decoded, told from the
    first block; raises UndecodableError."""
    with item.open() as f:
        sample = first_block(f)
    guess = judge_encoding(sample)
    encoding = guess.encoding
    # Bytes the encoding cannot decode become lone surrogates (\udc80-\udcff) instead of
    # an exception in the middle of a buffer, so the row or line holding them is reported
    # and the rest of the file is still read.
    stream = io.TextIOWrapper(item.open(), encoding=encoding, errors="surrogateescape", newline="")
    return stream, guess


BAD_BYTES = _SURROGATES


def replace_bad_bytes(text: str) -> tuple[str, int]:
    """`text` read with surrogateescape, its undecodable bytes replaced by U+FFFD; and how many."""
    return BAD_BYTES.subn("\ufffd", text)


def replaced_warning(item: str, guess: EncodingGuess, replaced: int) -> InputProblem:
    """The warning for a streamed file whose bad bytes were replaced as it was read."""
    return EncodingGuess(guess.encoding, replaced=replaced).warnings(item)[0]

"""Text decoding: which encoding a file's bytes are in (BOM, UTF-8, then the usual legacy
encodings via charset-normalizer), whole files decoded at once and long structured files
as a stream whose undecodable bytes are reported per row instead of stopping the file.
"""
from __future__ import annotations

import codecs
import io
import re
from typing import BinaryIO

from charset_normalizer import from_bytes

from memsys.ingest.readers.formats import SUPPORTED
from memsys.ingest.readers.sources import InputProblem, Item, ReadLimits, read_bytes

# The encodings memsys recognises, in order of preference when a short text fits several.
PREFERRED_ENCODINGS = ("utf_8", "gb18030", "cp932", "big5", "cp1252")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_BINARY_REASON = "is a binary file, not text (supported: " + SUPPORTED + ")"
_UNDECODABLE_REASON = (
    "could not be decoded: its bytes are not text in UTF-8, UTF-16, GB18030/GBK, "
    "Shift-JIS, Big5 or Latin-1"
)


class UndecodableError(ValueError):
    """Bytes that are not text in any encoding memsys recognises (or are binary)."""


def detect_encoding(data: bytes) -> str:
    """The encoding of `data` (a whole file or its first block). Raises UndecodableError
    with a plain reason for binary data or bytes that are text in no known encoding."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    if b"\x00" in data[:8192]:
        raise UndecodableError(_BINARY_REASON)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # Short texts fit several legacy encodings; trying the usual ones first picks GBK over
    # EUC-KR and Latin-1 over Mac Roman, and the full set is the fallback.
    best = from_bytes(data, cp_isolation=list(PREFERRED_ENCODINGS)).best() or from_bytes(data).best()
    if best is None:
        raise UndecodableError(_UNDECODABLE_REASON)
    return best.encoding


def decode_bytes(data: bytes) -> str:
    """Decode a whole file's bytes; raises UndecodableError."""
    encoding = detect_encoding(data)
    try:
        return normalise_text(data.decode(encoding))
    except UnicodeDecodeError as e:
        raise UndecodableError(f"is not valid {encoding} text at byte {e.start}") from None


def normalise_text(text: str) -> str:
    """Text as memsys stores it: NUL cannot be stored; Windows and old Mac line ends become \\n."""
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


def text_of(item: Item, limits: ReadLimits) -> str | InputProblem:
    """The decoded text of a whole file; raises UndecodableError or TooLargeError."""
    text = decode_bytes(read_bytes(item, limits.max_file_bytes))
    if not text.strip():
        return InputProblem(item.name, "is empty (only white space)")
    return text


SAMPLE_BYTES = 64 * 1024


def first_block(stream: BinaryIO) -> bytes:
    """The first 64 KiB of a binary stream, cut at its last line end so that the sample
    never ends in half a character."""
    sample = stream.read(SAMPLE_BYTES)
    if len(sample) == SAMPLE_BYTES and b"\n" in sample:
        sample = sample[: sample.rfind(b"\n") + 1]
    return sample


def open_text(item: Item) -> tuple[io.TextIOWrapper, str]:
    """The file as a text stream (newline="" for csv) and its encoding, told from the
    first block; raises UndecodableError."""
    with item.open() as f:
        sample = first_block(f)
    encoding = detect_encoding(sample)
    # Bytes the encoding cannot decode become lone surrogates (\udc80-\udcff) instead of
    # an exception in the middle of a buffer, so the row or line holding them is reported
    # and the rest of the file is still read.
    stream = io.TextIOWrapper(item.open(), encoding=encoding, errors="surrogateescape", newline="")
    return stream, encoding


BAD_BYTES = re.compile("[\udc80-\udcff]")


def bad_bytes_reason(encoding: str) -> str:
    return f"has bytes that are not valid {encoding} text (the encoding was judged from the start of the file)"

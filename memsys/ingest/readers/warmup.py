"""Reading a warm-up file: the texts an operator expects to import, embedded and cached
ahead of time (`python -m memsys cache warmup FILE`, the Cache page's file warm-up)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from memsys.ingest.readers.encoding import detect_encoding

WARMUP_FORMAT = (
    'FILE holds one text per line (blank lines are skipped), or, when it ends in .jsonl, one '
    'JSON object per line whose "content" field (or else "text") is the text.'
)
_SAMPLE_BYTES = 64 * 1024


def read_warmup_texts(path: Path) -> Iterator[str]:
    """The texts of a warm-up file (see WARMUP_FORMAT), streamed a line at a time, trimmed.
    The encoding is detected from the start of the file; raises ValueError naming the line
    of a .jsonl record that has no text."""
    with path.open("rb") as f:
        encoding = detect_encoding(f.read(_SAMPLE_BYTES))
    jsonl = path.suffix.lower() == ".jsonl"
    with path.open("r", encoding=encoding, errors="replace") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if not jsonl:
                yield line.strip()
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path.name} line {lineno} is not valid JSON: {e.msg}") from None
            text = record.get("content") or record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f'{path.name} line {lineno} has no "content" or "text" field with text in it')
            yield text

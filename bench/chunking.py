"""Chunking text without spaces: a megabyte of base64 or unpunctuated CJK has no boundary
to cut at, so the chunker cuts it by counting tokens. Measured against a megabyte of
ordinary prose in the same run: the cost per character should stay within a small factor
of prose (it was ~8x the tokenizer work, ~15-33 s a megabyte, before the cut counted each
character about once). Not in TARGETS.md: the target is ours (issue 11)."""
from __future__ import annotations

import base64
import random

from bench.common import Result, timed
from memsys.ingest.chunking import Chunker

_SIZE = 1_000_000  # characters of each text


def _texts() -> dict[str, str]:
    rng = random.Random(7)
    words = ("throughput latency token chunk paragraph document search filter project agent the of and a in "
             "to is with for on").split()
    prose = []
    while sum(len(s) for s in prose) < _SIZE:
        prose.append(" ".join(rng.choice(words) for _ in range(rng.randrange(6, 20))).capitalize() + ". ")
    return {
        "prose": "".join(prose)[:_SIZE],
        "base64": base64.b64encode(rng.randbytes(_SIZE * 3 // 4)).decode()[:_SIZE],
        "cjk": "".join(chr(0x4E00 + rng.randrange(20000)) for _ in range(_SIZE // 3)),  # 1 MB of UTF-8
    }


def run() -> list[Result]:
    chunker = Chunker.for_model("local", "multilingual-e5-small-q4")
    texts = _texts()
    seconds = {name: timed(lambda t=text: chunker.split(t))[1] for name, text in texts.items()}
    per_char = {name: seconds[name] / len(texts[name]) for name in texts}
    results = []
    for name in ("base64", "cjk"):
        ratio = per_char[name] / per_char["prose"]
        results.append(Result("C1", f"chunking 1 MB of {name} vs prose, per character", ratio, "x", "<= 3x (ours)",
                              ratio <= 3, f"{seconds[name]:.1f} s vs {seconds['prose']:.1f} s for prose"))
    return results

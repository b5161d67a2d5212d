"""Small helpers shared by tests: the real local embedder with a counter on it, and
input files made on the spot."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from memsys.embeddings.providers import Kind, LocalProvider


class CountingLocalProvider(LocalProvider):
    """The real local embedder, counting what reaches it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        self.calls.append(list(texts))
        return super().embed(texts, kind)

    @property
    def sent(self) -> list[str]:
        return [t for call in self.calls for t in call]


def write_rows_csv(path: Path, texts: Sequence[str]) -> Path:
    """A csv with one memory per row (column `content`)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["content"])
        for text in texts:
            writer.writerow([text])
    return path


def short_texts(n: int, prefix: str = "note") -> list[str]:
    """n distinct short English texts (the local embedder does ~180 of these a second)."""
    words = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "iris", "jade"]
    return [f"{prefix} {i}: {words[i % 10]} {words[(i // 10) % 10]} {words[(i // 100) % 10]}" for i in range(n)]

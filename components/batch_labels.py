"""Batch settings as the dashboard edits them: plain labels for the length buckets, their
recommended batch sizes, and loading a configuration someone uploaded."""
from __future__ import annotations

import tempfile
from pathlib import Path, PurePath

from memsys.config import LENGTH_BUCKETS, LENGTH_LIMITS, RECOMMENDED_BATCH_SIZES, BatchConfig

BUCKET_LABELS = {"short": "Short texts", "medium": "Medium texts", "long": "Long texts", "very_long": "Very long texts"}


def _bucket_lengths() -> dict[str, str]:
    """"under 100 characters", "100–500 characters", ... from the limits BatchConfig uses."""
    lengths, low = {}, 0
    for bucket in LENGTH_BUCKETS:
        high = LENGTH_LIMITS.get(bucket)
        if high is None:
            lengths[bucket] = f"over {low:,} characters"
        elif low == 0:
            lengths[bucket] = f"under {high:,} characters"
        else:
            lengths[bucket] = f"{low:,}–{high:,} characters"
        low = high or low
    return lengths


BUCKET_LENGTHS = _bucket_lengths()


def recommended(bucket: str) -> str:
    low, high = RECOMMENDED_BATCH_SIZES[bucket]
    return f"recommended {low}–{high}"


def outside_recommended(config: BatchConfig) -> list[str]:
    """A sentence for each length bucket whose batch size is outside its recommended range."""
    sizes = config.text_type_batch_sizes or {}
    notes = []
    for bucket in LENGTH_BUCKETS:
        low, high = RECOMMENDED_BATCH_SIZES[bucket]
        if not low <= sizes[bucket] <= high:
            notes.append(
                f"{BUCKET_LABELS[bucket]} ({BUCKET_LENGTHS[bucket]}): a batch size of {sizes[bucket]} is outside the {recommended(bucket)}."
            )
    return notes


def config_from_upload(name: str, data: bytes) -> BatchConfig:
    """Read an uploaded JSON file exactly as `BatchConfig.from_file` reads one on disk,
    so its messages name the uploaded file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / (PurePath(name).name or "batch_config.json")
        path.write_bytes(data)
        return BatchConfig.from_file(path)

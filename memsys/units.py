"""Quantities written the way an operator reads them, shared by the CLI and the dashboard."""
from __future__ import annotations

_UNITS = ("bytes", "KB", "MB", "GB", "TB")


def plural(n: int, word: str, words: str | None = None) -> str:
    """plural(1, "memory", "memories") -> "1 memory"; plural(3, "file") -> "3 files"."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def size(n_bytes: int | float | None) -> str:
    """1536 -> "1.5 KB"; 0 -> "0 bytes"."""
    if n_bytes is None:
        return "unknown"
    value = float(n_bytes)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """75 -> "1 min 15 s"; None -> "—" (not known yet)."""
    if seconds is None or seconds != seconds or seconds < 0:  # NaN as well
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"

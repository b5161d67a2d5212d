"""Rows for the dashboard's tables, built from engine records: one dict per row, column
names as people read them."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd

from memsys.engine import PROBLEMS, CacheHealthReport, FailedItem, InputProblem, JobProgress, Memory, StoredMemory, failed_row
from components import format as fmt

PREVIEW_CHARS = 120


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells cannot run as spreadsheet formulas: a cell that starts with
    = + - @ (or a tab or carriage return) gets a leading apostrophe, as OWASP advises for
    CSV downloads. Numbers stay numbers."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or str(safe[column].dtype).startswith("str"):
            safe[column] = safe[column].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v)
    return safe


def csv_text(frame: pd.DataFrame) -> str:
    """The CSV people download: formula-looking cells neutralised."""
    return spreadsheet_safe(frame).to_csv(index=False)


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def source_of(memory: StoredMemory) -> str:
    """"notes.pdf, page 3, chunk 2" - where a memory's text came from."""
    parts = [memory.source_file or memory.source or "unknown source"]
    if memory.source_location:
        parts.append(memory.source_location)
    parts.append(f"chunk {memory.chunk_index + 1}")
    return ", ".join(parts)


def memory_rows(memories: Iterable[StoredMemory]) -> list[dict[str, Any]]:
    rows = []
    for m in memories:
        row: dict[str, Any] = {}
        if m.match is not None:
            row["Match"] = fmt.percent(m.match)
        row.update({
            "Content": preview(m.content),
            "Project": m.project,
            "Repo": m.repo,
            "Agent": m.agent,
            "Tags": ", ".join(m.tags),
            "Document": source_of(m),
            "Created": fmt.when(m.created_at),
            "ID": m.uuid,
        })
        rows.append(row)
    return rows


def cache_model_rows(cache_info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cache's entries per provider and model (from EmbeddingRouter.get_cache_info)."""
    return [
        {
            "Provider": m["provider"],
            "Model": m["model"],
            "Base URL": m["base_url"] or "—",
            "Dimensions": m["dimensions"],
            "Cached embeddings": m["entries"],
            "Size": fmt.size(m["bytes"]) if "bytes" in m else "—",
            "In use now": "yes" if m["current"] else "",
        }
        for m in cache_info.get("models", [])
    ]


def job_rows(jobs: Iterable[JobProgress]) -> list[dict[str, Any]]:
    return [
        {
            "Started": fmt.when(job.started_at or job.created_at),
            "Import": job.label,
            "State": fmt.job_state(job.state, job.failed),
            "Done": f"{job.processed:,} of {job.total:,}",
            "Written": job.written,
            "Updated": job.updated,
            "Unchanged": job.unchanged,
            "Failed": job.failed,
            "Memories/s": round(job.items_per_second, 1),
            "Cache hits": fmt.percent(job.cache_hit_rate) if job.cache_hits + job.cache_misses else "—",
            "Started by": job.started_by or "—",
            "Job": job.job_id,
        }
        for job in jobs
    ]


def failed_rows(items: Iterable[FailedItem]) -> list[dict[str, Any]]:
    """Failed items with their reasons: the table on screen (the CSV has the same columns)."""
    return [failed_row(item) for item in items]


def health_rows(report: CacheHealthReport) -> list[dict[str, Any]]:
    """What a cache health check found, one row per bad entry or store problem."""
    rows = [
        {"Problem": PROBLEMS.get(e.problem, e.problem), "Kind": e.problem, "Entry": preview(e.key or "(unreadable)", 60),
         "Detail": e.detail, "Removed": "yes" if e in report.removed else ""}
        for e in report.bad_entries
    ]
    rows += [
        {"Problem": PROBLEMS.get(p.problem, p.problem), "Kind": p.problem, "Entry": "(the cache as a whole)",
         "Detail": p.detail, "Removed": ""}
        for p in report.database_problems
    ]
    return rows


def job_cache_rows(jobs: Iterable[JobProgress], tokens: Mapping[str, int], price_per_million_tokens: float) -> list[dict[str, Any]]:
    """Each finished import's use of the cache (memories found there versus embedded) and
    what it cost: `tokens` sent per job id, at the embedder's price. An import that needed
    no embedding at all (a re-import of unchanged files) is listed with no cost."""
    rows = []
    for job in jobs:
        if job.is_active:
            continue
        lookups = job.cache_hits + job.cache_misses
        if not job.cache_misses:
            cost = "$0 (no provider calls)"
        elif price_per_million_tokens == 0:
            cost = "$0 (a free model)"
        else:
            cost = fmt.money(tokens.get(job.job_id, 0) / 1e6 * price_per_million_tokens)
        rows.append({
            "Started": fmt.when(job.started_at or job.created_at),
            "Import": job.label,
            "From the cache": job.cache_hits,
            "Embedded": job.cache_misses,
            "Hit rate": fmt.percent(job.cache_hit_rate) if lookups else "— (nothing to embed)",
            "Cost": cost,
        })
    return rows


def preview_rows(memories: Iterable[Memory]) -> list[dict[str, Any]]:
    """The memories an import would create, as the preview shows them."""
    return [
        {
            "Content": preview(m.content),
            "Document": m.source_file,
            "Where": m.source_location or "—",
            "Chunk": m.chunk_index + 1,
            "Project": m.project,
            "Repo": m.repo,
            "Agent": m.agent,
            "Tags": ", ".join(m.tags),
        }
        for m in memories
    ]


def problem_rows(problems: Iterable[InputProblem]) -> list[dict[str, Any]]:
    return [{"Item": p.item, "Problem": p.reason} for p in problems]

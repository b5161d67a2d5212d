"""The Metrics page's charts: tables built from the job store's records, and plotly
figures drawn from those tables, so every chart's data can be downloaded as it is drawn."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from memsys.engine import BatchRecord, JobProgress

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend_title_text="")


def batch_table(batches: Sequence[BatchRecord]) -> pd.DataFrame:
    """One row per batch, in order, with times relative to the job's first batch.

    `items_per_second` is the batch's items over the time since the previous batch
    finished: batches overlap (one is embedded while another is written), so this is the
    rate the job actually moved at, not the batch's own speed."""
    columns = [
        "batch", "size", "embed_seconds", "write_seconds", "seconds", "cache_hits", "cache_misses",
        "written", "unchanged", "failed", "retries", "elapsed_seconds", "items_done", "items_per_second",
    ]
    if not batches:
        return pd.DataFrame(columns=columns)
    ordered = sorted(batches, key=lambda b: b.finished_at)
    start = min(b.started_at for b in ordered)
    rows = []
    done = 0
    previous = start
    for b in ordered:
        done += b.size
        gap = b.finished_at - previous
        rows.append({
            "batch": b.batch_no, "size": b.size,
            "embed_seconds": round(b.embed_seconds, 3), "write_seconds": round(b.write_seconds, 3),
            "seconds": round(b.seconds, 3), "cache_hits": b.cache_hits, "cache_misses": b.cache_misses,
            "written": b.written, "unchanged": b.unchanged, "failed": b.failed, "retries": b.retries,
            "elapsed_seconds": round(b.finished_at - start, 3), "items_done": done,
            "items_per_second": round(b.size / gap, 2) if gap > 0 else None,
        })
        previous = b.finished_at
    return pd.DataFrame(rows, columns=columns)


def throughput_figure(table: pd.DataFrame, title: str = "Throughput over time") -> go.Figure:
    figure = px.line(table, x="elapsed_seconds", y="items_per_second", markers=True,
                     labels={"elapsed_seconds": "seconds since the first batch", "items_per_second": "memories per second"})
    return figure.update_layout(title=title, **_LAYOUT)


def _per_batch_bars(table: pd.DataFrame, names: Mapping[str, str], legend: str, value: str, title: str,
                    **bars: object) -> go.Figure:
    """Bars per batch for some of the table's columns, named in the legend by `names`."""
    long = table[["batch", *names]].melt(id_vars="batch", var_name=legend, value_name=value)
    long[legend] = long[legend].map(names)
    return px.bar(long, x="batch", y=value, color=legend, **bars).update_layout(title=title, **_LAYOUT)


def latency_figure(table: pd.DataFrame) -> go.Figure:
    return _per_batch_bars(table, {"embed_seconds": "embedding", "write_seconds": "writing"}, "step", "seconds",
                           "Time per batch", barmode="group")


def cache_figure(table: pd.DataFrame) -> go.Figure:
    return _per_batch_bars(table, {"cache_hits": "from the cache", "cache_misses": "embedded"}, "lookup", "memories",
                           "Cache hits and misses per batch", barmode="stack",
                           color_discrete_map={"from the cache": "#2f8f5b", "embedded": "#c9a227"})


def errors_table(errors: Mapping[str, int]) -> pd.DataFrame:
    rows = sorted(errors.items(), key=lambda kv: -kv[1])
    return pd.DataFrame(rows, columns=["kind of error", "failures"])


def errors_figure(table: pd.DataFrame) -> go.Figure:
    figure = px.bar(table, x="kind of error", y="failures", color_discrete_sequence=["#c53948"])
    return figure.update_layout(title="Failures by kind of error", **_LAYOUT)


def jobs_table(jobs: Sequence[JobProgress]) -> pd.DataFrame:
    """One row per job: what it did and how fast, for comparing runs."""
    rows = []
    for job in jobs:
        duration = (job.finished_at - job.started_at) if job.finished_at and job.started_at else None
        rows.append({
            "job": job.job_id, "files": job.label, "state": job.state, "total": job.total,
            "written": job.written, "updated": job.updated, "unchanged": job.unchanged, "failed": job.failed,
            "seconds": round(duration, 1) if duration is not None else None,
            "items_per_second": round(job.items_per_second, 2),
            "cache_hit_rate": round(job.cache_hit_rate, 3),
            "batches": job.batches_done,
        })
    return pd.DataFrame(rows, columns=["job", "files", "state", "total", "written", "updated", "unchanged", "failed", "seconds",
                                       "items_per_second", "cache_hit_rate", "batches"])


def jobs_figure(table: pd.DataFrame) -> go.Figure:
    figure = px.bar(table, x="job", y="items_per_second", hover_data=["files", "total", "cache_hit_rate"],
                    labels={"items_per_second": "memories per second"})
    return figure.update_layout(title="Speed of each import", **_LAYOUT)


def comparison_table(first: JobProgress, second: JobProgress) -> pd.DataFrame:
    """Two runs side by side, one measure per row."""
    both = jobs_table([first, second]).drop(columns=["job", "files"]).T
    both.columns = [f"{first.label} ({first.job_id})", f"{second.label} ({second.job_id})"]
    return both.reset_index(names="measure")


def runs_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Several runs' batch tables in one, with a `run` column naming each."""
    parts = [table.assign(run=name) for name, table in tables.items() if not table.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "elapsed_seconds", "items_done"])


def comparison_figure(runs: pd.DataFrame) -> go.Figure:
    """Memories done over time for several runs, each from its own first batch."""
    figure = px.line(runs, x="elapsed_seconds", y="items_done", color="run", markers=True,
                     labels={"elapsed_seconds": "seconds since the first batch", "items_done": "memories done"})
    return figure.update_layout(title="Memories done over time", **_LAYOUT)

"""The Metrics page's charts: tables built from the job store's records, and plotly
figures drawn from those tables, so every chart's data can be downloaded as it is drawn."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from components.format import duration, job_state, rate
from memsys.engine import BatchRecord, JobProgress, JobTimings

_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), height=320, legend_title_text="")


def batch_table(batches: Sequence[BatchRecord]) -> pd.DataFrame:
    """One row per batch, in the order they finished, with times relative to the job's
    first batch.

    `memories_per_second` is the memories done so far over the time since the first batch
    started: batches overlap (one is embedded while another is written), so a batch's own
    rate would count the same seconds twice, and two batches finishing together would
    draw a spike of thousands per second."""
    columns = [
        "batch", "memories", "embed_seconds", "write_seconds", "seconds", "cache_hits", "cache_misses",
        "written", "unchanged", "failed", "retries", "elapsed_seconds", "memories_done", "memories_per_second",
    ]
    if not batches:
        return pd.DataFrame(columns=columns)
    ordered = sorted(batches, key=lambda b: b.finished_at)
    start = min(b.started_at for b in ordered)
    rows = []
    done = 0
    for b in ordered:
        done += b.size
        elapsed = b.finished_at - start
        rows.append({
            "batch": b.batch_no, "memories": b.size,
            "embed_seconds": round(b.embed_seconds, 3), "write_seconds": round(b.write_seconds, 3),
            "seconds": round(b.seconds, 3), "cache_hits": b.cache_hits, "cache_misses": b.cache_misses,
            "written": b.written + b.updated, "unchanged": b.unchanged, "failed": b.failed, "retries": b.retries,
            "elapsed_seconds": round(elapsed, 3), "memories_done": done,
            "memories_per_second": round(done / elapsed, 2) if elapsed >= 0.01 else None,
        })
    return pd.DataFrame(rows, columns=columns)


def _whole_numbers(figure: go.Figure, axis: str, top: float) -> go.Figure:
    """Counts and batch numbers have no fractions: ticks on whole numbers only, about six
    of them up to `top`."""
    step = max(1, math.ceil(float(top or 0) / 6))
    return figure.update_layout({f"{axis}axis": dict(tick0=0, dtick=step, tickformat="d", rangemode="tozero")})


def throughput_figure(table: pd.DataFrame, title: str = "Throughput over time") -> go.Figure:
    figure = px.line(table, x="elapsed_seconds", y="memories_per_second", markers=True,
                     labels={"elapsed_seconds": "seconds since the first batch started",
                             "memories_per_second": "memories per second, so far"})
    return figure.update_layout(title=title, **_LAYOUT).update_yaxes(rangemode="tozero").update_xaxes(rangemode="tozero")


def _per_batch_bars(table: pd.DataFrame, names: Mapping[str, str], legend: str, value: str, title: str,
                    **bars: object) -> go.Figure:
    """Bars per batch for some of the table's columns, named in the legend by `names`."""
    long = table[["batch", *names]].melt(id_vars="batch", var_name=legend, value_name=value)
    long[legend] = long[legend].map(names)
    figure = px.bar(long, x="batch", y=value, color=legend, **bars).update_layout(title=title, **_LAYOUT)
    return _whole_numbers(figure, "x", table["batch"].max() if len(table) else 1)


def latency_figure(table: pd.DataFrame) -> go.Figure:
    return _per_batch_bars(table, {"embed_seconds": "checking and embedding", "write_seconds": "writing"}, "step",
                           "seconds", "Time per batch", barmode="group")


def cache_figure(table: pd.DataFrame) -> go.Figure:
    figure = _per_batch_bars(table, {"cache_hits": "from the cache", "cache_misses": "embedded"}, "lookup", "memories",
                             "Cache hits and misses per batch", barmode="stack",
                             color_discrete_map={"from the cache": "#2f8f5b", "embedded": "#c9a227"})
    return _whole_numbers(figure, "y", (table["cache_hits"] + table["cache_misses"]).max() if len(table) else 1)


def _seconds(value: float | None) -> str:
    return duration(value) if value is not None else "—"


def jobs_table(jobs: Sequence[JobProgress]) -> pd.DataFrame:
    """One row per job, in plain words: what it did and how fast, for comparing runs."""
    rows = []
    for job in jobs:
        took = (job.finished_at - job.started_at) if job.finished_at and job.started_at else None
        lookups = job.cache_hits + job.cache_misses
        rows.append({
            "Import": job.job_id, "Files": job.label, "State": job_state(job.state, job.failed), "Memories": job.total,
            "Written": job.written, "Updated": job.updated, "Unchanged": job.unchanged, "Failed": job.failed,
            "Time": _seconds(took), "Seconds": round(took, 1) if took is not None else None,
            "Memories per second": round(job.total / took, 1) if took else None,
            "From the cache": f"{job.cache_hit_rate * 100:.0f}%" if lookups else "— (nothing embedded)",
            "Batches": job.batches_done,
        })
    return pd.DataFrame(rows, columns=["Import", "Files", "State", "Memories", "Written", "Updated", "Unchanged", "Failed",
                                       "Time", "Seconds", "Memories per second", "From the cache", "Batches"])


def jobs_figure(table: pd.DataFrame) -> go.Figure:
    figure = px.bar(table, x="Import", y="Memories per second", hover_data=["Files", "Memories", "From the cache"])
    return figure.update_layout(title="Speed of each import (memories per second, start to end)", **_LAYOUT)


_STAGE_ROWS = (("Reading the files", "read_seconds"), ("Checking what is stored", "lookup_seconds"),
               ("Embedding", "embedding_seconds"), ("Writing", "writing_seconds"), ("Waiting", "waiting_seconds"))


def comparison_table(first: JobProgress, second: JobProgress, timings: Sequence[JobTimings | None] = (None, None)) -> pd.DataFrame:
    """Two runs side by side, one measure per row, in the words and units of the rest of
    the page (times as durations, speeds in memories per second)."""
    both = jobs_table([first, second]).drop(columns=["Import", "Files", "Seconds"]).astype(object).T
    both.columns = [f"{first.label} ({first.job_id})", f"{second.label} ({second.job_id})"]
    both.loc["Memories per second"] = [rate(None if v is None or v != v else float(v), "memories")
                                       for v in both.loc["Memories per second"]]
    for label, name in _STAGE_ROWS:
        both.loc[label] = [_seconds(getattr(t, name)) if t is not None else "—" for t in timings]
    return both.reset_index(names="Measure").astype(str)


def runs_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Several runs' batch tables in one, with a `run` column naming each."""
    parts = [table.assign(run=name) for name, table in tables.items() if not table.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["run", "elapsed_seconds", "memories_done"])


def comparison_figure(runs: pd.DataFrame) -> go.Figure:
    """Memories done over time for several runs, each from its own first batch."""
    figure = px.line(runs, x="elapsed_seconds", y="memories_done", color="run", markers=True,
                     labels={"elapsed_seconds": "seconds since the first batch started", "memories_done": "memories done"})
    return _whole_numbers(figure.update_layout(title="Memories done over time", **_LAYOUT), "y",
                          runs["memories_done"].max() if len(runs) else 1)

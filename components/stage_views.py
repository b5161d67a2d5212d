"""Where an import's time went, on the Metrics page: its total time beside the stages
(reading, checking what is stored, embedding, writing, waiting) with what each did per
second, how much its concurrent batches overlapped, and its failed items by reason with
the files they came from."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import format as fmt
from memsys.engine import FailureGroup, JobTimings


def nothing_happened(timings: JobTimings) -> str:
    """What a job that embedded and wrote nothing says instead of empty charts."""
    checked = f" Checking them took {fmt.duration(timings.lookup_seconds)}." if timings.lookup_seconds >= 0.05 else ""
    return (f"Nothing to embed or write: all {timings.unchanged:,} memories were already stored and unchanged."
            f" No provider calls, no cost.{checked}")


def stage_rows(timings: JobTimings) -> list[dict[str, str]]:
    """One row per stage: its time, what it handled and how fast."""
    def row(stage: str, seconds: float, memories: int | None, what: str) -> dict[str, str]:
        rate = JobTimings.rate(memories or 0, seconds)
        return {"Stage": stage, "Time": fmt.duration(seconds),
                "Memories": fmt.count(memories) if memories is not None else "—",
                "Memories per second": fmt.rate(rate, "memories") if rate is not None else "—",
                "What it is": what}
    return [
        row("Reading the files", timings.read_seconds, timings.memories,
            "opening the files, OCR of scanned pages, cutting them into memories"),
        row("Checking what is stored", timings.lookup_seconds, timings.memories,
            "asking Weaviate which memories it holds already"),
        row("Embedding", timings.embedding_seconds, timings.embedded + timings.from_cache,
            f"{timings.embedded:,} embedded by the provider, {timings.from_cache:,} from the cache"),
        row("Writing", timings.writing_seconds, timings.written, "storing memories in Weaviate"),
        row("Waiting for the provider", timings.provider_wait_seconds, None,
            "for its rate limits (requests or tokens per minute) and before retrying it"),
        row("Waiting for Weaviate", timings.store_wait_seconds, None,
            "before retrying a write, and for its search index after the last write"),
    ]


def overlap_sentence(timings: JobTimings) -> str:
    """The batches' added-up time beside the time they took together."""
    if timings.batches <= 1:
        return f"One batch, {fmt.duration(timings.batch_wall_seconds)}."
    summed, wall = fmt.duration(timings.batch_seconds), fmt.duration(timings.batch_wall_seconds)
    if timings.overlaps:
        return (f"Stages overlap: {timings.batches:,} batches ran at the same time, so {summed} of batch time "
                f"passed in {wall}. The stage times below add up to more than the total for that reason.")
    return f"{timings.batches:,} batches one after another: {summed} of batch time in {wall}."


def stage_totals(timings: JobTimings) -> None:
    """Total time and the stages, one figure each, then the table with their speeds."""
    figures = [*st.columns(3), *st.columns(3)]  # two rows: durations like "12 min 40 s" need the width
    figures[0].metric("Total time", fmt.duration(timings.wall_seconds), help="From the start of the import to its end.")
    figures[1].metric("Reading", fmt.duration(timings.read_seconds), help="Opening the files, OCR, cutting them into memories.")
    figures[2].metric("Checking", fmt.duration(timings.lookup_seconds), help="Asking Weaviate what it already holds.")
    figures[3].metric("Embedding", fmt.duration(timings.embedding_seconds), help="In the embedder, the cache included.")
    figures[4].metric("Writing", fmt.duration(timings.writing_seconds), help="Storing memories in Weaviate.")
    figures[5].metric("Waiting", fmt.duration(timings.waiting_seconds),
                      help=f"For the provider: {fmt.duration(timings.provider_wait_seconds)}; "
                           f"for Weaviate: {fmt.duration(timings.store_wait_seconds)}.")
    st.caption(overlap_sentence(timings))
    st.dataframe(pd.DataFrame(stage_rows(timings)), hide_index=True, width="stretch")


def failure_rows(groups: list[FailureGroup]) -> list[dict[str, object]]:
    return [{"Reason": g.reason, "Memories": g.count,
             "Files": ", ".join(g.items) + (f" and {g.count - len(g.items):,} more" if g.count > len(g.items) else "")}
            for g in groups]


def failures_by_reason(groups: list[FailureGroup]) -> None:
    """Failed items grouped by reason, naming the files, as a table (counts are whole)."""
    st.markdown("**Failed memories by reason**")
    if not groups:
        st.caption("None failed.")
        return
    st.dataframe(pd.DataFrame(failure_rows(groups)), hide_index=True, width="stretch")

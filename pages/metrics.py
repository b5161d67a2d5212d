"""Metrics: how one import went (throughput over time, time per batch, cache hits and
misses, errors by kind), how all imports compare, and two runs side by side. Every
chart's data can be downloaded as CSV."""
import streamlit as st

from components.charts import chart_with_data
from components.feedback import or_stop
from components.job_views import job_figures
from components.resources import engine
from components import format as fmt
from components.figures import (
    batch_table, cache_figure, comparison_figure, comparison_table, errors_figure, errors_table,
    jobs_figure, jobs_table, latency_figure, runs_table, throughput_figure,
)

st.title("Metrics")
st.caption("How fast imports ran, where the time went, and how much the cache saved.")
store = or_stop(engine)
jobs = store.jobs.recent(limit=100)
if not jobs:
    st.info("No imports yet: metrics appear here once the first import has run.")
    st.stop()
by_id = {job.job_id: job for job in jobs}


def describe(job_id: str) -> str:
    job = by_id[job_id]
    return f"{job.label} · {fmt.when(job.started_at or job.created_at)} · {fmt.job_state(job.state, job.failed).lower()}"


one_tab, all_tab, compare_tab = st.tabs(["One import", "All imports", "Compare two"])

with one_tab:
    chosen = st.selectbox("Import", list(by_id), format_func=describe, key="metrics_job")
    job_figures(by_id[chosen], live=False)
    table = batch_table(store.jobs.batches(chosen))
    if table.empty:
        st.caption("No batch has finished yet.")
    else:
        left, right = st.columns(2)
        with left:
            chart_with_data(throughput_figure(table), table[["batch", "elapsed_seconds", "items_per_second", "items_done"]],
                            f"throughput-{chosen}")
        with right:
            chart_with_data(latency_figure(table), table[["batch", "size", "embed_seconds", "write_seconds", "seconds"]],
                            f"batch-latency-{chosen}")
        left, right = st.columns(2)
        with left:
            chart_with_data(cache_figure(table), table[["batch", "cache_hits", "cache_misses"]], f"cache-{chosen}")
        with right:
            errors = errors_table(store.jobs.errors_by_type(chosen))
            if errors.empty:
                st.markdown("**Failures by kind of error**")
                st.caption("Nothing failed.")
            else:
                chart_with_data(errors_figure(errors), errors, f"errors-{chosen}")

with all_tab:
    table = jobs_table(jobs)
    chart_with_data(jobs_figure(table), table, "all-imports")
    st.dataframe(table, hide_index=True, width="stretch")

with compare_tab:
    if len(jobs) < 2:
        st.caption("Run a second import to compare two runs.")
    else:
        left, right = st.columns(2)
        first = left.selectbox("First run", list(by_id), format_func=describe, index=1, key="compare_first")
        second = right.selectbox("Second run", list(by_id), format_func=describe, index=0, key="compare_second")
        if first == second:
            st.caption("Choose two different runs.")
        else:
            st.dataframe(comparison_table(by_id[first], by_id[second]), hide_index=True, width="stretch")
            runs = runs_table({describe(first): batch_table(store.jobs.batches(first)),
                               describe(second): batch_table(store.jobs.batches(second))})
            chart_with_data(comparison_figure(runs), runs[["run", "batch", "elapsed_seconds", "items_done", "items_per_second"]]
                            if not runs.empty else runs, f"compare-{first}-{second}")

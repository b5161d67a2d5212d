"""Metrics: where one import's time went (total time, reading, checking, embedding,
writing and waiting, with the overlap of its batches), its throughput, cache use and
failures by reason; how all imports compare; and two runs side by side in plain words.
Every chart's data can be downloaded as CSV."""
import streamlit as st

from components.charts import chart_with_data
from components.feedback import or_stop
from components.job_views import job_figures
from components.resources import engine
from components import format as fmt
from components.figures import (
    batch_table, cache_figure, comparison_figure, comparison_table, jobs_figure, jobs_table, latency_figure, runs_table,
    throughput_figure,
)
from components.stage_views import failures_by_reason, nothing_happened, stage_totals

st.title("Metrics")
st.caption("How fast imports ran, where the time went, and how much the cache saved.")
store = or_stop(engine)
jobs = store.jobs.recent(limit=100)
if not jobs:
    st.info("No imports yet: metrics appear here once the first import has run.")
    st.stop()
by_id = {job.job_id: job for job in jobs}
# An import named by the address (a link "This import's metrics") is the one shown first,
# even when it is older than the hundred listed.
asked = st.query_params.get("job", "")
if asked and asked not in by_id and (older := store.jobs.get(asked)) is not None:
    by_id = {asked: older, **by_id}
if asked in by_id and st.session_state.get("metrics_job_asked") != asked:
    st.session_state["metrics_job"] = asked
    st.session_state["metrics_job_asked"] = asked


def describe(job_id: str) -> str:
    job = by_id[job_id]
    return f"{job.label} · {fmt.when(job.started_at or job.created_at)} · {fmt.job_state(job.state, job.failed).lower()}"


one_tab, all_tab, compare_tab = st.tabs(["One import", "All imports", "Compare two"])

with one_tab:
    chosen = st.selectbox("Import", list(by_id), format_func=describe, key="metrics_job")
    if chosen != asked:
        st.query_params["job"] = chosen  # the address names the import shown, to share or come back to
        st.session_state["metrics_job_asked"] = chosen
    job_figures(by_id[chosen], live=False)
    timings = store.timings.job(chosen)
    table = batch_table(store.jobs.batches(chosen))
    if table.empty or timings is None:
        st.caption("No batch has finished yet.")
    elif timings.nothing_to_do:
        st.info(nothing_happened(timings), icon=":material/check_circle:")
    else:
        st.subheader("Where the time went")
        stage_totals(timings)
        left, right = st.columns(2)
        with left:
            if len(table) > 1:
                chart_with_data(throughput_figure(table),
                                table[["batch", "elapsed_seconds", "memories_per_second", "memories_done"]],
                                f"throughput-{chosen}")
            else:
                st.markdown("**Throughput over time**")
                st.caption(f"One batch: {fmt.plural(timings.memories, 'memory', 'memories')} in "
                           f"{fmt.duration(timings.batch_wall_seconds)}; a line needs two batches or more.")
        with right:
            chart_with_data(latency_figure(table), table[["batch", "memories", "embed_seconds", "write_seconds", "seconds"]],
                            f"batch-latency-{chosen}")
        chart_with_data(cache_figure(table), table[["batch", "cache_hits", "cache_misses"]], f"cache-{chosen}")
    failures_by_reason(store.timings.failures(chosen) if by_id[chosen].failed else [])

with all_tab:
    table = jobs_table(jobs)
    chart_with_data(jobs_figure(table), table, "all-imports")
    st.dataframe(table.drop(columns=["Seconds"]), hide_index=True, width="stretch")

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
            compared = comparison_table(by_id[first], by_id[second], [store.timings.job(first), store.timings.job(second)])
            st.dataframe(compared, hide_index=True, width="stretch", height=35 * (len(compared) + 1) + 3)
            runs = runs_table({describe(first): batch_table(store.jobs.batches(first)),
                               describe(second): batch_table(store.jobs.batches(second))})
            if runs.empty:
                st.caption("Neither run has a finished batch yet.")
            else:
                chart_with_data(comparison_figure(runs), runs[["run", "batch", "elapsed_seconds", "memories_done",
                                                               "memories_per_second"]], f"compare-{first}-{second}")

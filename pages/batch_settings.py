"""Batch settings: how imports are cut into batches, retried and bounded (BatchConfig),
with each length bucket's recommended range and validation. Saved settings live in the
data folder (batch_config.json) and are what new imports start from; the JSON can be
downloaded and uploaded."""
import json

import streamlit as st

from components.batch_settings import batch_config, use_batch_config
from components.feedback import flash, guarded, show_error, show_flashes
from components.resources import engine
from components.batch_labels import BUCKET_LABELS, BUCKET_LENGTHS, config_from_upload, outside_recommended, recommended
from memsys.config import LENGTH_BUCKETS, BatchConfig, ConfigError

st.title("Batch settings")
st.caption(
    "How imports are cut into batches, how failures are retried, and how much work runs at once. "
    "New imports started from this browser session use these settings."
)
show_flashes()
config = batch_config()
sizes = config.text_type_batch_sizes or {}

with st.form("batch_form"):
    st.markdown("**Batch size by text length**")
    bucket_columns = st.columns(len(LENGTH_BUCKETS))
    new_sizes = {}
    for column, bucket in zip(bucket_columns, LENGTH_BUCKETS):
        new_sizes[bucket] = column.number_input(BUCKET_LABELS[bucket], value=sizes[bucket], step=1,
                                                help=f"How many texts of this length go in one batch; {recommended(bucket)}.")
        column.caption(f"{BUCKET_LENGTHS[bucket].capitalize()}; {recommended(bucket)}")
    left, middle, right = st.columns(3)
    default_batch_size = left.number_input(
        "Records per write (Python API)", value=config.default_batch_size, step=1,
        help="write_memories_batch embeds and writes this many records at a time (default_batch_size). "
             "Imports size their batches by text length, above.")
    min_batch_size = middle.number_input("Smallest batch", value=config.min_batch_size, step=1,
                                         help="Batches shrink down to this under memory pressure.")
    max_batch_size = right.number_input("Largest batch", value=config.max_batch_size, step=1)

    st.markdown("**Retries**")
    left, middle, right = st.columns(3)
    max_retries = left.number_input("Retries per batch", value=config.max_retries, step=1)
    base_retry_delay = middle.number_input("First wait (seconds)", value=float(config.base_retry_delay), step=0.5)
    max_retry_delay = right.number_input("Longest wait (seconds)", value=float(config.max_retry_delay), step=1.0)

    st.markdown("**Concurrency and memory**")
    columns = st.columns(5)
    embed_workers = columns[0].number_input("Embedding workers", value=config.embed_workers, step=1)
    write_workers = columns[1].number_input("Writing workers", value=config.write_workers, step=1)
    queue_depth = columns[2].number_input("Batches waiting", value=config.queue_depth, step=1,
                                          help="Batches embedded ahead of the writers.")
    memory_limit_mb = columns[3].number_input("Memory limit (MB)", value=config.memory_limit_mb, step=64)
    gc_frequency = columns[4].number_input("Free memory every N batches", value=config.gc_frequency, step=1,
                                           help="Runs Python's garbage collector after every N-th batch.")

    st.markdown("**Provider budget** (0: the settings' limits, or what the provider's rate-limit headers say)")
    left, right = st.columns(2)
    requests_per_minute = left.number_input("Requests per minute", value=config.requests_per_minute, step=100, min_value=0)
    tokens_per_minute = right.number_input("Tokens per minute", value=config.tokens_per_minute, step=10_000, min_value=0)

    st.markdown("**Errors and cache**")
    left, middle, right = st.columns(3)
    continue_on_error = left.toggle("Continue after a failed batch", value=config.continue_on_error,
                                    help="Failed items are kept with their reason and can be retried.")
    enable_cache = middle.toggle("Use the embedding cache", value=config.enable_cache,
                                 help="Off: every text is sent to the embedder and nothing is cached.")
    log_errors = right.toggle("Log failed items", value=config.log_errors,
                              help="Write each failed item and its reason to the log, as well as to the job.")

    if st.form_submit_button("Use these settings", type="primary"):
        changes = {
            "text_type_batch_sizes": new_sizes, "default_batch_size": default_batch_size,
            "min_batch_size": min_batch_size, "max_batch_size": max_batch_size,
            "max_retries": max_retries, "base_retry_delay": base_retry_delay, "max_retry_delay": max_retry_delay,
            "embed_workers": embed_workers, "write_workers": write_workers, "queue_depth": queue_depth,
            "memory_limit_mb": memory_limit_mb, "gc_frequency": gc_frequency,
            "requests_per_minute": requests_per_minute, "tokens_per_minute": tokens_per_minute,
            "continue_on_error": continue_on_error, "enable_cache": enable_cache, "log_errors": log_errors,
        }
        try:
            updated = BatchConfig.from_dict({**config.to_dict(), **changes})
        except ConfigError as e:
            show_error(e)
        else:
            use_batch_config(updated)
            config = updated
            st.success("These settings apply to the next import from this session.", icon=":material/check:")

for note in outside_recommended(config):
    st.warning(note, icon=":material/info:")

st.subheader("Keep them")
memsys_engine = engine()
st.caption("Saved settings are what every new import starts from, in every browser session and on the command "
           "line; they are kept in the data folder as batch_config.json.")
left, middle, right = st.columns(3)
if left.button("Save for every new import", icon=":material/save:", type="primary"):
    with guarded():
        memsys_engine.batch.save(config)
        st.success("Saved: new imports start from these settings.", icon=":material/check:")
if middle.button("Go back to the saved settings", icon=":material/history:"):
    with guarded():
        use_batch_config(memsys_engine.batch.saved())
        flash("Loaded the saved settings.")
        st.rerun()
right.download_button("Download as JSON", json.dumps(config.to_dict(), indent=2), file_name="batch_config.json",
                      mime="application/json", icon=":material/download:")

uploaded = st.file_uploader("Load a JSON file from your computer", type=["json"])
if uploaded is not None and st.button("Use the uploaded file"):
    try:
        loaded = config_from_upload(uploaded.name, uploaded.getvalue())
    except ConfigError as e:
        show_error(e)
    else:
        use_batch_config(loaded)
        flash(f"Loaded {uploaded.name}.")
        st.rerun()

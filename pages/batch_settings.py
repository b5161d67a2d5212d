"""Batch settings: what a person decides (faster, gentler on the provider, what happens
on a failure) with the expert bounds folded away; every problem of the form at once,
naming the fields as they are labelled. Saved settings live in the
data folder (batch_config.json) and are what new imports start from; the JSON can be
downloaded and uploaded."""
import json

import streamlit as st

from components.batch_settings import batch_config, setting_number, use_batch_config
from components.feedback import flash, guarded, show_flashes
from components.resources import engine
from components.batch_labels import (BUCKET_LENGTHS, FIELD_LABELS, config_from_upload, labelled, labelled_problems,
                                     outside_recommended, recommended)
from components.explain import sentence
from memsys.config import LENGTH_BUCKETS, BatchConfig, ConfigError, batch_config_problems

st.title("Batch settings")
st.caption(
    "How imports are cut into batches, how failures are retried, and how much work runs at once. "
    "New imports started from this browser session use these settings."
)
show_flashes()
config = batch_config()
sizes = config.text_type_batch_sizes or {}



with st.form("batch_form"):
    st.markdown("**Faster**")
    st.caption("More workers and bigger batches finish an import sooner; they use more memory and send the "
               "embedding provider more at once.")
    left, right, _ = st.columns(3)
    embed_workers = setting_number(left, "embed_workers", config.embed_workers, 1,
                           help="Batches embedded at the same time.")
    write_workers = setting_number(right, "write_workers", config.write_workers, 1,
                           help="Batches written to the memory store at the same time.")
    bucket_columns = st.columns(len(LENGTH_BUCKETS))
    new_sizes = {}
    for column, bucket in zip(bucket_columns, LENGTH_BUCKETS):
        new_sizes[bucket] = setting_number(column, f"text_type_batch_sizes.{bucket}", sizes[bucket], 1,
                                   help=f"How many memories of this length go in one batch; {recommended(bucket)}.")
        column.caption(f"{BUCKET_LENGTHS[bucket].capitalize()}; {recommended(bucket)}")

    st.markdown("**Gentler on the provider**")
    st.caption("Limits and patience for a busy embedding service: fewer requests, and waiting longer before "
               "trying a batch again. 0 a minute: the settings' limits, or what the provider's rate-limit headers say.")
    left, right, _ = st.columns(3)
    requests_per_minute = setting_number(left, "requests_per_minute", config.requests_per_minute, 100)
    tokens_per_minute = setting_number(right, "tokens_per_minute", config.tokens_per_minute, 10_000)
    left, middle, right = st.columns(3)
    max_retries = setting_number(left, "max_retries", config.max_retries, 1)
    base_retry_delay = setting_number(middle, "base_retry_delay", float(config.base_retry_delay), 0.5)
    max_retry_delay = setting_number(right, "max_retry_delay", float(config.max_retry_delay), 1.0)

    st.markdown("**When something fails**")
    left, middle, right = st.columns(3)
    continue_on_error = left.toggle(FIELD_LABELS["continue_on_error"], value=config.continue_on_error,
                                    help="What failed is kept with its reason and can be retried.")
    enable_cache = middle.toggle(FIELD_LABELS["enable_cache"], value=config.enable_cache,
                                 help="Off: every memory is sent to the embedder and nothing is cached.")
    log_errors = right.toggle(FIELD_LABELS["log_errors"], value=config.log_errors,
                              help="Write each failure and its reason to the log, as well as to the import.")

    with st.expander("Expert settings: batch bounds, queue and memory"):
        left, middle, right = st.columns(3)
        default_batch_size = setting_number(
            left, "default_batch_size", config.default_batch_size, 1,
            help="write_memories_batch embeds and writes this many records at a time (default_batch_size). "
                 "Imports size their batches by length, above.")
        min_batch_size = setting_number(middle, "min_batch_size", config.min_batch_size, 1,
                                help="Batches shrink down to this under memory pressure.")
        max_batch_size = setting_number(right, "max_batch_size", config.max_batch_size, 1)
        left, middle, right = st.columns(3)
        queue_depth = setting_number(left, "queue_depth", config.queue_depth, 1,
                             help="Batches embedded ahead of the writers.")
        memory_limit_mb = setting_number(middle, "memory_limit_mb", config.memory_limit_mb, 64)
        gc_frequency = setting_number(right, "gc_frequency", config.gc_frequency, 1,
                              help="Runs Python's garbage collector after every N-th batch.")

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
        wanted = {**config.to_dict(), **changes}
        problems = labelled_problems(batch_config_problems(wanted))
        if problems:
            st.error("These settings cannot be used yet; nothing changed:\n\n" + "\n".join(f"- {p}." for p in problems),
                     icon=":material/error:")
        else:
            config = BatchConfig.from_dict(wanted)
            use_batch_config(config)
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
        st.error(f"{uploaded.name} cannot be used: {sentence(labelled(str(e)))} Correct the file and load it again.",
                 icon=":material/error:")
    else:
        use_batch_config(loaded)
        flash(f"Loaded {uploaded.name}.")
        st.rerun()

"""A cache health report on screen: one sentence on what was found or done, then the
findings, one row each."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from memsys.engine import CacheHealthReport
from components import format as fmt
from components.tables import health_rows


def health_report(report: CacheHealthReport) -> None:
    entries = fmt.plural(report.checked, "cached embedding")
    if report.ok:
        verb = "Repaired" if report.fix else "Checked"
        st.success(f"{verb} {entries} in {fmt.duration(report.seconds)}: all of them can be trusted.",
                   icon=":material/check:")
    elif report.fix:
        rebuilt = " and rebuilt the cache database" if report.rebuilt else ""
        st.success(f"Removed {fmt.plural(len(report.removed), 'cached embedding')} that could not be trusted{rebuilt}. "
                   "Their text is embedded again the next time it is imported.", icon=":material/check:")
    else:
        st.warning(f"{fmt.plural(len(report.bad_entries), 'cached embedding')} of {report.checked:,} cannot be trusted, "
                   f"and {fmt.plural(len(report.database_problems), 'problem')} with the cache as a whole. "
                   "Repair removes them.", icon=":material/warning:")
    rows = health_rows(report)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def prune_hint(info: dict) -> None:
    """What pruning would free: models other than the current one, and vectors not used
    for the clean-up age (MEMSYS_CACHE_UNUSED_DAYS)."""
    others = [m for m in info.get("models", []) if not m["current"]]
    if others:
        freed = sum(m.get("bytes", 0) for m in others)
        st.caption(f"{fmt.size(freed)} belong to {len(others)} model(s) other than the current one: "
                   "`memsys cache prune --model NAME` frees a model's share once no collection uses it.")
    if info.get("unused_days"):
        st.caption(f"Cached embeddings not used for {info['unused_days']} days are removed when an import ends: now "
                   f"{fmt.count(info['unused_entries'])} ({fmt.size(info['unused_bytes'])}).")
    else:
        st.caption("Cached embeddings no import has used for months stay until `memsys cache prune --unused-for 90d` "
                   "(or the MEMSYS_CACHE_UNUSED_DAYS setting) removes them.")

"""The preview of an import as people read it: the files compared with the store (new,
changed, unchanged and to-be-removed documents and memories), what the provider would be
asked and what it costs, and how long it would take at this machine's measured speed. A
re-import of unchanged files says there is nothing to do."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from components import format as fmt
from components.tables import preview_rows, problem_rows
from memsys.engine import EmbedderStatus, ImportPreview

NO_COST = "No provider calls, no cost."


def nothing_to_do_sentence(memories: int) -> str:
    """What a preview, and the result, of an import that changes nothing say."""
    all_of = "the only memory is" if memories == 1 else f"all {memories:,} memories are"
    return f"Nothing to do: {all_of} already stored and unchanged. {NO_COST}"


def comparison_sentence(preview: ImportPreview) -> str:
    """The files against the store, in documents and their memories."""
    parts = []
    if preview.new_documents:
        parts.append(f"{fmt.plural(preview.new_documents, 'new document')} "
                     f"({fmt.plural(preview.new_memories, 'memory', 'memories')})")
    if preview.changed_documents:
        changed = f"{fmt.plural(preview.changed_memories, 'memory', 'memories')} to write"
        if preview.stale_memories:
            changed += f", {fmt.plural(preview.stale_memories, 'stored memory', 'stored memories')} it no longer has to remove"
        parts.append(f"{fmt.plural(preview.changed_documents, 'changed document')} ({changed})")
    if preview.unchanged_documents:
        parts.append(f"{fmt.plural(preview.unchanged_documents, 'unchanged document')} "
                     f"({fmt.plural(preview.unchanged_memories, 'memory', 'memories')} already stored, left as they are)")
    return f"{fmt.and_list(parts)}." if parts else "No document could be read."


def _estimate(preview: ImportPreview) -> tuple[str, str]:
    """The estimated time as shown, and a sentence on where it comes from."""
    if preview.estimated_seconds is None:
        return "not yet", ("Estimated time: no estimate yet. No import on this machine has measured the speed this "
                           "one needs; each import's speed is measured and used for the next estimate.")
    return f"about {fmt.duration(preview.estimated_seconds)}", (
        f"Estimated time: about {fmt.duration(preview.estimated_seconds)}. Reading took "
        f"{fmt.duration(preview.read_seconds)} for this preview; the rest is from the speed the last "
        f"{fmt.plural(preview.speed_jobs, 'import')} reached on this machine.")


def preview_panel(preview: ImportPreview, embedder: EmbedderStatus, mirror: bool = False) -> None:
    """What the import would do to the store, what it cannot read, what it would cost and
    take and, for a mirror import, what it would remove."""
    if preview.nothing_to_do:
        st.success(nothing_to_do_sentence(preview.memories), icon=":material/check_circle:")
    elif preview.memories or preview.mirror_documents:
        st.markdown(f"**Compared with what is stored:** {comparison_sentence(preview)}")
    figures = st.columns(5)
    figures[0].metric("Memories", fmt.count(preview.memories), help="Memories these files make.")
    figures[1].metric("Memories to write", fmt.count(preview.to_write + preview.to_update),
                      help=f"{preview.to_write:,} with new text (embedded, unless cached, and written); "
                           f"{preview.to_update:,} stored with the same text whose details change (written, not embedded).")
    to_remove = preview.stale_memories + (preview.mirror_memories if mirror else 0)
    figures[2].metric("Memories to remove", fmt.count(to_remove),
                      help="Stored memories of changed documents that they no longer have"
                           + (", and of documents gone from these files (mirror)." if mirror else "."))
    figures[3].metric("Unchanged memories", fmt.count(preview.unchanged_memories),
                      help="Already stored exactly like this: not embedded, not written.")
    figures[4].metric("Documents", fmt.count(preview.documents))
    figures = st.columns(5)
    figures[0].metric("Provider calls", fmt.count(preview.provider_calls),
                      help=f"{fmt.plural(preview.to_embed, 'memory', 'memories')} to embed; {preview.cached:,} of the "
                           f"{preview.distinct:,} distinct memories to write are already in the embedding cache "
                           "and cost nothing.")
    paid = preview.price_per_million_tokens > 0
    figures[1].metric("Estimated cost", fmt.money(preview.estimated_cost_usd) if paid and preview.tokens else
                      ("no cost" if paid else "free"),
                      help=(f"{preview.tokens:,} tokens at ${preview.price_per_million_tokens}/million" if paid
                            else f"The {embedder.provider} model costs nothing per call."))
    shown, basis = _estimate(preview)
    figures[2].metric("Estimated time", shown)
    figures[3].metric("Problems", fmt.count(len(preview.problems)))
    st.caption(basis)
    names = []
    if preview.new_names:
        names.append(f"New: {fmt.plain(', '.join(preview.new_names))}")
    if preview.changed_names:
        names.append(f"Changed: {fmt.plain(', '.join(preview.changed_names))}")
    if names:
        st.caption(". ".join(names) + ".")
    if preview.batch_sizes:
        st.caption(f"Batch plan: {fmt.plural(sum(preview.batch_sizes), 'memory', 'memories')} to embed and write "
                   f"in {fmt.plural(len(preview.batch_sizes), 'batch', 'batches')}.")
    if mirror:
        st.caption(f"Mirror: {fmt.plural(preview.mirror_documents, 'document')} "
                   f"({fmt.plural(preview.mirror_memories, 'memory', 'memories')}) that earlier imports of these files had "
                   "and they no longer have would be removed.")
    if preview.ocr_pages:
        st.caption(f"{fmt.plural(preview.ocr_pages, 'scanned page')} will be read by OCR when the import runs "
                   f"(about {fmt.duration(preview.ocr_seconds)}); their memories are not counted above.")
    if preview.sample:
        st.markdown(f"**The first {len(preview.sample)} memories**")
        st.dataframe(pd.DataFrame(preview_rows(preview.sample)), hide_index=True, width="stretch")
    if preview.problems:
        st.markdown("**Problems** (these items are skipped, with their reason; the rest is imported)")
        st.dataframe(pd.DataFrame(problem_rows(preview.problems)), hide_index=True, width="stretch")

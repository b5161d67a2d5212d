"""Knowledge bases on screen: picking one for an import (from the list, or "New…"), with
its part, agent, tags and source folded away as details that default sensibly and are
remembered between sessions; the list of knowledge bases; a knowledge base's documents
with their status; and one document opened to its memories, re-imported or removed."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd
import streamlit as st

from components import format as fmt
from components.feedback import guarded, show_error
from components.fields import parse_tags
from components.inputs import kept
from components.tables import source_of
from memsys.access import AuthorizedEngine
from memsys.engine import (DEFAULT_SOURCE, DocumentStatus, ImportChoice, KnowledgeBase, MemoryDefaults, find_name,
                           tidy_name)

NEW = "New…"
_KB, _NEW_NAME, _PART, _AGENT, _TAGS, _SOURCE = ("import_kb", "import_project", "import_repo", "import_agent",
                                                 "import_tags", "import_source")
_SEEDED, _NOTE, _NEXT = "import_kb_seeded", "import_kb_note", "import_kb_next"
STATUS_LABELS = {"queued": "queued", "reading": "reading", "embedding": "embedding", "ready": "ready",
                 "failed": "failed", "removed": "removed"}
MEMORIES_SHOWN = 200  # a document opens to this many of its memories at most


@dataclass(frozen=True)
class WhoseMemories:
    """What the Import form's "whose memories" inputs say: `project` is "" until a
    knowledge base is chosen (or a new name is acceptable)."""

    project: str
    repo: str
    agent: str
    tags: str
    source: str


def _fold_typed_name(names: list[str]) -> None:
    """A name typed into the knowledge base list that only differs from one in it by case
    or spaces is that one (a person never forks a knowledge base by a typo)."""
    typed = st.session_state.get(_KB)
    if not isinstance(typed, str) or typed in names or typed == NEW:
        return
    found = find_name(typed, names)
    if found is not None:
        st.session_state[_KB] = found
        st.session_state[_NOTE] = f"“{tidy_name(typed)}” is the knowledge base “{found}”."
    elif tidy_name(typed) != typed:
        st.session_state[_KB] = tidy_name(typed)


def _seed_from_last_import(engine: AuthorizedEngine, names: list[str]) -> None:
    """Once a session: the inputs start from what this person's last import used."""
    state = st.session_state
    if state.get(_SEEDED):
        return
    state[_SEEDED] = True
    choice = engine.knowledge.last_choice(engine.actor)
    if choice is None:
        return
    seeds = {_PART: choice.part, _AGENT: choice.agent, _TAGS: ", ".join(choice.tags), _SOURCE: choice.source}
    if choice.knowledge_base in names:
        seeds[_KB] = choice.knowledge_base
    for key, value in seeds.items():
        if value and key not in state:
            state[key] = value


def whose_memories(engine: AuthorizedEngine) -> WhoseMemories:
    """The Import form's knowledge base and its folded-away details."""
    names = engine.knowledge.names()
    _seed_from_last_import(engine, names)
    if (started := st.session_state.pop(_NEXT, None)) in names:
        st.session_state[_KB] = started
        st.session_state.setdefault("_kept_inputs", {})[_KB] = started
    options = [*names, NEW]
    if st.session_state.get(_KB) not in options and not (isinstance(st.session_state.get(_KB), str)
                                                         and st.session_state[_KB].strip()):
        st.session_state.pop(_KB, None)
    chosen = kept(st.selectbox, "Knowledge base", _KB, names[0] if names else NEW, options=options,
                  accept_new_options=True, on_change=_fold_typed_name, args=(names,),
                  help="Where these documents go. Pick one from the list, type its name, or choose New… to start one.")
    if note := st.session_state.pop(_NOTE, None):
        st.caption(fmt.plain(note))
    project, base = "", None
    if chosen == NEW:
        typed = kept(st.text_input, "Name of the new knowledge base", _NEW_NAME, "", placeholder="e.g. Handbook")
        if typed.strip():
            try:
                project = engine.knowledge.check_new(typed)
            except ValueError as refused:
                st.error(f"{fmt.plain(refused)}.", icon=":material/content_copy:")
                existing = find_name(typed, names)
                if existing is not None:
                    st.button(f"Use {existing}", on_click=_use_existing, args=(existing,))
            else:
                st.caption(f"A new knowledge base, “{fmt.plain(project)}”: it is listed once its first import starts.")
    elif isinstance(chosen, str) and chosen.strip():
        project = chosen.strip()
        base = engine.knowledge.get(project)
        st.caption(describe_base(base) if base is not None else
                   f"A new knowledge base, “{fmt.plain(project)}”: it is listed once its first import starts.")
    default_part = base.default_part if base else "main"
    default_agent = base.default_agent if base else "shared"
    with st.expander("More details (optional)"):
        left, right = st.columns(2)
        part = kept(left.text_input, "Part", _PART, "", placeholder=f"{default_part} (leave blank for this)",
                    help="A knowledge base can hold parts (kept apart, searched together). Most need one.")
        agent = kept(right.text_input, "Agent", _AGENT, "", placeholder=f"{default_agent} (leave blank for this)",
                     help="Which assistant these memories belong to; “shared” means every one may use them.")
        left, right = st.columns(2)
        tags = kept(left.text_input, "Tags", _TAGS, "", placeholder="separate with commas")
        source = kept(right.text_input, "Source", _SOURCE, DEFAULT_SOURCE,
                      help="A label for where these documents come from, kept on every memory.")
    return WhoseMemories(project, *details_of(base, part, agent), tags, source)


def details_of(base: KnowledgeBase | None, part: str, agent: str, agent_default: str = "shared") -> tuple[str, str]:
    """The part and agent typed (blank: the knowledge base's usual ones), each folded to
    the knowledge base's own spelling when it differs only in case or spaces."""
    default_part = base.default_part if base else "main"
    default_agent = base.default_agent if base else agent_default
    return (find_name(part, base.parts if base else ()) or tidy_name(part) or default_part,
            find_name(agent, base.agents if base else ()) or tidy_name(agent) or default_agent)


def knowledge_base_field(engine: AuthorizedEngine, column: Any, key: str) -> str:
    """A knowledge base picked from the list or typed (inside a form: a name that differs
    from an existing one only in case or spaces is that one, folded when submitted)."""
    names = engine.knowledge.names()
    chosen = column.selectbox("Knowledge base", names, index=None, accept_new_options=True, key=key,
                              placeholder="Pick one, or type a new name",
                              help="Where this source's documents go: pick one from the list or type a new name.")
    return find_name(chosen or "", names) or tidy_name(chosen or "")


def _use_existing(name: str) -> None:
    st.session_state[_KB] = name
    st.session_state[_NEW_NAME] = ""


def remember_import(engine: AuthorizedEngine, defaults: MemoryDefaults) -> None:
    """Keep what this import used (as typed: blank details stay blank, so they follow the
    knowledge base's own), for this person's next import in any session."""
    state = st.session_state
    with guarded():
        engine.knowledge.remember(engine.actor, ImportChoice(
            defaults.project, str(state.get(_PART) or ""), str(state.get(_AGENT) or ""), parse_tags(state.get(_TAGS)),
            "" if defaults.source == DEFAULT_SOURCE else defaults.source))
    state[_NEXT] = defaults.project  # a new knowledge base is in the list from now on: picked next time


def describe_base(base: KnowledgeBase) -> str:
    """"2 documents, 14 memories; last import 5 minutes ago (completed)"."""
    text = f"{fmt.plural(base.documents, 'document')}, {fmt.plural(base.memories, 'memory', 'memories')}"
    if len(base.parts) > 1:
        text += f" in {len(base.parts)} parts ({fmt.plain(', '.join(base.parts))})"
    if base.last_import_at:
        text += f"; last import {fmt.when(base.last_import_at)} ({fmt.job_state(base.last_import_state, base.last_import_failed).lower()})"
    else:
        text += "; imported before imports were recorded" if base.memories else ""
    return text + "."


def knowledge_base_table(bases: list[KnowledgeBase]) -> None:
    st.table(pd.DataFrame([{
        "Knowledge base": b.name, "Documents": b.documents, "Memories": b.memories,
        "Last import": fmt.when(b.last_import_at) if b.last_import_at else "—",
    } for b in bases]).set_index("Knowledge base"))


def status_summary(documents: list[DocumentStatus]) -> str:
    """"3 ready, 1 failed" in the order a document goes through."""
    counts = {s: sum(1 for d in documents if d.status == s) for s in STATUS_LABELS}
    return ", ".join(f"{n} {STATUS_LABELS[s]}" for s, n in counts.items() if n)


def document_label(document: DocumentStatus, several_parts: bool) -> str:
    part = f" ({document.part})" if several_parts else ""
    return f"{document.source_file}{part}: {STATUS_LABELS[document.status]}"


def document_table(documents: list[DocumentStatus], several_parts: bool) -> int | None:
    """The documents with their status; returns the index of the row selected, if any."""
    rows = []
    for d in documents:
        row = {"Document": d.source_file, "Status": STATUS_LABELS[d.status], "Memories": d.memories,
               "Last change": fmt.when(d.last_change) if d.last_change else "—", "Reason": d.reason or ""}
        if several_parts:
            row["Part"] = d.part
        rows.append(row)
    event = st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", on_select="rerun",
                         selection_mode="single-row", key="kb_documents_table")
    selected = event.selection.rows if event is not None else []
    return selected[0] if selected and selected[0] < len(documents) else None


def document_view(engine: AuthorizedEngine, document: DocumentStatus) -> None:
    """One document: its status, its memories in order, and (for operators) re-import and
    removal."""
    st.subheader(fmt.plain(document.source_file))
    changed = f" · last change {fmt.when(document.last_change)}" if document.last_change else ""
    st.caption(fmt.plain(f"{STATUS_LABELS[document.status]} · {fmt.plural(document.memories, 'memory', 'memories')}"
                         f" · part {document.part}{changed}"))
    if document.status == "failed":
        st.warning(fmt.plain(f"The last import could not bring it in: {document.reason or 'no reason was recorded'}."),
                   icon=":material/error:")
    elif document.is_on_its_way:
        st.info(f"An import is bringing it in ({STATUS_LABELS[document.status]}).", icon=":material/sync:")
    elif document.status == "removed":
        st.info("It was removed: none of its memories are stored. Import its file again to bring it back.",
                icon=":material/delete:")
    if document.document_id and document.memories:
        memories = engine.knowledge.memories_of(document.document_id)
        st.markdown(f"**Its memories, in order** ({fmt.plural(len(memories), 'memory', 'memories')})")
        for number, memory in enumerate(memories[:MEMORIES_SHOWN], start=1):
            with st.container(border=True):
                st.caption(fmt.plain(f"Memory {number} · {source_of(memory)}"))
                st.text(memory.content)
        if len(memories) > MEMORIES_SHOWN:
            st.caption(f"The first {MEMORIES_SHOWN} are shown; search or browse on Memories for the rest.")
    if engine.can("knowledge.defaults_of") and document.memories:
        _reimport(engine, document)
    if engine.can("knowledge.remove_document") and document.memories and not document.is_on_its_way:
        _remove(engine, document)


def _reimport(engine: AuthorizedEngine, document: DocumentStatus) -> None:
    """Upload the document's new version: it replaces the document (same knowledge base,
    part, agent, tags and source), its changed memories re-embedded, its gone ones removed."""
    first, _, rest = document.source_file.partition("/")
    with st.expander("Re-import this document"):
        if rest and PurePosixPath(first).suffix.lower() == ".zip":
            st.caption(fmt.plain(f"It came from {first}: import {first} again on the Import page."))
            return
        upload = st.file_uploader(f"The new version of {PurePosixPath(document.source_file).name}",
                                  key=f"reimport_{document.document_id}")
        clicked = st.button("Re-import", icon=":material/sync:", disabled=upload is None,
                            key=f"reimport_go_{document.document_id}")
        if clicked and upload is not None:
            with guarded():
                defaults = engine.knowledge.defaults_of(document.document_id)
                folder = f"reimport-{uuid.uuid4().hex[:12]}"
                # Saved under the document's own name (and folder), so the import names it
                # the same document, whatever the uploaded copy was called.
                spooled = engine.imports.spool_upload(folder, document.source_file, upload)
                job_id = engine.imports.start([reimport_path(spooled, document.source_file)], defaults,
                                              label=f"re-import of {document.source_file}")
                st.session_state["kb_reimport_job"] = (document.document_id, job_id)
        started = st.session_state.get("kb_reimport_job")
        if started and started[0] == document.document_id:
            _reimport_progress(engine, started[1])


def reimport_path(spooled: Path, source_file: str) -> Path:
    """What to import so a new version saved at `spooled` (under the document's own name)
    is read under that name: the file itself for "notes.md"; for "docs/a/notes.md" (a
    folder's file) the folder "docs" it was saved in."""
    depth = len(PurePosixPath(source_file).parts)
    return spooled.parents[depth - 2] if depth > 1 else spooled


@st.fragment(run_every=1.0)
def _reimport_progress(engine: AuthorizedEngine, job_id: str) -> None:
    """Follows the re-import until it ends, then draws the page again with the new memories."""
    job = engine.jobs.get(job_id)
    if job is None:
        return
    if job.is_active:
        st.info(f"Re-importing: {job.processed:,} of {job.total:,} memories done.", icon=":material/sync:")
    else:
        shown = st.session_state.setdefault("kb_reimport_shown", set())
        if job_id not in shown:
            shown.add(job_id)
            st.rerun(scope="app")
        st.success(f"Re-imported: {job.written:,} memories written, {job.unchanged:,} unchanged, "
                   f"{job.removed:,} removed.", icon=":material/check:")
    st.page_link("pages/import.py", label="See this import", query_params={"job": job_id}, icon=":material/open_in_new:")


def _remove(engine: AuthorizedEngine, document: DocumentStatus) -> None:
    with st.expander("Remove this document"):
        sure = st.checkbox(f"Yes, remove {document.source_file} and its "
                           f"{fmt.plural(document.memories, 'memory', 'memories')} from {document.knowledge_base}",
                           key=f"remove_sure_{document.document_id}")
        st.button("Remove this document", type="primary", icon=":material/delete:", disabled=not sure,
                  on_click=_removed, args=(engine, document), key=f"remove_{document.document_id}")


def _removed(engine: AuthorizedEngine, document: DocumentStatus) -> None:
    """A button callback: runs before the page draws, which then shows the document as removed."""
    try:
        n = engine.knowledge.remove_document(document.document_id)
        st.session_state["kb_removed"] = f"Removed {document.source_file} ({fmt.plural(n, 'memory', 'memories')})."
    except Exception as e:  # shown as a sentence by the page
        st.session_state["kb_removed"] = e


def removal_outcome() -> None:
    outcome = st.session_state.pop("kb_removed", None)
    if isinstance(outcome, BaseException):
        show_error(outcome)
    elif outcome:
        st.success(fmt.plain(outcome), icon=":material/check:")


def documents_section(engine: AuthorizedEngine, name: str) -> None:
    """A knowledge base's documents with their status, and the one opened. While an import
    brings documents in, the section follows it (every two seconds)."""
    moving = any(d.is_on_its_way for d in engine.knowledge.documents(name))
    st.fragment(run_every=2.0 if moving else None)(_documents_of)(engine, name, moving)


def _documents_of(engine: AuthorizedEngine, name: str, was_moving: bool) -> None:
    state = st.session_state
    if "kb_removed" in state:
        st.rerun(scope="app")  # a removal (a button of this section): the whole page shows it
    documents = engine.knowledge.documents(name)
    if was_moving and not any(d.is_on_its_way for d in documents):
        st.rerun(scope="app")  # done: the counts above change, and the section stops following
    if not documents:
        st.info("No documents in it yet.")
        return
    st.markdown(f"**Documents**: {status_summary(documents)}")
    several_parts = len({d.part for d in documents}) > 1
    selected = document_table(documents, several_parts)
    keys = [d.document_id or f"file:{d.part}/{d.source_file}" for d in documents]
    labels = dict(zip(keys, (document_label(d, several_parts) for d in documents)))
    if selected is not None and state.get("kb_document_row") != selected:
        state["kb_document"] = keys[selected]
    state["kb_document_row"] = selected
    if state.get("kb_document") not in keys:
        state.pop("kb_document", None)
    chosen = st.selectbox("Open a document", keys, index=None, key="kb_document", format_func=labels.get,
                          placeholder="Choose a document, or select its row above")
    if chosen is not None:
        document_view(engine, documents[keys.index(chosen)])

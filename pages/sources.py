"""Sources: the folders, repositories and other places a knowledge base is kept in sync with.
Operators add a source and sync it; everyone sees each source's syncs (counts and errors);
admins change where a source reads from, its credential, and remove it."""
import pandas as pd
import streamlit as st

from components import format as fmt
from components.feedback import flash, guarded, or_stop, show_flashes
from components.fields import text_lines
from components.knowledge_views import details_of, knowledge_base_field
from components.resources import engine
from components.task_views import task_result
from memsys.engine import MemoryDefaults

SCHEDULE_HELP = ("'every 30m', 'every 2h', 'cron 0 * * * *' (a cron expression), 'on change' (a folder, watched) "
                 "or empty: only when someone asks")

st.title("Sources")
st.caption("A source is a folder or repository memsys keeps a knowledge base in sync with: each sync fetches only "
           "the documents that changed, imports them, and removes the documents the source no longer has. "
           "When a source cannot be read completely, its sync fails and removes nothing.")
show_flashes()
memsys_engine = or_stop(engine)


def _globs(text: str) -> list[str]:
    return [g.strip() for g in text.replace("\n", ",").split(",") if g.strip()]


def _options(text: str) -> dict[str, str]:
    options = {}
    for line in text_lines(text):
        name, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"option {line!r}: write NAME=VALUE, one per line")
        options[name.strip()] = value.strip()
    return options


def _schedule(source) -> str:  # type: ignore[no-untyped-def]
    text = source.schedule or "only when asked"
    return f"{text} (paused)" if source.paused else text


with guarded():
    sources = memsys_engine.sources.list()
    if sources:
        rows = []
        for s in sources:
            state = f"failing: {s.last_error}" if s.failures else ("synced" if s.last_success_at else "not synced yet")
            rows.append({"Source": s.name, "Kind": s.kind, "Location": s.location, "Schedule": _schedule(s),
                         "Documents": memsys_engine.sources.document_count(s.name),
                         "Last sync": fmt.when(s.last_sync_at) if s.last_sync_at else "never", "State": state})
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.info("No sources yet." + (" Add one below." if memsys_engine.can("sources.add") else ""),
                icon=":material/info:")

if memsys_engine.can("sources.add"):
    with st.expander("Add a source", expanded=not sources, icon=":material/add:"):
        with st.form("add_source"):
            name_col, kind_col = st.columns([2, 1])
            name = name_col.text_input("Name", placeholder="handbook")
            kind = kind_col.selectbox("Kind", memsys_engine.sources.kinds())
            location = st.text_input("Location", placeholder="/srv/shared/handbook, or https://git.example.com/team/docs.git",
                                     help="A folder on the server (under the data directory or the folders the operator "
                                          "allows), or the address of the repository or server.")
            project_col, repo_col, agent_col = st.columns(3)
            project = knowledge_base_field(memsys_engine, project_col, "source_kb")
            repo = repo_col.text_input("Part", placeholder="main (leave blank for this)",
                                       help="A knowledge base can hold parts (kept apart, searched together).")
            agent = agent_col.text_input("Agent", placeholder="sources (leave blank for this)",
                                         help="Which assistant these memories belong to; “shared” means every one "
                                              "may use them.")
            tags = st.text_input("Tags", help="comma-separated, given to every memory")
            include_col, exclude_col = st.columns(2)
            include = include_col.text_input("Include", placeholder="*.md, docs/*", help="empty: every document")
            exclude = exclude_col.text_input("Exclude", placeholder="drafts/*")
            limit_col, schedule_col = st.columns(2)
            limit_mb = limit_col.number_input("Size limit per document (MB)", min_value=0.0, value=0.0, step=1.0,
                                              help="0: the import's own limits only")
            schedule = schedule_col.text_input("Schedule", help=SCHEDULE_HELP)
            options = st.text_area("Options", height=80, placeholder="branch=main\ncommits=yes",
                                   help="One NAME=VALUE per line: git takes branch (or tag), commits=yes (the commit "
                                        "log as memories), timeout (seconds), username.")
            credential = st.text_input("Credential (token or password)", type="password",
                                       help="Kept only in the data directory's secrets file; never shown again.")
            if st.form_submit_button("Add source", type="primary", icon=":material/add:"):
                with guarded():
                    if not project:
                        raise ValueError("Choose the knowledge base this source's documents go to")
                    part, agent = details_of(memsys_engine.knowledge.get(project), repo, agent, agent_default="sources")
                    defaults = MemoryDefaults(project=project, repo=part, agent=agent,
                                              tags=tuple(t.strip() for t in tags.split(",") if t.strip()))
                    added = memsys_engine.sources.add(
                        name, kind, location, defaults=defaults, include=_globs(include), exclude=_globs(exclude),
                        max_bytes=int(limit_mb * 2**20) if limit_mb else None, options=_options(options),
                        schedule=schedule, credential=credential or None)
                    flash(f"Source {added.name} added. Sync it to import its documents.")
                    st.rerun()

if sources:
    st.subheader("A source")
    chosen = st.selectbox("Source", [s.name for s in sources], key="source_chosen")
    with guarded():
        source = memsys_engine.sources.get(chosen)
        credential = ("stored" if memsys_engine.sources.has_credential(source.name)
                      else f"read from ${source.credential_env}" if source.credential_env else "none")
        st.caption(
            f"**{source.kind}** · {source.location} · into {source.defaults.project}/{source.defaults.repo} · "
            f"schedule: {_schedule(source)} · include: {', '.join(source.spec.include) or 'everything'} · "
            f"exclude: {', '.join(source.spec.exclude) or 'nothing'} · credential: {credential}")
        if source.failures and not source.paused:
            st.warning(f"The last {fmt.count(source.failures)} syncs failed: {source.last_error}. "
                       f"Next try {fmt.when(source.next_due_at) if source.next_due_at else 'when asked'}.",
                       icon=":material/sync_problem:")

        if memsys_engine.can("sources.sync"):
            sync_col, pause_col, _ = st.columns([1, 1, 3])
            if sync_col.button("Sync now", type="primary", icon=":material/sync:"):
                st.session_state["source_sync"] = memsys_engine.sources.start_sync(source.name)
            if pause_col.button("Resume" if source.paused else "Pause",
                                icon=":material/play_arrow:" if source.paused else ":material/pause:"):
                (memsys_engine.sources.resume if source.paused else memsys_engine.sources.pause)(source.name)
                st.rerun()
            record = task_result("source_sync", f"Syncing {source.name}")
            if record is not None:
                if record.state == "done":
                    st.success(f"Synced: {record.new} new, {record.changed} changed, {record.unchanged} unchanged, "
                               f"{record.removed} removed documents.", icon=":material/check:")
                else:
                    st.error(f"The sync {record.state}: {record.error}", icon=":material/error:")

        st.markdown("**Syncs**")
        history = memsys_engine.sources.history(source.name, 20)
        if history:
            st.dataframe(pd.DataFrame([{
                "Started": fmt.when(h.started_at), "Why": h.trigger, "State": h.state, "New": h.new,
                "Changed": h.changed, "Unchanged": h.unchanged, "Removed": h.removed, "Failed": h.failed,
                "Import": h.job_id or "—", "Problem": h.error or "",
            } for h in history]), hide_index=True, width="stretch")
        else:
            st.caption("No sync yet.")

        if memsys_engine.can("sources.edit"):
            with st.expander("Change this source (admins)", icon=":material/edit:"):
                with st.form("edit_source"):
                    new_location = st.text_input("Location", value=source.location,
                                                 help="Moving the source to another host forgets its credential.")
                    new_schedule = st.text_input("Schedule", value=source.schedule, help=SCHEDULE_HELP)
                    new_include = st.text_input("Include", value=", ".join(source.spec.include))
                    new_exclude = st.text_input("Exclude", value=", ".join(source.spec.exclude))
                    if st.form_submit_button("Save changes", icon=":material/save:"):
                        with guarded():
                            memsys_engine.sources.edit(source.name, location=new_location, schedule=new_schedule,
                                                       include=_globs(new_include), exclude=_globs(new_exclude))
                            flash(f"Source {source.name} changed.")
                            st.rerun()
                with st.form("source_credential"):
                    new_secret = st.text_input("New credential", type="password",
                                               help="Replaces the stored one; leave empty and name a variable below, "
                                                    "or leave both empty to forget it.")
                    env_name = st.text_input("Or read it from the server's environment variable",
                                             value=source.credential_env)
                    if st.form_submit_button("Save credential", icon=":material/key:"):
                        with guarded():
                            memsys_engine.sources.set_credential(source.name, new_secret or None, env=env_name or None)
                            flash(f"The credential of {source.name} was changed.")
                            st.rerun()
        if memsys_engine.can("sources.remove"):
            with st.expander("Remove this source (admins)", icon=":material/delete:"):
                documents = memsys_engine.sources.document_count(source.name)
                delete_documents = st.checkbox(f"Also delete the memories of its {fmt.count(documents)} documents")
                sure = st.checkbox(f"Yes, remove {source.name}, its history and its credential")
                if st.button("Remove source", disabled=not sure, icon=":material/delete:"):
                    deleted = memsys_engine.sources.remove(source.name, delete_documents=delete_documents)
                    flash(f"Source {source.name} removed" + (f"; {fmt.count(deleted)} memories deleted." if deleted else "."))
                    st.rerun()

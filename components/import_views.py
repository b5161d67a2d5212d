"""The Import page's pieces: files that go to the spool the moment they arrive, the
column mapping for csv/jsonl files, and the preview of what an import would do."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import streamlit as st

from components.feedback import guarded
from components import format as fmt
from components.preview_views import preview_panel as compared_panel
from components.task_views import cancel_task, task_result
from memsys.access import AuthorizedEngine
from memsys.engine import (MAPPED_FIELDS, OLD_OFFICE_TYPES, UPLOAD_CAPTION, UPLOAD_TYPES, FieldMapping, ImportPreview,
                           save_as_advice)
from memsys.units import documents_title

AUTOMATIC = "(found by name)"
NO_ID = "(none: the file is one document)"
_FILES, _ROUND, _REFUSED = "import_files", "uploader_round", "uploads_refused"
# More files than this waiting to be imported are listed folded, under one line.
FILES_SHOWN = 5
_PREVIEW_TASK, _PREVIEW_INPUTS = "import_preview_task", "import_preview_inputs"
_MIRROR_TASK = "import_mirror_check"


def spooled_files(engine: AuthorizedEngine) -> list[Path]:
    """An uploader whose files are copied to the spool at once (the uploader is then
    replaced, so Streamlit lets go of them), and the list of files waiting to be imported."""
    files: list[dict] = st.session_state.setdefault(_FILES, [])
    round_no = st.session_state.setdefault(_ROUND, 0)
    uploads = st.file_uploader(
        "Documents: drag files (or a zip of them) here, or click Upload",
        type=[*UPLOAD_TYPES, *OLD_OFFICE_TYPES], accept_multiple_files=True, key=f"uploader_{round_no}",
    )
    st.caption(f"memsys reads {UPLOAD_CAPTION}.")
    if uploads:
        refused = st.session_state[_REFUSED] = []
        with guarded():
            for upload in uploads:
                advice = save_as_advice(upload.name)
                if advice:  # taken by the uploader only to say how to convert it
                    refused.append(f"{upload.name} {advice}.")
                    continue
                path = engine.imports.spool_upload(upload.file_id, upload.name, upload)
                files.append({"name": upload.name, "path": str(path), "size": upload.size})
            st.session_state[_ROUND] = round_no + 1
            st.rerun()
    for message in st.session_state.get(_REFUSED, []):
        st.warning(fmt.plain(message), icon=":material/block:")
    if len(files) > FILES_SHOWN:
        with st.expander(f"{fmt.plain(documents_title([f['name'] for f in files]))} "
                         f"({fmt.size(sum(f['size'] for f in files))})"):
            _file_rows(files)
    else:
        _file_rows(files)
    return [Path(item["path"]) for item in files]


def _file_rows(files: list[dict]) -> None:
    """Each file waiting to be imported, with its size and a Remove button."""
    for index, item in enumerate(files):
        name, size, remove = st.columns([6, 2, 1])
        name.markdown(f":material/description: {fmt.plain(item['name'])}")
        size.caption(fmt.size(item["size"]))
        if remove.button("Remove", key=f"remove_{index}_{item['path']}"):
            files.pop(index)
            st.rerun()


def forget_files() -> None:
    """The files went into an import; the next one starts with an empty list."""
    st.session_state[_FILES] = []
    st.session_state[_REFUSED] = []


_COLUMN_LABELS = {"record_id": "Row id column"}
_COLUMN_HELP = {"record_id": "Each row becomes a document of its own, known by this id: importing the file again "
                             "replaces a changed row, and a mirror import removes the rows that are gone."}


def column_mapping(engine: AuthorizedEngine, structured: list[Path]) -> FieldMapping:
    """Which column of the csv/jsonl files fills which memory field."""
    st.caption("Which column fills which field. Columns with the usual names (content, text, project, tags…) "
               "are found by themselves; a row's own project, repo, agent or tags win over the fields above.")
    options = [AUTOMATIC, *dict.fromkeys(c for p in structured for c in engine.imports.columns_in(p))]
    chosen = {
        field_name: column.selectbox(_COLUMN_LABELS.get(field_name, f"{field_name.capitalize()} column"),
                                     [NO_ID if field_name == "record_id" else AUTOMATIC, *options[1:]],
                                     key=f"map_{field_name}",
                                     help=_COLUMN_HELP.get(field_name))
        for column, field_name in zip(st.columns(len(MAPPED_FIELDS)), MAPPED_FIELDS)
    }
    separator = st.text_input("Tags in a cell are separated by", value=",", max_chars=3)
    return FieldMapping(**{f: (None if c in (AUTOMATIC, NO_ID) else c) for f, c in chosen.items()}, tag_separator=separator or ",")


def preview_panel(preview: ImportPreview, engine: AuthorizedEngine, mirror: bool = False) -> None:
    """What the import would do (components/preview_views.py)."""
    compared_panel(preview, engine.status.embedder(), mirror=mirror)


def preview_task(engine: AuthorizedEngine, clicked: bool, inputs: str, start: Callable[[], str], mirror: bool = False) -> None:
    """The preview, read in the background so a slow file never holds up the page:
    `start()` begins it when `clicked`; while it runs, a progress line and a Cancel button
    refresh on their own; once done, its panel, for as long as `inputs` (what it was made
    from) still describe the page. Changed inputs stop a preview that is still reading."""
    state = st.session_state
    if clicked:
        cancel_task(_PREVIEW_TASK)
        with guarded():
            state[_PREVIEW_TASK] = start()
            state[_PREVIEW_INPUTS] = inputs
    if state.get(_PREVIEW_INPUTS) != inputs:
        cancel_task(_PREVIEW_TASK)
        return
    preview = task_result(_PREVIEW_TASK, "Reading the files for the preview", cancellable=True)
    if preview is not None:
        preview_panel(preview, engine, mirror=mirror)


def mirror_check(begin_now: bool, begin: Callable[[], str]) -> ImportPreview | None:
    """What a mirror import would remove, read in the background like the preview (the
    files are read to know which documents they still have): `begin()` starts the read
    when `begin_now`; while it runs, a progress line and a Cancel button. Returns the
    finished read once, then forgets it."""
    state = st.session_state
    if begin_now:
        cancel_task(_MIRROR_TASK)
        with guarded():
            state[_MIRROR_TASK] = begin()
    if not state.get(_MIRROR_TASK):
        return None
    found = task_result(_MIRROR_TASK, "Reading the files to see what a mirror would remove", cancellable=True)
    if found is not None:
        state.pop(_MIRROR_TASK, None)
    return found

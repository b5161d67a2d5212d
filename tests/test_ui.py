"""The dashboard's plain helpers (components/ modules that do not draw), tested without Streamlit."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from memsys.config import BatchConfig, ConfigError
from memsys.errors import EmbeddingAuthError, StoreUnavailableError
from memsys.jobs import JobProgress
from memsys.jobs.metrics import BatchRecord
from components import figures, guidance
from components import format as fmt
from components.batch_labels import config_from_upload, outside_recommended
from memsys.engine import Imports
from components.explain import explain, sentence
from components.guidance import next_steps
from components.knowledge_views import reimport_path
from components.fields import import_defaults, memory_filter, parse_tags, text_lines
from components.session_settings import describe, fingerprint, load_settings
from memsys.tasks import CANCELLED, DONE, FAILED, TaskProgress, TaskRunner

KEY = "sk-unit-SENTINEL-0a1b2c3d4e5f6789"
NO_SECRETS = Path("/nonexistent/secrets.toml")


# --- errors as sentences ----------------------------------------------------------------

def test_an_error_becomes_a_sentence_with_a_next_step() -> None:
    told = explain(EmbeddingAuthError("the embedding service refused the API key (401): check OPENAI_API_KEY"))
    assert told.sentence.startswith("The embedding service refused the API key (401): check OPENAI_API_KEY.")
    assert "Settings page" in told.sentence


def test_no_secret_survives_in_the_sentence_or_the_details() -> None:
    try:
        raise StoreUnavailableError(f"cannot connect with key {KEY}")
    except StoreUnavailableError as e:
        told = explain(e, secrets=[KEY])
    assert KEY not in told.sentence and KEY not in told.details
    assert "Traceback" in told.details


def test_an_unexpected_error_is_named_without_its_message() -> None:
    told = explain(RuntimeError(f"internal state {KEY}"))
    assert told.sentence.startswith("Something unexpected went wrong (RuntimeError).")
    assert KEY not in told.details  # shaped like a key: scrubbed even when not listed


def test_a_message_starting_with_a_setting_name_keeps_its_spelling() -> None:
    assert sentence("max_retries is -1") == "max_retries is -1."
    assert sentence("cannot connect") == "Cannot connect."


# --- numbers and times -------------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [(0, "0 bytes"), (1536, "1.5 KB"), (5 * 2**30, "5.0 GB")])
def test_sizes_read_like_sizes(value: int, shown: str) -> None:
    assert fmt.size(value) == shown


@pytest.mark.parametrize("seconds, shown", [(None, "—"), (2.25, "2.2 s"), (75, "1 min 15 s"), (7300, "2 h 1 min")])
def test_durations_read_like_durations(seconds: float | None, shown: str) -> None:
    assert fmt.duration(seconds) == shown


def test_batch_plans_are_listed_or_summarised() -> None:
    assert fmt.batch_plan([60, 60, 12]) == "3 batches of 60, 60 and 12 memories"
    assert fmt.batch_plan([1]) == "1 batch of 1 memory"
    assert fmt.batch_plan([40] * 20 + [5]) == "21 batches of 5 to 40 memories (about 38 each)"
    assert fmt.batch_plan([]).startswith("no batches")


# --- inputs --------------------------------------------------------------------------------

def test_tags_are_split_trimmed_and_kept_once() -> None:
    assert parse_tags(" alpha, beta ,alpha,, ") == ("alpha", "beta")


def test_a_blank_filter_field_does_not_filter() -> None:
    where = memory_filter(project="demo", repo=" ", tags="a, b")
    assert (where.project, where.repo, where.agent, where.tags) == ("demo", None, None, ("a", "b"))


def test_import_defaults_name_every_missing_field() -> None:
    with pytest.raises(ValueError, match="choose a knowledge base from the list, or New… and type its name"):
        import_defaults(project="", repo="docs", agent=" ")
    with pytest.raises(ValueError, match="fill in the repo and agent"):
        import_defaults(project="handbook", repo=" ", agent="")
    assert import_defaults("p", "r", "a", "x, y").tags == ("x", "y")


def test_warm_up_texts_are_one_per_line_each_once() -> None:
    assert text_lines("one\n\n two \none\n") == ["one", "two"]


def test_csv_and_jsonl_columns_are_read_from_the_first_block(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text;project;labels\nhello;p;x\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"body": "x", "team": "t"}\n{"body": "y", "owner": "o"}\n', encoding="utf-8")
    assert Imports.columns_in(tmp_path / "a.csv") == ["text", "project", "labels"]
    assert Imports.columns_in(tmp_path / "b.jsonl") == ["body", "team", "owner"]


# --- batch settings --------------------------------------------------------------------------

def test_sizes_outside_the_seeds_ranges_are_named() -> None:
    config = BatchConfig(text_type_batch_sizes={"short": 90, "medium": 40, "long": 25, "very_long": 15})
    notes = outside_recommended(config)
    assert len(notes) == 1 and "90 is outside the recommended 40–60" in notes[0]


def test_an_uploaded_config_is_read_like_a_file_and_named_in_errors() -> None:
    assert config_from_upload("mine.json", json.dumps({"max_retries": 4}).encode()).max_retries == 4
    with pytest.raises(ConfigError, match="mine.json is not valid JSON"):
        config_from_upload("mine.json", b"{not json")


# --- session settings ------------------------------------------------------------------------

def test_session_overrides_go_through_the_same_validation() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        load_settings({"provider": "openai"}, env={}, secrets_path=NO_SECRETS)
    with pytest.raises(ConfigError, match="cannot be changed"):
        load_settings({"data_dir": "/tmp/x"}, env={}, secrets_path=NO_SECRETS)
    settings = load_settings({"provider": "openai", "openai_api_key": KEY}, env={}, secrets_path=NO_SECRETS)
    assert settings.embedding_provider == "openai" and settings.openai_api_key.get() == KEY


def test_every_node_of_a_cluster_is_a_setting_and_a_sessions_server_replaces_them() -> None:
    nodes = "http://127.0.0.1:24100?grpc=24101, http://ops:pw-SENTINEL-9@127.0.0.1:24110?grpc=24111"
    env = {"WEAVIATE_URLS": nodes, "WEAVIATE_API_KEY": KEY}
    settings = load_settings(env=env, secrets_path=NO_SECRETS)
    assert settings.weaviate_url == "http://127.0.0.1:24100?grpc=24101"
    assert settings.weaviate_nodes == ("http://127.0.0.1:24100?grpc=24101",
                                       "http://ops:pw-SENTINEL-9@127.0.0.1:24110?grpc=24111")
    assert "pw-SENTINEL-9" in settings.secrets
    shown = [r.value for r in describe(settings, {}) if r.name == "Weaviate URL"]
    assert shown == ["http://127.0.0.1:24100?grpc=24101, http://127.0.0.1:24110?grpc=24111"]
    # WEAVIATE_URL picks the node to start with.
    started = load_settings(env={**env, "WEAVIATE_URL": "http://ops:pw-SENTINEL-9@127.0.0.1:24110?grpc=24111"},
                            secrets_path=NO_SECRETS)
    assert started.weaviate_nodes[0].endswith("24110?grpc=24111") and len(started.weaviate_nodes) == 2
    # A session's own server is the only one it talks to, and the key stays with the nodes.
    session = load_settings({"weaviate_url": "http://127.0.0.1:9999"}, env=env, secrets_path=NO_SECRETS)
    assert session.weaviate_nodes == ("http://127.0.0.1:9999",) and not session.weaviate_api_key
    one_of_them = load_settings({"weaviate_url": "http://127.0.0.1:24100?grpc=24101"}, env=env, secrets_path=NO_SECRETS)
    assert one_of_them.weaviate_api_key.get() == KEY
    with pytest.raises(ConfigError, match="enter one server here"):
        load_settings({"weaviate_url": "http://127.0.0.1:24100?grpc=24101,http://127.0.0.1:9999"}, env=env,
                      secrets_path=NO_SECRETS)
    # The configured server on another gRPC port is another endpoint: the key does not go there.
    single = {"WEAVIATE_URL": "http://127.0.0.1:24100", "MEMSYS_WEAVIATE_GRPC_PORT": "24101", "WEAVIATE_API_KEY": KEY}
    assert load_settings({"weaviate_grpc_port": "24101"}, env=single, secrets_path=NO_SECRETS).weaviate_api_key
    assert not load_settings({"weaviate_grpc_port": "9998"}, env=single, secrets_path=NO_SECRETS).weaviate_api_key
    not_http = r"is not a http\(s\) URL"
    for bad, problem in [("ftp://127.0.0.1:1", not_http), ("http://127.0.0.1:1?grpc=x", not_http),
                         ("http://127.0.0.1:port", "is not a URL")]:
        with pytest.raises(ConfigError, match=f"WEAVIATE_URLS: '{re.escape(bad)}' {problem}"):
            load_settings(env={"WEAVIATE_URLS": bad}, secrets_path=NO_SECRETS)
    with pytest.raises(ConfigError, match="WEAVIATE_URL is not one of WEAVIATE_URLS"):
        load_settings(env={**env, "WEAVIATE_URL": "http://127.0.0.1:1"}, secrets_path=NO_SECRETS)


def test_settings_are_described_and_fingerprinted_without_their_secrets() -> None:
    settings = load_settings({"provider": "openai", "openai_api_key": KEY}, env={}, secrets_path=NO_SECRETS)
    rows = describe(settings, {"openai_api_key": KEY})
    assert all(KEY not in row.value for row in rows)
    assert [r.value for r in rows if r.name == "OpenAI API key"] == ["set"]
    assert [r.value for r in rows if r.name == "OCR of scanned PDFs"] == ["on (chi_sim+jpn+eng)"]
    assert KEY not in fingerprint(settings)
    other = settings.replace(openai_api_key=type(settings.openai_api_key)("sk-another-key-000000"))
    assert fingerprint(other) != fingerprint(settings)


# --- charts ------------------------------------------------------------------------------------

def _batch(no: int, start: float, seconds: float, size: int = 10, hits: int = 2) -> BatchRecord:
    return BatchRecord("job", no, size, seconds * 0.8, seconds * 0.2, seconds, hits, size - hits, size, 0, 0, 0,
                       start, start + seconds)


def test_the_batch_table_measures_time_from_the_first_batch() -> None:
    table = figures.batch_table([_batch(2, 101.0, 2.0), _batch(1, 100.0, 1.0)])
    assert list(table["batch"]) == [1, 2]
    assert list(table["elapsed_seconds"]) == [1.0, 3.0]
    assert list(table["memories_done"]) == [10, 20]
    # Memories done so far over the time since the first batch started: no spike when
    # two overlapping batches finish together.
    assert list(table["memories_per_second"]) == [10.0, 6.67]


def test_two_batches_finishing_together_draw_no_spike() -> None:
    table = figures.batch_table([_batch(1, 100.0, 2.0), _batch(2, 100.5, 1.5)])
    assert list(table["memories_per_second"]) == [5.0, 10.0]


def test_every_chart_draws_from_its_table() -> None:
    table = figures.batch_table([_batch(1, 100.0, 1.0), _batch(2, 101.0, 2.0)])
    for figure in (figures.throughput_figure(table), figures.latency_figure(table), figures.cache_figure(table)):
        assert figure.data
    # Batch numbers and counts on whole-number ticks.
    assert figures.cache_figure(table).layout.yaxis.dtick == 2
    assert figures.latency_figure(table).layout.xaxis.dtick == 1
    runs = figures.runs_table({"a": table, "b": table.iloc[:0]})
    assert set(runs["run"]) == {"a"}
    assert figures.comparison_figure(runs).data


# --- background tasks ----------------------------------------------------------------------------

def test_a_task_reports_progress_and_keeps_its_result_or_error() -> None:
    runner = TaskRunner()

    def work(progress):  # type: ignore[no-untyped-def]
        progress(1, 2)
        return "result"

    ok = runner.submit("ok", work)
    bad = runner.submit("bad", lambda progress: 1 / 0)
    deadline = time.monotonic() + 10
    while not (runner.get(ok).finished and runner.get(bad).finished):  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert (runner.get(ok).state, runner.get(ok).result, runner.get(ok).done) == (DONE, "result", 1)  # type: ignore[union-attr]
    assert runner.get(bad).state == FAILED and isinstance(runner.get(bad).error, ZeroDivisionError)  # type: ignore[union-attr]


def test_a_cancelled_task_stops_when_it_checks_and_ends_cancelled() -> None:
    runner = TaskRunner()
    checks = []

    def work(progress: TaskProgress) -> str:
        while not progress.cancelled():
            checks.append(1)
            time.sleep(0.01)  # a task doing work in small steps
        return "partial"

    task_id = runner.submit("long", work)
    deadline = time.monotonic() + 10
    while not checks:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert runner.cancel(task_id)
    assert runner.get(task_id).cancel_requested  # type: ignore[union-attr]
    while not runner.get(task_id).finished:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    status = runner.get(task_id)
    assert status is not None and status.state == CANCELLED and status.cancelled and status.result is None
    assert not runner.cancel(task_id)  # nothing left to cancel


def _job(state: str, failed: int = 0) -> JobProgress:
    return JobProgress("j1", state, 10, 10 - failed, 0, failed, 10, 1.0, None, 0, 1, 0, 0, 0.0, 0.0, None, None, "",
                       True, {"label": "notes.txt"})


def test_next_steps_put_what_needs_attention_first() -> None:
    assert next_steps(None, [])[0].page == guidance.SETTINGS
    assert next_steps(0, [])[0].text == "The store is empty: import your first documents."
    steps = next_steps(10, [_job("completed", failed=2), _job("interrupted")])
    assert steps[0].text.startswith("1 import was interrupted")
    assert "notes.txt has 2 failures" in steps[1].text


def test_a_reimported_version_is_read_under_its_documents_own_name(tmp_path: Path) -> None:
    assert reimport_path(tmp_path / "up" / "notes.md", "notes.md") == tmp_path / "up" / "notes.md"
    # A folder's file ("docs/a/notes.md") is read from its folder, which names it so again.
    assert reimport_path(tmp_path / "up" / "docs" / "a" / "notes.md", "docs/a/notes.md") == tmp_path / "up" / "docs"

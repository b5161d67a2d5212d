"""One glossary for what people read (DESIGN.md, "What people work with"): a document is cut
into memories, and memories are the counted unit; an import's state has one name,
`memsys.units.job_state`. Every page app.py's navigation registers (found from app.py, so
a page added later is checked too) is rendered under Streamlit's AppTest against a store
holding an import that went well and one with a failure; the CLI's --help and the README's
sections for people are read the same way."""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path
from typing import Iterator

import pytest
import streamlit as st
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from memsys import Settings
from memsys.cli.main import build_parser
from memsys.store import server as memsys_server
from memsys.units import JOB_STATES, documents_title, job_state

from conftest import REPO, run_memsys
from dashboard_support import iter_strings, memsys_env

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STARTUP = 180
# Other words for the counted unit: any plural, or a singular after a number ("3 item").
OTHER_UNITS = re.compile(r"\b(items|texts|vectors|entries|chunks)\b", re.I)
COUNTED_OTHERWISE = re.compile(r"\b\d[\d,]*\s+(item|text|vector|entry|chunk)\b", re.I)
# Phrases that use one of those words for something that is not the counted unit; each says why.
ALLOWED = (
    "Include vectors (restorable without embedding)",  # the export carries each memory's vector, not a count
    "--vectors",  # the export flag's name (code, not words)
)
# A stored state written raw where people read it, instead of its label.
RAW_STATES = re.compile(r"\b(completed_with_failures|cancelling|planning|queued)\b")
CLEARED = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "WEAVIATE_URL", "WEAVIATE_API_KEY", "MEMSYS_EMBEDDING_MODEL",
           "MEMSYS_EMBEDDING_DIMENSIONS", "MEMSYS_COLLECTION")


def navigation_pages() -> list[str]:
    """Every page file app.py registers with st.Page, read from its source."""
    tree = ast.parse((REPO / "app.py").read_text(encoding="utf-8"))
    pages = [node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Page"
             and node.args and isinstance(node.args[0], ast.Constant)]
    assert len(pages) >= 8, pages
    return pages


def wrong_words(text: str) -> list[str]:
    for phrase in ALLOWED:
        text = text.replace(phrase, "")
    return [m.group(0) for m in OTHER_UNITS.finditer(text)] + [m.group(0) for m in COUNTED_OTHERWISE.finditer(text)]


def page_strings(at: AppTest) -> Iterator[str]:
    """Every string the page sends to the browser (labels, help, bodies, options, table
    cells), from each element's message."""
    def walk(node):  # type: ignore[no-untyped-def]
        proto = getattr(node, "proto", None)
        if proto is not None and not isinstance(proto, (bytes, str)):
            yield from iter_strings(MessageToDict(proto))
        for child in getattr(node, "children", {}).values():
            yield from walk(child)
    yield from walk(at._tree)
    for table in at.dataframe:
        frame = table.value
        yield from (str(c) for c in frame.columns)
        for column in frame.columns:
            if frame[column].dtype == object:
                yield from (str(v) for v in frame[column])


@pytest.fixture(scope="module")
def store_with_imports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A data folder with two imports made by the CLI: one that went well, one with a file
    that cannot be read (a failure)."""
    data_dir = tmp_path_factory.mktemp("glossary-data")
    env = memsys_env(data_dir)
    good = tmp_path_factory.mktemp("glossary-good")
    (good / "harbour.md").write_text("# Harbour\n\nThe harbour master keeps a log of every ship that docks.\n")
    (good / "orchard.md").write_text("# Orchard\n\nApple trees in the orchard flower in spring.\n")
    broken = tmp_path_factory.mktemp("glossary-broken")
    (broken / "lake.md").write_text("# Lake\n\nA quiet lake lies below the hills.\n")
    (broken / "scan.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    with pytest.MonkeyPatch.context() as mp:
        for name in CLEARED:
            mp.delenv(name, raising=False)
        for name, value in env.items():
            mp.setenv(name, value)
        for folder, project in ((good, "glossary"), (broken, "glossary-broken")):
            done = run_memsys(["import", str(folder), "--project", project, "--repo", "docs", "--agent", "test"], env)
            assert "written" in done.stdout, done.stdout + done.stderr
        mp.chdir(tmp_path_factory.mktemp("glossary-cwd"))
        st.config.set_option("server.address", "127.0.0.1")
        yield env
        st.cache_resource.clear()
        memsys_server.stop_server(Settings.load(env=env, secrets_path=Path("/nonexistent")))


def test_the_pages_are_found_from_the_navigation() -> None:
    pages = navigation_pages()
    assert "pages/home.py" in pages and "pages/batch_settings.py" in pages
    assert all((REPO / p).is_file() for p in pages), pages


@pytest.mark.parametrize("page", navigation_pages())
def test_every_page_counts_in_memories_and_names_job_states_one_way(store_with_imports: dict[str, str],
                                                                    page: str) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    strings = list(page_strings(at))
    assert strings, f"{page} showed nothing"
    wrong = sorted({w for s in strings for w in wrong_words(s)})
    assert not wrong, f"{page} counts in other words than memories: {wrong}"
    raw = sorted({m.group(0) for s in strings for m in RAW_STATES.finditer(s)})
    assert not raw, f"{page} shows stored job states instead of their names: {raw}"
    for table in at.dataframe:
        if "State" in table.value.columns:
            assert set(table.value["State"]) <= set(JOB_STATES.values()), (page, set(table.value["State"]))
    assert not any("Traceback (most recent call last)" in s or 'File "/' in s for s in strings), page


def test_home_names_an_import_with_a_failure_as_every_page_does(store_with_imports: dict[str, str]) -> None:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    at.run()
    # Recent imports: each a link to its import, its outcome beside it ("<state>: 3 memories written").
    states = {c.value.split(":")[0] for c in at.caption if ":" in c.value and c.value.split(":")[0] in JOB_STATES.values()}
    assert states == {JOB_STATES["completed"], JOB_STATES["completed_with_failures"]}


def help_texts(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """(command, its --help) for the parser and every subcommand under it."""
    yield parser.prog, parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from help_texts(sub)


def test_the_command_line_help_counts_in_memories() -> None:
    wrong = {command: words for command, text in help_texts(build_parser()) if (words := wrong_words(text))}
    assert not wrong, wrong


# The README's sections written for people who use memsys (not its developers' reference).
FOR_PEOPLE = ("# memsys", "## Dashboard", "## Documents memsys reads")


def readme_prose() -> Iterator[tuple[str, str]]:
    """(section, line) for the prose lines (not code) of the sections in FOR_PEOPLE."""
    section, in_code = "", False
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
            continue
        if not in_code and re.match(r"#{1,2} ", line):
            section = line.strip()
            continue
        if not in_code and section in FOR_PEOPLE:
            yield section, re.sub(r"`[^`]*`", "", line)  # code spans name code, not the unit


def test_the_readme_counts_in_memories_where_it_speaks_to_people() -> None:
    lines = list(readme_prose())
    assert {s for s, _ in lines} == set(FOR_PEOPLE)
    wrong = [(section, line) for section, line in lines if wrong_words(line)]
    assert not wrong, wrong


def test_one_mapping_names_a_job_state_from_its_stored_state_and_failures() -> None:
    assert job_state("completed") == "Completed"
    assert job_state("completed", failed=1) == "Finished with failures"
    assert job_state("interrupted", failed=3) == "Interrupted (can be resumed)"


def test_an_import_title_names_two_files_and_counts_the_rest() -> None:
    assert documents_title(["a.md"]) == "a.md"
    assert documents_title(["a.md", "b.md"]) == "a.md and b.md"
    assert documents_title([f"{c}.md" for c in "abcdefgh"]) == "8 documents: a.md, b.md and 6 more"


def open_import_page() -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=STARTUP)
    at.run()
    at.switch_page("pages/import.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_an_old_word_file_is_refused_with_how_to_save_it(store_with_imports: dict[str, str]) -> None:
    at = open_import_page()
    at.file_uploader[0].set_value([("report.doc", b"\xd0\xcf\x11\xe0 old", "application/msword"),
                                   ("notes.md", b"# Notes\n\nA short note.", "text/markdown")])
    at.run()
    warnings = [str(w.value) for w in at.warning]
    assert any("report.doc is an old Word file (.doc)" in w and "save it as .docx" in w for w in warnings), warnings
    assert not any("not allowed" in w for w in warnings)
    assert [m for m in (str(m.value) for m in at.markdown) if "notes.md" in m]  # the other file is kept
    assert not [m for m in (str(m.value) for m in at.markdown) if "report.doc" in m and "description" in m]


def test_many_files_are_folded_under_one_line(store_with_imports: dict[str, str]) -> None:
    at = open_import_page()
    at.file_uploader[0].set_value([(f"{c}.md", f"# {c}\n\nNote {c}.".encode(), "text/markdown") for c in "abcdefghi"])
    at.run()
    labels = [e.label for e in at.expander]
    assert any(label.replace("\\", "").startswith("9 documents: a.md, b.md and 7 more") for label in labels), labels


def test_an_error_on_a_page_shows_a_reference_and_keeps_its_details_in_the_log(
        caplog: pytest.LogCaptureFixture) -> None:
    def page() -> None:
        from components.feedback import show_error  # AppTest runs this function's body as the script
        try:
            raise ValueError("the project field is empty")
        except ValueError as e:
            show_error(e)

    at = AppTest.from_function(page)
    with caplog.at_level("WARNING", logger="memsys.dashboard"):
        at.run()
    [shown] = [str(e.value) for e in at.error]
    reference = re.search(r"Reference ([0-9a-f]{4}): the details are in the log\.", shown)
    assert shown.startswith("The project field is empty.") and reference, shown
    assert "Traceback" not in shown and not at.expander
    assert any(reference.group(1) in r.getMessage() and "Traceback" in r.getMessage() for r in caplog.records)

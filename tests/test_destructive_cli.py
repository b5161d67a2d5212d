"""Every command that deletes or overwrites, run as a real process against the session's
embedded Weaviate and the real local embedder: it says what it would do, then asks on a
terminal (driven through a pty) or needs --yes without one (exit 2, nothing changed); a
dry run changes nothing; a filter, file, job or collection that matches nothing says so
and exits 4, naming close file names."""
from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from memsys import MemorySystem
from memsys.cli.confirm import EXIT_CODES, NOT_CONFIRMED, NOTHING_MATCHED, close_matches
from memsys.units import plural
from memsys.cli.main import build_parser
from memsys.engine import MemoryFilter

from conftest import REPO, run_memsys
from test_cache_cli import cache_of, env  # noqa: F401  (env is a fixture)
from test_cache_health import fill
from test_cli_jobs import IMPORT_ARGS, cli_env, collection  # noqa: F401  (cli_env is a fixture)

NOTES = ("# Release notes\n\nThe harbor service now retries uploads three times before it gives up.\n\n"
         "Backups of the ledger run every night at two and are kept for thirty days.\n")
GUIDE = "# Guide\n\nTo rotate a key, open Settings, choose Keys and press Rotate; the old key stops at once.\n"


@pytest.fixture
def kb(cli_env: dict[str, str], base_system: MemorySystem, tmp_path: Path) -> Iterator[Path]:
    """A folder `kb` with two documents, imported as kb/notes.md and kb/guide.md; its
    collection is dropped afterwards."""
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "notes.md").write_text(NOTES, encoding="utf-8")
    (folder / "guide.md").write_text(GUIDE, encoding="utf-8")
    yield folder
    collection(base_system, cli_env).store.delete_all()


def imported(folder: Path, env: dict[str, str], *extra: str) -> str:
    """Import `folder`; the job id."""
    result = run_memsys(["import", str(folder), *IMPORT_ARGS, *extra], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.split()[1]


def count(base_system: MemorySystem, env: dict[str, str], **where: str) -> int:
    return collection(base_system, env).store.count(MemoryFilter(**where) if where else None)


def with_terminal(args: list[str], env: dict[str, str], answer: str) -> tuple[int, str]:
    """Run the CLI with a pty as its standard input (so it asks) and type `answer`."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "memsys", *args], env={**os.environ, **env}, cwd=str(REPO),
                                stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finally:
        os.close(slave)
    try:
        os.write(master, answer.encode() + b"\n")  # the terminal holds the line until the prompt reads it
        out, _ = proc.communicate(timeout=300)
    finally:
        os.close(master)
    return proc.returncode, out


def test_memories_delete_by_filter_file_and_job_asks_or_needs_yes(kb: Path, cli_env: dict[str, str],
                                                                  base_system: MemorySystem) -> None:
    job = imported(kb, cli_env)
    total, notes = count(base_system, cli_env), count(base_system, cli_env, source_file="kb/notes.md")
    assert total > notes > 0

    refused = run_memsys(["memories", "delete", "--project", "proj"], cli_env)
    assert refused.returncode == NOT_CONFIRMED, refused.stderr
    assert f"would delete {plural(total, 'memory', 'memories')} of project proj" in refused.stdout
    assert "add --yes" in refused.stderr and count(base_system, cli_env) == total

    dry = run_memsys(["memories", "delete", "--project", "proj", "--repo", "main", "--dry-run"], cli_env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == f"would delete {plural(total, 'memory', 'memories')} in knowledge base proj/main (dry run: nothing changed)"
    assert count(base_system, cli_env) == total

    short = run_memsys(["memories", "delete", "--file", "notes.md", "--yes"], cli_env)
    assert short.returncode == NOTHING_MATCHED, short.stderr
    assert short.stdout.splitlines() == ["no memories of document notes.md; nothing deleted",
                                         "did you mean: kb/notes.md?"]
    assert count(base_system, cli_env) == total

    nothing = run_memsys(["memories", "delete", "--project", "nope", "--yes"], cli_env)
    assert nothing.returncode == NOTHING_MATCHED
    assert nothing.stdout.strip() == "no memories of project nope; nothing deleted"

    done = run_memsys(["memories", "delete", "--file", "kb/notes.md", "--yes"], cli_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"deleted {plural(notes, 'memory', 'memories')} of document kb/notes.md"
    assert count(base_system, cli_env) == total - notes

    by_job = run_memsys(["memories", "delete", "--job", job], cli_env)
    assert by_job.returncode == NOT_CONFIRMED and f"imported by job {job}" in by_job.stdout
    assert count(base_system, cli_env) == total - notes
    by_job = run_memsys(["memories", "delete", "--job", job, "--yes"], cli_env)
    assert by_job.returncode == 0, by_job.stderr
    assert count(base_system, cli_env) == 0

    no_job = run_memsys(["memories", "delete", "--job", "no-such-job", "--yes"], cli_env)
    assert no_job.returncode == NOTHING_MATCHED and "no job 'no-such-job'" in no_job.stdout, no_job.stdout


def test_a_delete_asked_on_a_terminal_acts_only_on_yes(kb: Path, cli_env: dict[str, str],
                                                       base_system: MemorySystem) -> None:
    imported(kb, cli_env)
    total = count(base_system, cli_env)
    args = ["memories", "delete", "--project", "proj"]

    code, out = with_terminal(args, cli_env, "n")
    assert code == NOT_CONFIRMED, out
    assert f"would delete {plural(total, 'memory', 'memories')} of project proj" in out and "Proceed? [y/N]" in out
    assert count(base_system, cli_env) == total

    code, out = with_terminal(args, cli_env, "y")
    assert code == 0, out
    assert f"deleted {plural(total, 'memory', 'memories')} of project proj" in out
    assert count(base_system, cli_env) == 0


def test_a_restore_over_memories_stored_otherwise_asks_first(kb: Path, cli_env: dict[str, str],
                                                             base_system: MemorySystem, tmp_path: Path) -> None:
    imported(kb, cli_env, "--tags", "old")
    total = count(base_system, cli_env)
    export = tmp_path / "kb.jsonl"
    assert run_memsys(["memories", "export", str(export), "--project", "proj", "--vectors"], cli_env).returncode == 0
    imported(kb, cli_env, "--tags", "new")  # the same memories, updated in place with other tags

    def tagged(tag: str) -> int:
        return collection(base_system, cli_env).store.count(MemoryFilter(tags=(tag,)))

    refused = run_memsys(["memories", "restore", str(export)], cli_env)
    assert refused.returncode == NOT_CONFIRMED, refused.stderr
    assert total > 1 and (f"would restore {total} memories from {export}; {total} memories are stored now with "
                          "other fields (tags, source, document or place) and would be overwritten") in refused.stdout
    assert (tagged("new"), tagged("old")) == (total, 0)

    dry = run_memsys(["memories", "restore", str(export), "--dry-run"], cli_env)
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout
    assert (tagged("new"), tagged("old")) == (total, 0)

    done = run_memsys(["memories", "restore", str(export), "--yes"], cli_env)
    assert done.returncode == 0, done.stderr
    assert (tagged("new"), tagged("old")) == (0, total)

    # Now every memory of the file is stored as it is: nothing to overwrite, no question.
    again = run_memsys(["memories", "restore", str(export)], cli_env)
    assert again.returncode == 0 and f"restored {total} memories" in again.stdout, again.stdout + again.stderr


def test_collections_drop_asks_or_needs_yes_and_names_the_collections(cli_env: dict[str, str],
                                                                       base_system: MemorySystem) -> None:
    name = cli_env["MEMSYS_COLLECTION"]
    live = collection(base_system, cli_env)
    live.store.ensure_collection()  # <name>_v1, searched through the alias
    old = base_system.with_collection(f"{name}_v2", physical=True)
    old.write_memories_batch([{"content": "an old memory", "project": "p", "repo": "r", "agent": "a", "tags": []}])
    try:
        refused = run_memsys(["collections", "drop", f"{name}_v2"], cli_env)
        assert refused.returncode == NOT_CONFIRMED, refused.stderr
        assert refused.stdout.startswith(f"would drop collection {name}_v2 and its 1 memory (")
        assert f"{name}_v2" in live.store.versions()

        dry = run_memsys(["collections", "drop", f"{name}_v2", "--dry-run"], cli_env)
        assert dry.returncode == 0 and f"{name}_v2" in live.store.versions()

        missing = run_memsys(["collections", "drop", f"{name}_v3", "--yes"], cli_env)
        assert missing.returncode == NOTHING_MATCHED
        assert f"no collection {name}_v3 (the store has {name}_v1, {name}_v2); nothing dropped" in missing.stdout
        assert "did you mean:" in missing.stdout

        searched = run_memsys(["collections", "drop", f"{name}_v1", "--yes"], cli_env)
        assert searched.returncode == 2 and "search uses now; it cannot be dropped" in searched.stderr

        done = run_memsys(["collections", "drop", f"{name}_v2", "--yes"], cli_env)
        assert done.returncode == 0 and done.stdout.strip() == f"dropped {name}_v2 (1 memory)", done.stderr
        assert live.store.versions() == [f"{name}_v1"]
    finally:
        live.store.delete_all()


def test_cache_clear_asks_or_needs_yes_and_says_when_empty(env: dict[str, str]) -> None:  # noqa: F811
    fill(cache_of(env), 20)  # 20 vectors and the record of their model: 21 entries

    refused = run_memsys(["cache", "clear"], env)
    assert refused.returncode == NOT_CONFIRMED and "would remove all 20 cached embeddings" in refused.stdout
    assert "add --yes" in refused.stderr and len(cache_of(env)) == 21

    dry = run_memsys(["cache", "clear", "--dry-run"], env)
    assert dry.returncode == 0 and "dry run: nothing changed" in dry.stdout and len(cache_of(env)) == 21

    done = run_memsys(["cache", "clear", "--yes"], env)
    assert done.returncode == 0 and len(cache_of(env)) == 0

    empty = run_memsys(["cache", "clear", "--yes"], env)
    assert empty.returncode == NOTHING_MATCHED and "is empty; nothing to clear" in empty.stdout


@pytest.mark.parametrize("name, candidates, expected", [
    ("notes.md", ["kb/notes.md", "kb/guide.md"], ["kb/notes.md"]),
    ("docs/notes.md", ["kb/docs/notes.md", "kb/notes.md", "other/notes.md"], ["kb/docs/notes.md", "kb/notes.md",
                                                                               "other/notes.md"]),
    ("kb/note.md", ["kb/notes.md", "kb/guide.md"], ["kb/notes.md"]),
    ("NOTES.MD", ["kb/notes.md"], ["kb/notes.md"]),
    ("budget.xlsx", ["kb/notes.md", "kb/guide.md"], []),
])
def test_close_matches_by_suffix_base_name_and_spelling(name: str, candidates: list[str], expected: list[str]) -> None:
    assert close_matches(name, candidates) == expected


def test_the_exit_codes_are_in_the_help_and_the_readme() -> None:
    assert EXIT_CODES in build_parser().format_help()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line"):]
    section = section[:section.index("\n## ", 1)]
    codes = re.findall(r"^  (\d+) ", EXIT_CODES, flags=re.MULTILINE)
    assert codes == ["0", "1", "2", "3", "4", "130"]
    for code in codes:
        assert f"| `{code}` |" in section, f"README's Command line section does not explain exit code {code}"
    assert "--yes" in section

"""Git commit analysis on a real repository made in the test: commits spread over several
weeks (dates set with GIT_AUTHOR_DATE / GIT_COMMITTER_DATE), read with the git CLI."""
from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from make_files import git_repo
from memsys.ingest import (
    BatchesFailedError,
    GitError,
    analyze_repository_commits,
    commit_type,
    group_commits_by_week,
    read_git_commits,
)
from recording_writer import RecordingWriter

COMMITS = [
    ("2024-01-02T10:00:00+00:00", "Alice", "app.py", "print('a')\nprint('b')\n", "feat(core): add the app"),
    ("2024-01-04T10:00:00+00:00", "Bob", "README.md", "# App\n", "docs: describe the app"),
    ("2024-01-10T10:00:00+00:00", "Alice", "app.py", "print('c')\n", "fix: print the last line"),
    ("2024-01-24T10:00:00+00:00", "Carol", "src/util.py", "x = 1\n", "Tidy up helpers"),
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return git_repo(tmp_path_factory.mktemp("repos") / "shop", COMMITS)


def test_commits_are_read_oldest_first_with_message_author_and_branch(repo: Path) -> None:
    commits = read_git_commits(repo)
    assert [(c.message, c.author, c.branch) for c in commits] == [
        ("feat(core): add the app", "Alice", "main"),
        ("docs: describe the app", "Bob", "main"),
        ("fix: print the last line", "Alice", "main"),
        ("Tidy up helpers", "Carol", "main"),
    ]


def test_commit_changed_files_and_line_counts_are_read(repo: Path) -> None:
    first, _, third, fourth = read_git_commits(repo)
    assert (first.changed_files, first.additions, first.deletions) == (("app.py",), 2, 0)
    assert (third.changed_files, third.additions) == (("app.py",), 1)
    assert fourth.changed_files == ("src/util.py",)


def test_commits_since_a_date_leave_older_ones_out(repo: Path) -> None:
    commits = read_git_commits(repo, since=date(2024, 1, 8))
    assert [c.message for c in commits] == ["fix: print the last line", "Tidy up helpers"]


def test_since_date_may_be_given_as_text(repo: Path) -> None:
    assert len(read_git_commits(repo, since="2024-01-20")) == 1


def test_commits_are_grouped_by_iso_week(repo: Path) -> None:
    weeks = group_commits_by_week(read_git_commits(repo))
    assert {week: len(commits) for week, commits in weeks.items()} == {"2024-W01": 2, "2024-W02": 1, "2024-W04": 1}


@pytest.mark.parametrize(
    "message, kind",
    [
        ("feat: add search", "feat"),
        ("fix(api)!: reject empty tags", "fix"),
        ("Docs: typo", "docs"),
        ("chore(deps): bump", "chore"),
        ("Tidy up helpers", "other"),
        ("wip: half done", "other"),
        ("feat add colon missing", "other"),
    ],
)
def test_commit_type_comes_from_the_conventional_prefix(message: str, kind: str) -> None:
    assert commit_type(message) == kind


def test_analysis_writes_one_batch_per_week_with_the_seeds_fields(repo: Path) -> None:
    writer = RecordingWriter()
    uuids = analyze_repository_commits(repo, writer=writer)
    assert [len(b) for b in writer.batches] == [2, 1, 1]
    assert len(uuids) == 4
    first = writer.batches[0][0]
    sha = read_git_commits(repo)[0].sha
    assert first == {
        "content": f"Commit {sha[:10]}: feat(core): add the app\nFiles changed: app.py\nLines: +2/-0",
        "project": "repo-shop",
        "repo": "main",
        "agent": "Alice",
        "tags": ["git-commit", "feat", "week-2024-W01"],
        "source": "git-analysis",
        "source_file": "shop",
        "source_location": f"commit {sha[:12]}",
        "chunk_index": 0,
    }


def test_analysis_since_a_date_writes_only_newer_commits(repo: Path) -> None:
    writer = RecordingWriter()
    analyze_repository_commits(repo, since_date=date(2024, 1, 8), writer=writer)
    assert [r["tags"][1] for b in writer.batches for r in b] == ["fix", "other"]


def test_failing_week_does_not_stop_the_others_and_is_reported(repo: Path) -> None:
    writer = RecordingWriter(failing_calls=(2,), error=TimeoutError("store timed out"))
    with pytest.raises(BatchesFailedError) as caught:
        analyze_repository_commits(repo, writer=writer)
    error = caught.value
    assert [(f.label, len(f.records)) for f in error.failed] == [("week 2024-W02", 1)]
    assert error.failed[0].reason == "TimeoutError: store timed out"
    assert (len(error.written), error.done) == (3, 3)


def test_identical_commits_stay_separate_memories(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "twins", [
        ("2024-03-04T10:00:00+00:00", "Dan", "a.txt", "1\n", "fix typo"),
        ("2024-03-05T10:00:00+00:00", "Dan", "a.txt", "1\n", "fix typo"),
    ])
    writer = RecordingWriter()
    uuids = analyze_repository_commits(repo, writer=writer)
    assert len(set(uuids)) == 2


def test_binary_file_is_listed_with_no_line_count(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "bin", [("2024-03-04T10:00:00+00:00", "Dan", "logo.png", "\x00\x01\x02", "add logo")])
    (commit,) = read_git_commits(repo)
    assert (commit.changed_files, commit.additions, commit.deletions) == (("logo.png",), 0, 0)


def test_other_branch_can_be_analysed(repo: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", "-b", "release"], check=True)
    assert {c.branch for c in read_git_commits(clone, branch="main")} == {"main"}
    assert {c.branch for c in read_git_commits(clone)} == {"release"}


def test_unknown_branch_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(GitError, match="shop has no branch or revision 'nope'"):
        read_git_commits(repo, branch="nope")


def test_folder_that_is_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match="is not a git repository"):
        read_git_commits(tmp_path)


def test_repository_without_commits_has_none(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path / "empty")], check=True)
    assert read_git_commits(tmp_path / "empty") == []


def test_bad_since_date_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(ValueError, match="since_date 'last tuesday' is not a date"):
        read_git_commits(repo, since="last tuesday")


def test_commits_analysed_through_memsys_are_stored_by_week(memsys_system: Any, repo: Path) -> None:
    uuids = analyze_repository_commits(repo)
    assert len(uuids) == 4
    assert memsys_system.count_memories(project="repo-shop") == 4
    hits = memsys_system.search_memories("fix print last line", limit=1, tags=["week-2024-W02"])
    assert [h.agent for h in hits] == ["Alice"]

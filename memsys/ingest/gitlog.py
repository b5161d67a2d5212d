"""Git commit analysis: read a local repository's commits with the
`git` CLI (never the network), group them by ISO week, and turn each commit's message,
changed files and line counts into a memory.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Iterator, Sequence

from memsys.config import LOCAL_MODEL
from memsys.errors import MemsysError
from memsys.ingest.chunking import Chunker, ChunkSettings
from memsys.ingest.scenarios import BatchesFailedError, FailedBatch, Writer, default_writer, write_batch
from memsys.models import Memory

log = logging.getLogger(__name__)

COMMIT_TYPES = frozenset(
    {"feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci", "chore", "revert"}
)
_CONVENTIONAL = re.compile(r"^(?P<type>[A-Za-z]+)(?:\([^)]*\))?!?:\s")
# A commit touching thousands of files would not fit in one memory; name the first ones.
MAX_FILES_LISTED = 30
_GIT_TIMEOUT = 300


class GitError(MemsysError, ValueError):
    """The repository cannot be read: not a repository, no git, an unknown branch."""


@dataclass(frozen=True)
class GitCommit:
    sha: str
    author: str
    author_email: str
    date: datetime  # author date, with the author's UTC offset
    message: str
    branch: str
    changed_files: tuple[str, ...]
    additions: int
    deletions: int

    @property
    def type(self) -> str:
        return commit_type(self.message)

    @property
    def week(self) -> str:
        return iso_week(self.date)


def commit_type(message: str) -> str:
    """The conventional-commit type ("feat", "fix", "docs", ...) or "other"."""
    m = _CONVENTIONAL.match(message)
    kind = m.group("type").lower() if m else ""
    return kind if kind in COMMIT_TYPES else "other"


def iso_week(day: date | datetime) -> str:
    """ISO week label, e.g. "2024-W03" (ISO years: 2024-12-30 is in 2025-W01)."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "-c", "core.quotePath=false", *args],
            capture_output=True,
            env=env,
            timeout=_GIT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("the git program is not installed") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"git took longer than {_GIT_TIMEOUT} s reading {repo.name}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git could not read {repo}: {message[-1] if message else 'exit ' + str(done.returncode)}")
    return done.stdout.decode("utf-8", "replace")


def current_branch(repo_path: Path | str) -> str:
    """The checked-out branch (even before its first commit), or "detached"."""
    try:
        return _git(Path(repo_path), "symbolic-ref", "--short", "-q", "HEAD").strip()
    except GitError:
        return "detached"


def _since_timestamp(since: date | datetime | str) -> float:
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError:
            raise ValueError(f"since_date {since!r} is not a date like 2024-01-31") from None
    if not isinstance(since, datetime):
        since = datetime.combine(since, time())
    return since.timestamp()  # naive: local time


def read_git_commits(
    repo_path: Path | str, since: date | datetime | str | None = None, *, branch: str | None = None
) -> list[GitCommit]:
    """The commits of `branch` (default: the checked-out one), oldest first, authored at or
    after `since` (a date means its midnight, local time). Merges are included. Raises
    GitError when the path is not a readable repository."""
    repo = Path(repo_path)
    if not repo.is_dir():
        raise GitError(f"{repo} is not a folder")
    try:
        _git(repo, "rev-parse", "--git-dir")
    except GitError:
        raise GitError(f"{repo} is not a git repository") from None
    if branch is None:
        branch = current_branch(repo)
        rev = "HEAD"
    else:
        rev = branch
    try:
        _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except GitError:
        if rev == "HEAD":
            return []  # a repository with no commits yet
        raise GitError(f"{repo.name} has no branch or revision {branch!r}") from None
    args = ["log", rev, "--reverse", "-M", "--numstat", "--no-color", "--no-show-signature",
            "--format=%x1e%H%x1f%an%x1f%ae%x1f%aI%x1f%B%x1f"]
    since_ts = _since_timestamp(since) if since is not None else None
    if since_ts is not None:
        # git filters on the committer date, which is never before the author date, so
        # this only narrows the search; the author date is checked below.
        args.append(f"--since=@{int(since_ts)}")
    commits = [_parse_commit(record, branch) for record in _git(repo, *args).split("\x1e")[1:]]
    if since_ts is not None:
        commits = [c for c in commits if c.date.timestamp() >= since_ts]
    return commits


def _parse_commit(record: str, branch: str) -> GitCommit:
    sha, author, email, when, *message_parts, stats = record.split("\x1f")
    files: list[str] = []
    additions = deletions = 0
    for line in stats.strip().splitlines():
        added, deleted, path = line.split("\t", 2)
        files.append(path)
        # "-" is git's count for a binary file.
        additions += int(added) if added.isdigit() else 0
        deletions += int(deleted) if deleted.isdigit() else 0
    return GitCommit(
        sha=sha.strip(),
        author=author,
        author_email=email,
        date=datetime.fromisoformat(when),
        message="\x1f".join(message_parts).strip(),
        branch=branch,
        changed_files=tuple(files),
        additions=additions,
        deletions=deletions,
    )


def group_commits_by_week(commits: Sequence[GitCommit]) -> OrderedDict[str, list[GitCommit]]:
    """Commits by ISO week of their author date, weeks in order."""
    weeks: OrderedDict[str, list[GitCommit]] = OrderedDict()
    for commit in sorted(commits, key=lambda c: c.date):
        weeks.setdefault(commit.week, []).append(commit)
    return weeks


def commit_content(commit: GitCommit) -> str:
    """The text of a commit's memory: message, changed files and line counts. The short
    hash keeps two identical "fix typo" commits from being one memory."""
    files = list(commit.changed_files[:MAX_FILES_LISTED])
    more = len(commit.changed_files) - len(files)
    listed = ", ".join(files) + (f" and {more} more" if more > 0 else "") if files else "none"
    return (
        f"Commit {commit.sha[:10]}: {commit.message}\n"
        f"Files changed: {listed}\n"
        f"Lines: +{commit.additions}/-{commit.deletions}"
    )


def commit_memories(commit: GitCommit, repo_name: str, chunker: Chunker) -> list[Memory]:
    """The memories of one commit: usually one, more when a long message needs chunks."""
    fields = {
        "project": f"repo-{repo_name}",
        "repo": commit.branch,
        "agent": commit.author or commit.author_email or "unknown",
        "tags": ["git-commit", commit.type, f"week-{commit.week}"],
        "source": "git-analysis",
        "source_file": repo_name,
        "source_location": f"commit {commit.sha[:12]}",
    }
    return [
        Memory.from_dict({**fields, "content": chunk.text, "chunk_index": i})
        for i, chunk in enumerate(chunker.split(commit_content(commit)))
    ]


def iter_commit_memories(
    repo_path: Path | str,
    since_date: date | datetime | str | None = None,
    *,
    branch: str | None = None,
    chunking: ChunkSettings | None = None,
    provider: str = "local",
    model: str = LOCAL_MODEL,
) -> Iterator[tuple[str, list[Memory]]]:
    """(week, memories of that week's commits), week by week, for an import job."""
    repo = Path(repo_path).resolve()
    chunker = Chunker.for_model(provider, model, chunking)
    for week, commits in group_commits_by_week(read_git_commits(repo, since_date, branch=branch)).items():
        yield week, [m for c in commits for m in commit_memories(c, repo.name, chunker)]


def analyze_repository_commits(
    repo_path: Path | str,
    since_date: date | datetime | str | None = None,
    *,
    writer: Writer | None = None,
    branch: str | None = None,
    chunking: ChunkSettings | None = None,
    provider: str = "local",
    model: str = LOCAL_MODEL,
) -> list[str]:
    """Write a memory per commit since `since_date`, one batch per week, and return the
    UUIDs written. A failing week does not stop
    the others; BatchesFailedError names the failed weeks after all were tried."""
    write = writer or default_writer()
    written: list[str] = []
    failed: list[FailedBatch] = []
    commits_done = 0
    for week, memories in iter_commit_memories(
        repo_path, since_date, branch=branch, chunking=chunking, provider=provider, model=model
    ):
        result = write_batch(write, [m.to_dict() for m in memories])
        written += result.written
        if result.unwritten:
            failed.append(FailedBatch(f"week {week}", tuple(result.unwritten), result.reason))
            log.warning("week %s: %d commit memories not written: %s", week, len(result.unwritten), result.reason)
        else:
            commits_done += len({m.source_location for m in memories})
    if failed:
        raise BatchesFailedError(written, failed, commits_done)
    return written

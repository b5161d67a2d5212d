"""A git repository as a source: any URL git can clone (https, ssh, git://, file://). The
repository is kept as a bare copy in the sync's work folder and fetched (forced, pruned)
before each listing, so a force-push is simply a new state: its files are listed at the
branch or tag the source names (the repository's default branch otherwise), each versioned
by its blob id. With the option `commits`, the branch's commit log is listed too, one
document per commit (`@commits/<sha>.txt`: message, author, date, changed files), versioned
by the commit id: a sync fetches only the commits it has not seen, and commits a
force-push rewrote away are removed like deleted files.

A token (the source's credential) is sent only to the source's own host, as an HTTP
Authorization header given to git through its environment (never on a command line, in a
URL or in a file). Every git command has a time limit.
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from memsys.ingest.gitlog import GitCommit, GitError, commit_content, read_git_commits
from memsys.ingest.sources.base import (
    Listing,
    RemoteEntry,
    SourceProblem,
    SourceSpec,
    copy_capped,
    register,
    target_in,
)

COMMITS_PREFIX = "@commits/"
MAX_COMMITS = 5000
MAX_DOCUMENTS = 100_000
DEFAULT_TIMEOUT = 300
_URL_FILE = "memsys-source-url"
_PROTOCOLS = "file:git:http:https:ssh"
WORK_DIR_OPTION = "_work_dir"  # set by the engine, never by a user
# What git says, in plain words (the first match wins).
_GIT_SAYS = (
    ("connection refused", "the repository's server refused the connection (is it running?)"),
    ("could not resolve host", "the repository's host name could not be found"),
    ("connection timed out", "the repository's server did not answer"),
    ("authentication failed", "the repository refused the credential"),
    ("could not read username", "the repository asks for a credential, and none is stored"),
    ("403", "the repository refused access (403)"),
    ("401", "the repository asks for a credential, or refused the one stored (401)"),
    ("not found", "there is no repository at that address"),
    ("does not appear to be a git repository", "there is no repository at that address"),
    ("not a git repository", "there is no repository at that address"),
    ("no such file or directory", "there is no repository at that address"),
)


def _yes(value: str) -> bool:
    return value.strip().lower() in ("1", "yes", "true", "on")


def auth_environment(location: str, secret: str | None, username: str = "") -> dict[str, str]:
    """git's configuration, through the environment, that sends the token to the source's
    host only (http.<scheme>://<host>/.extraHeader): no other host, no redirect target."""
    parts = urlsplit(location)
    if not secret or parts.scheme not in ("http", "https") or not parts.netloc:
        return {}
    host = parts.netloc.rsplit("@", 1)[-1]
    pair = base64.b64encode(f"{username or 'git'}:{secret}".encode()).decode("ascii")
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{parts.scheme}://{host}/.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {pair}"}


@register("git")
class GitConnector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        work = spec.option(WORK_DIR_OPTION)
        if not work:
            raise SourceProblem("a git source needs a work folder (the engine gives it one)")
        self.work = Path(work)
        self.ref = spec.option("branch") or spec.option("tag")
        self.commits = _yes(spec.option("commits"))
        try:
            self.timeout = min(max(int(spec.option("timeout", str(DEFAULT_TIMEOUT))), 5), 3600)
        except ValueError:
            self.timeout = DEFAULT_TIMEOUT
        self._env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                     "GIT_ALLOW_PROTOCOL": _PROTOCOLS, "GIT_ASKPASS": "true", "SSH_ASKPASS": "true",
                     "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o ConnectTimeout=20",
                     **auth_environment(spec.location, secret, spec.option("username"))}
        self._commit: str = ""
        self._log: dict[str, GitCommit] | None = None

    # --- git -----------------------------------------------------------------------
    def _git(self, *args: str, where: Path | None = None) -> str:
        command = ["git", *(["-C", str(where)] if where else []), "-c", "core.quotePath=false", *args]
        try:
            done = subprocess.run(command, capture_output=True, env=self._env, timeout=self.timeout,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise SourceProblem("the git program is not installed on the server") from None
        except subprocess.TimeoutExpired:
            raise SourceProblem(f"the repository did not answer within {self.timeout} s") from None
        if done.returncode != 0:
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise SourceProblem(f"git could not read the repository: {self._plain(said[-1] if said else f'exit {done.returncode}')}")
        return done.stdout.decode("utf-8", "replace")

    def _plain(self, message: str) -> str:
        """git's words as a sentence, without the server's own paths."""
        low = message.lower()
        for needle, plain in _GIT_SAYS:
            if needle in low:
                return plain
        return message.replace(str(self.work), "the sync's copy").replace("fatal: ", "")

    def _update(self) -> None:
        """Clone once, then fetch every branch and tag, forced and pruned (a force-push
        replaces what the copy had)."""
        url = self.spec.location
        if url.startswith("-"):
            raise SourceProblem("the repository's address cannot start with '-'")
        marker = self.work / _URL_FILE
        if self.work.exists() and (not marker.is_file() or marker.read_text("utf-8") != url):
            shutil.rmtree(self.work, ignore_errors=True)  # another repository now: start over
        if not self.work.exists():
            self.work.parent.mkdir(parents=True, exist_ok=True)
            partial = self.work.with_name(self.work.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            self._git("clone", "--bare", "--quiet", "--", url, str(partial))
            (partial / _URL_FILE).write_text(url, "utf-8")
            partial.rename(self.work)
            return
        self._git("fetch", "--quiet", "--prune", "--force", "--", url,
                  "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", where=self.work)

    def _resolve(self) -> str:
        ref = self.ref or "HEAD"
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", where=self.work).strip()
        except SourceProblem:
            if not self.ref:
                return ""  # an empty repository
            raise SourceProblem(f"the repository has no branch or tag {self.ref!r}") from None

    # --- Connector -------------------------------------------------------------------
    def list(self) -> Listing:
        try:
            self._update()
            commit = self._commit = self._resolve()
            if not commit:
                return Listing((), True)
            entries: list[RemoteEntry] = []
            tree = self._git("ls-tree", "-r", "-l", "-z", commit, where=self.work)
            for record in tree.split("\0"):
                if not record:
                    continue
                meta, _, path = record.partition("\t")
                mode, kind, sha, size = meta.split()
                if kind != "blob" or mode == "120000":
                    continue  # submodules and links are not documents
                if any(part.startswith(".") for part in path.split("/")) or not self.spec.wants(path):
                    continue
                entries.append(RemoteEntry(path, sha, int(size) if size.isdigit() else None))
                if len(entries) > MAX_DOCUMENTS:
                    return Listing(tuple(entries), False, f"the repository has more than {MAX_DOCUMENTS} files")
            if self.commits:
                shas = self._git("rev-list", f"--max-count={MAX_COMMITS}", commit, where=self.work).split()
                entries.extend(RemoteEntry(f"{COMMITS_PREFIX}{sha}.txt", sha) for sha in shas)
            return Listing(tuple(entries), True)
        except SourceProblem as e:
            return Listing((), False, str(e))

    @property
    def head(self) -> str:
        """The commit the last listing read (the sync remembers it as its cursor)."""
        return self._commit

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        target = target_in(folder, entry.key)
        if entry.key.startswith(COMMITS_PREFIX):
            return self._fetch_commit(entry, target)
        if self.spec.max_bytes is not None and entry.size is not None and entry.size > self.spec.max_bytes:
            raise SourceProblem(f"{entry.key} is larger than the source's limit of {self.spec.max_bytes} bytes; not fetched")
        process = subprocess.Popen(["git", "-C", str(self.work), "cat-file", "blob", entry.version],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=self._env)
        try:
            assert process.stdout is not None
            copy_capped(process.stdout, target, entry.key, self.spec.max_bytes)
        finally:
            process.kill()
            process.wait(timeout=self.timeout)
            if process.stdout is not None:
                process.stdout.close()
        return target

    def _fetch_commit(self, entry: RemoteEntry, target: Path) -> Path:
        if self._log is None:
            try:
                self._log = {c.sha: c for c in read_git_commits(self.work, branch=self._commit or self.ref or None)}
            except GitError:
                raise SourceProblem("the repository's commit log could not be read") from None
        commit = self._log.get(entry.version)
        if commit is None:
            raise SourceProblem(f"commit {entry.version[:10]} is no longer in the repository; not fetched")
        text = (f"Author: {commit.author}\nDate: {commit.date.isoformat()}\n"
                f"{commit_content(commit)}\n")
        target.write_text(text, "utf-8")
        return target

    def close(self) -> None:
        pass

"""What the job database knows of knowledge bases (a project, with its repos as parts):
which projects imports named, each file's state in the newest import that named it
(queued, reading, embedding, done or failed with the reason), documents removed on
purpose, and the choices a person's last import used (remembered on the server).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from memsys.jobs.schema import JobTables

# The job states whose files are still on their way (a job "interrupted" keeps its stored
# state, one of these, until resumed: its files show as still on their way).
_ON_THE_WAY = ("queued", "planning", "running", "cancelling")
# "guide.pdf page 3": an unread part of a file is named by the file and the place in it.
_PLACE = re.compile(r" (page|line|row|rows|sheet|slide|part|entry|chapter|message) [^/]*$")
_IMPORTS = "json_extract(request, '$.reembed_into') IS NULL OR json_extract(request, '$.reembed_into') = ''"


@dataclass(frozen=True)
class FileActivity:
    """A file of a knowledge base as the newest import that named it left it: `state` is
    queued, reading, embedding, done or failed (`reason` says why)."""

    repo: str
    source_file: str
    state: str
    job_id: str
    at: float
    reason: str = ""


@dataclass(frozen=True)
class ProjectImports:
    """A project as imports named it: how many, and the newest (id, state, time, failures)."""

    project: str
    imports: int
    last_job_id: str
    last_state: str
    last_at: float
    last_failed: int = 0


@dataclass(frozen=True)
class DocumentRemoval:
    document_id: str
    project: str
    repo: str
    source_file: str
    removed_at: float
    removed_by: str


class KnowledgeTables(JobTables):
    """Knowledge bases as the job database sees them, and remembered choices."""

    def parts_imported(self, project: str) -> list[str]:
        """The parts (repos) imports into `project` named, most used first."""
        rows = self._rows(
            "SELECT json_extract(request, '$.defaults.repo') AS part, COUNT(*) AS n FROM jobs"
            f" WHERE json_extract(request, '$.defaults.project') = ? AND ({_IMPORTS}) GROUP BY part ORDER BY n DESC",
            (project,))
        return [r["part"] for r in rows if r["part"]]

    def project_imports(self) -> list[ProjectImports]:
        """Every project an import named, with its newest import; newest first."""
        rows = self._rows(
            "SELECT json_extract(request, '$.defaults.project') AS project, COUNT(*) AS n, MAX(created_at) AS last"
            f" FROM jobs WHERE {_IMPORTS} GROUP BY project ORDER BY last DESC"
        )
        out = []
        for r in rows:
            if not r["project"]:
                continue
            newest = self._one(
                "SELECT id, state, created_at, failed FROM jobs WHERE json_extract(request, '$.defaults.project') = ?"
                f" AND ({_IMPORTS}) ORDER BY created_at DESC LIMIT 1", (r["project"],))
            out.append(ProjectImports(r["project"], int(r["n"]), newest[0], newest[1], float(newest[2]), int(newest[3])))
        return out

    def file_activity(self, project: str, jobs: int = 50) -> dict[tuple[str, str], FileActivity]:
        """Each file of `project` (by repo and file name) as the newest of its last `jobs`
        imports that named it left it."""
        rows = self._rows(
            "SELECT id, state, created_at, finished_at, planned, request FROM jobs"
            f" WHERE json_extract(request, '$.defaults.project') = ? AND ({_IMPORTS})"
            " ORDER BY created_at DESC LIMIT ?", (project, jobs))
        out: dict[tuple[str, str], FileActivity] = {}
        for job in rows:
            request = json.loads(job["request"])
            repo = str((request.get("defaults") or {}).get("repo") or "")
            for key, activity in self._job_files(job, repo, request).items():
                out.setdefault(key, activity)
        return out

    def _job_files(self, job: Any, repo: str, request: dict[str, Any]) -> dict[tuple[str, str], FileActivity]:
        job_id, state = job["id"], job["state"]
        at = float(job["finished_at"] or job["created_at"])
        named = [PurePath(p).name for p in request.get("paths") or ()]
        files: dict[tuple[str, str], FileActivity] = {}
        if state == "queued":
            return {(repo, n): FileActivity(repo, n, "queued", job_id, at) for n in named}
        counts = self._rows(
            "SELECT json_extract(memory, '$.repo') AS repo, json_extract(memory, '$.source_file') AS file, state,"
            " COUNT(*) AS n, MIN(reason) AS reason FROM items WHERE job_id = ? AND memory IS NOT NULL"
            " GROUP BY repo, file, state", (job_id,))
        by_file: dict[tuple[str, str], dict[str, tuple[int, str]]] = {}
        for r in counts:
            by_file.setdefault((r["repo"] or repo, r["file"] or ""), {})[r["state"]] = (int(r["n"]), r["reason"] or "")
        # Files (or parts of them) that could not be read have no memory: the item names them.
        unread = self._rows("SELECT item, reason FROM items WHERE job_id = ? AND state = 'failed' AND memory IS NULL"
                            " ORDER BY seq", (job_id,))
        known = {f for _, f in by_file} | set(named)
        for r in unread:
            name = next((k for k in sorted(known, key=len, reverse=True)
                         if r["item"] == k or r["item"].startswith(k + " ")), None) or _PLACE.sub("", r["item"])
            by_file.setdefault((repo, name), {}).setdefault("unread", (1, r["reason"]))
        active = state in _ON_THE_WAY
        for (file_repo, name), states in by_file.items():
            failure = states.get("failed") or states.get("unread")
            if active and "pending" in states:
                files[(file_repo, name)] = FileActivity(file_repo, name, "embedding", job_id, at)
            elif failure:
                files[(file_repo, name)] = FileActivity(file_repo, name, "failed", job_id, at, failure[1])
            else:
                files[(file_repo, name)] = FileActivity(file_repo, name, "done", job_id, at)
        if active and not job["planned"]:
            seen = {n.split("/")[0] for _, n in files}
            for n in named:
                if n not in seen:
                    files[(repo, n)] = FileActivity(repo, n, "reading", job_id, at)
        return files

    def project_documents(self, project: str) -> dict[str, tuple[str, str, float]]:
        """Every document imports of `project` read: id -> (repo, file name, newest time)."""
        out: dict[str, tuple[str, str, float]] = {}
        for r in self._rows(
            "SELECT d.document_id, d.repo, d.source_file, j.created_at FROM documents d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.project = ? ORDER BY j.created_at", (project,)):
            out[r[0]] = (r[1], r[2], float(r[3]))
        return out

    def record_removal(self, removal: DocumentRemoval) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO document_removals VALUES (?, ?, ?, ?, ?, ?)",
                       (removal.document_id, removal.project, removal.repo, removal.source_file, removal.removed_at,
                        removal.removed_by))

    def removals(self, project: str) -> dict[str, DocumentRemoval]:
        return {r[0]: DocumentRemoval(r[0], r[1], r[2], r[3], float(r[4]), r[5]) for r in self._rows(
            "SELECT * FROM document_removals WHERE project = ?", (project,))}

    def remember(self, who: str, name: str, value: dict[str, Any]) -> None:
        """Keep `value` as `who`'s choice `name` (their last import's knowledge base...)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO remembered_choices VALUES (?, ?, ?, ?)",
                       (who, name, json.dumps(value, ensure_ascii=False), time.time()))

    def remembered(self, who: str, name: str) -> dict[str, Any] | None:
        row = self._one("SELECT value FROM remembered_choices WHERE who = ? AND name = ?", (who, name))
        return dict(json.loads(row[0])) if row is not None else None

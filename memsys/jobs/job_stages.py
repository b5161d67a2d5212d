"""Where a running job's items are inside their batch (being embedded, embedded and
waiting for their write, being written), so progress moves per memory rather than per
batch, and each file of an import can say what is happening to it. A stage is kept only
while an item is in flight: the batch's record settles the item, and the stage goes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from memsys.jobs.schema import JobTables

EMBEDDING, EMBEDDED, WRITING = "embedding", "embedded", "writing"
# Per-file states are read for jobs up to this many items (one query over the job's items).
FILE_STATES_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class FileState:
    """One file of a job and where its memories are: settled (written, updated,
    unchanged, failed), in flight (embedding, embedded, writing) or still pending."""

    name: str
    memories: int
    written: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    embedding: int = 0
    embedded: int = 0
    writing: int = 0
    reason: str = ""  # the first failure's reason
    unreadable: bool = False  # the file (or a part of it) could not be read at all

    @property
    def settled(self) -> int:
        return self.written + self.updated + self.unchanged + self.failed

    @property
    def pending(self) -> int:
        return max(0, self.memories - self.settled)

    def stage(self, job_state: str) -> str:
        """queued, embedding, writing, done, failed, partly done or not started (a job that
        is over and never reached the file's pending memories)."""
        if self.pending == 0:
            return "failed" if self.failed and (self.failed == self.memories or self.unreadable) else "done"
        if self.writing:
            return "writing"
        if self.embedding or self.embedded:
            return "embedding"
        if job_state in ("queued", "planning", "running", "cancelling"):
            return "queued"
        return "not started" if self.settled == 0 else "partly done"


class StageTables(JobTables):
    """The stages of the items in flight."""

    def set_stage(self, job_id: str, seqs: Iterable[int], stage: str) -> None:
        rows = [(job_id, seq, stage) for seq in seqs]
        if not rows:
            return
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO item_stages (job_id, seq, stage) VALUES (?, ?, ?)", rows)

    def clear_stages(self, job_id: str, seqs: Sequence[int] | None = None) -> None:
        """Forget the stages of these items (all of the job's when None)."""
        with self._tx() as db:
            if seqs is None:
                db.execute("DELETE FROM item_stages WHERE job_id = ?", (job_id,))
            else:
                db.executemany("DELETE FROM item_stages WHERE job_id = ? AND seq = ?", [(job_id, s) for s in seqs])

    def embedded_in_flight(self, job_id: str) -> int:
        """Items of the job embedded (or being written) whose batch is not recorded yet."""
        row = self._one(
            "SELECT COUNT(*) FROM item_stages s JOIN items i ON i.job_id = s.job_id AND i.seq = s.seq"
            " WHERE s.job_id = ? AND s.stage IN (?, ?) AND i.state = 'pending'",
            (job_id, EMBEDDED, WRITING),
        )
        return int(row[0]) if row else 0

    def file_states(self, job_id: str) -> list[FileState]:
        """Each file of the job (in the order it was read) with where its memories are."""
        total = self._one("SELECT COUNT(*) FROM items WHERE job_id = ?", (job_id,))
        if not total or total[0] > FILE_STATES_LIMIT:
            return []
        rows = self._rows(
            "SELECT COALESCE(json_extract(i.memory, '$.source_file'), i.item) AS file, i.memory IS NULL AS unreadable,"
            " i.state, s.stage, COUNT(*) AS n, MIN(i.seq) AS first,"
            " MIN(CASE WHEN i.state = 'failed' THEN i.reason END) AS reason"
            " FROM items i LEFT JOIN item_stages s ON s.job_id = i.job_id AND s.seq = i.seq"
            " WHERE i.job_id = ? GROUP BY file, unreadable, i.state, s.stage",
            (job_id,),
        )
        files: dict[str, dict] = {}
        order: dict[str, int] = {}
        known = {r["file"] for r in rows if not r["unreadable"]}
        for r in rows:
            name = r["file"]
            if r["unreadable"]:
                # "report.pdf page 3" belongs to report.pdf when that file gave memories too.
                name = next((k for k in sorted(known, key=len, reverse=True) if name.startswith(k + " ")), name)
            f = files.setdefault(name, {"name": name, "memories": 0})
            order[name] = min(order.get(name, r["first"]), r["first"])
            f["memories"] += r["n"]
            state = r["state"]
            if state != "pending":
                f[state] = f.get(state, 0) + r["n"]
            elif r["stage"]:
                f[r["stage"]] = f.get(r["stage"], 0) + r["n"]
            if r["reason"] and not f.get("reason"):
                f["reason"] = r["reason"]
            if r["unreadable"] and state == "failed":
                f["unreadable"] = True
        return [FileState(**files[name]) for name in sorted(files, key=order.__getitem__)]

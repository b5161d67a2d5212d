"""What the job database knows of the memories jobs wrote: the documents each import
read (to remove chunks a document no longer has, and documents a mirror's folder lost),
which job last imported a document, and the content jobs keep, dropped when its memories
are deleted so no resume or retry writes them again.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from memsys.jobs.records import DocumentChunks, JobDocument
from memsys.jobs.schema import JobTables
from memsys.models import document_id


class DocumentTables(JobTables):
    """The documents of jobs and the memories their items name."""

    def add_documents(self, job_id: str, documents: Iterable[JobDocument]) -> None:
        with self._tx() as db:
            db.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(job_id, d.document_id, d.project, d.repo, d.source_file, d.document_hash, d.chunks) for d in documents],
            )

    def documents(self, job_id: str) -> list[JobDocument]:
        rows = self._rows("SELECT * FROM documents WHERE job_id = ? ORDER BY source_file", (job_id,))
        return [JobDocument(r["document_id"], r["project"], r["repo"], r["source_file"], r["document_hash"], r["chunks"])
                for r in rows]

    def document_items(self, job_id: str, document: JobDocument) -> DocumentChunks:
        """A document's chunks in this job, and whether every one of them is settled."""
        # A file of rows with ids holds a document per row: each is only its own rows.
        rows = [r for r in self._rows(
            "SELECT uuid, state, json_extract(memory, '$.record_id') AS record_id FROM items WHERE job_id = ?"
            " AND json_extract(memory, '$.source_file') = ?"
            " AND json_extract(memory, '$.project') = ? AND json_extract(memory, '$.repo') = ?",
            (job_id, document.source_file, document.project, document.repo),
        ) if document_id(document.project, document.repo, document.source_file, r["record_id"] or "") == document.document_id]
        broken = self._one(
            "SELECT COUNT(*) FROM items WHERE job_id = ? AND state = 'failed' AND memory IS NULL AND (item = ? OR item LIKE ?)",
            (job_id, document.source_file, document.source_file.replace("%", "_") + " %"),
        )[0]
        return DocumentChunks(frozenset(r["uuid"] for r in rows),
                              complete=not broken and all(r["state"] not in ("pending", "failed") for r in rows))

    def add_removed(self, job_id: str, n: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET removed = removed + ? WHERE id = ?", (n, job_id))

    def earlier_documents(self, job_id: str, origin: str) -> list[JobDocument]:
        """The documents of earlier jobs that imported the same `origin` (a mirror's folder),
        newest job first, one row per document."""
        rows = self._rows(
            "SELECT d.* FROM documents d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.job_id != ? AND json_extract(j.request, '$.origin') = ? ORDER BY j.created_at DESC",
            (job_id, origin),
        )
        seen: dict[str, JobDocument] = {}
        for r in rows:
            seen.setdefault(r["document_id"], JobDocument(r["document_id"], r["project"], r["repo"], r["source_file"],
                                                          r["document_hash"], r["chunks"]))
        return list(seen.values())

    def gone_documents(self, origin: str, present: set[str], job_id: str = "") -> list[JobDocument]:
        """A mirror's removals: the documents earlier imports of `origin` had (other than
        job `job_id`) whose ids are not in `present`."""
        return [d for d in self.earlier_documents(job_id, origin) if d.document_id not in present]

    def last_imports(self, document_ids: Sequence[str]) -> dict[str, tuple[str, float]]:
        """For each document id: the id and time of the last job that imported it."""
        out: dict[str, tuple[str, float]] = {}
        ids = list(document_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._rows(
                f"SELECT d.document_id, j.id, j.created_at FROM documents d JOIN jobs j ON j.id = d.job_id"
                f" WHERE d.document_id IN ({marks}) ORDER BY j.created_at", chunk,
            ):
                out[r[0]] = (r[1], float(r[2]))
        return out

    def job_uuids(self, job_id: str) -> list[str]:
        """The uuids of every memory a job's items name (what deleting the job deletes)."""
        return [r[0] for r in self._rows("SELECT DISTINCT uuid FROM items WHERE job_id = ? AND uuid IS NOT NULL", (job_id,))]

    def forget(self, uuids: Sequence[str]) -> int:
        """Drop the content every job keeps for these memories (they were deleted), so no
        resume or retry can write them again: a pending item becomes failed ("deleted"),
        and no item keeps the text. Returns how many items were touched."""
        touched = 0
        ids = list(dict.fromkeys(uuids))
        with self._tx() as db:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                pending = db.execute(
                    f"SELECT job_id, COUNT(*) FROM items WHERE state = 'pending' AND uuid IN ({marks}) GROUP BY job_id", chunk
                ).fetchall()
                for job_id, n in pending:
                    db.execute("UPDATE jobs SET failed = failed + ? WHERE id = ?", (n, job_id))
                db.execute(
                    f"UPDATE items SET state = 'failed', reason = 'deleted before it was written', error_type = 'deleted'"
                    f" WHERE state = 'pending' AND uuid IN ({marks})", chunk,
                )
                touched += db.execute(
                    f"UPDATE items SET memory = NULL WHERE memory IS NOT NULL AND uuid IN ({marks})", chunk
                ).rowcount
        return touched

    def uuids_matching(self, fields: dict[str, str], tags: Sequence[str] = ()) -> list[str]:
        """The uuids of every item, in any job, whose memory has these field values (and
        any of `tags`), whether it was stored or not."""
        if not fields and not tags:
            raise ValueError("name at least one field")
        conditions = ["memory IS NOT NULL"]
        params: list[Any] = []
        for name, value in fields.items():
            conditions.append(f"json_extract(memory, '$.{name}') = ?")
            params.append(value)
        if tags:
            conditions.append(
                f"EXISTS (SELECT 1 FROM json_each(memory, '$.tags') WHERE value IN ({','.join('?' * len(tags))}))"
            )
            params.extend(tags)
        rows = self._rows(f"SELECT DISTINCT uuid FROM items WHERE {' AND '.join(conditions)}", params)
        return [r[0] for r in rows if r[0]]

    def sources_of(self, uuids: Sequence[str]) -> set[tuple[str, str]]:
        """(job id, source file) of every item holding the content of these memories."""
        out: set[tuple[str, str]] = set()
        ids = list(dict.fromkeys(uuids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.update((r[0], r[1]) for r in self._rows(
                f"SELECT DISTINCT job_id, json_extract(memory, '$.source_file') FROM items"
                f" WHERE memory IS NOT NULL AND uuid IN ({marks})", chunk,
            ) if r[1])
        return out

    def keeps_content_of(self, job_id: str, source_file: str) -> bool:
        """True while any item of the job still holds text from `source_file`."""
        row = self._one(
            "SELECT 1 FROM items WHERE job_id = ? AND memory IS NOT NULL AND json_extract(memory, '$.source_file') = ? LIMIT 1",
            (job_id, source_file),
        )
        return row is not None

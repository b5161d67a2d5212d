"""What the Import and Imports pages say about a job's files, from the engine's records:
each file's state, the one line in documents, and the filters of the Imports page."""
from __future__ import annotations

import datetime as dt

from components.follow_views import documents_line, file_stage, filter_jobs, job_outcome, job_title
from memsys.engine import FileState, JobProgress


def _job(state: str, *, planned: bool = True, written: int = 0, failed: int = 0, total: int = 10, project: str = "kb",
         started: float | None = None, paths: tuple[str, ...] = ("/spool/a/notes.txt",)) -> JobProgress:
    processed = written + failed
    return JobProgress("j1", state, total, written, 0, failed, processed, 1.0, None, 0, 1, 0, 0, 0.0,
                       started or dt.datetime(2026, 12, 7, 10).timestamp(), started, None, "", planned,
                       {"label": "notes.txt", "paths": list(paths), "defaults": {"project": project}})


def test_each_file_says_where_its_memories_are() -> None:
    running = _job("running")
    assert file_stage(FileState("a.txt", 10, embedding=3), running) == "embedding"
    assert file_stage(FileState("a.txt", 10, written=4, writing=6), running) == "writing (4 of 10 done)"
    assert file_stage(FileState("a.txt", 10), running) == "queued"
    assert file_stage(FileState("a.txt", 10), _job("planning", planned=False)) == "reading"
    assert file_stage(FileState("a.txt", 10, written=10), running) == "done"
    assert file_stage(FileState("scan.pdf", 1, failed=1, reason="damaged PDF", unreadable=True), running) == "failed: damaged PDF"
    cancelled = _job("cancelled")
    assert file_stage(FileState("a.txt", 10), cancelled) == "not started"
    assert file_stage(FileState("a.txt", 10, written=4), cancelled) == "partly imported, the rest not started"


def test_a_finished_import_says_in_one_line_what_happened_in_documents() -> None:
    done = _job("completed", written=8, failed=1, total=9)
    files = [FileState(f"article-{i}.txt", 1, written=1) for i in range(8)]
    files.append(FileState("broken-scan.pdf", 1, failed=1, reason="damaged PDF", unreadable=True))
    assert documents_line(done, files) == "8 documents imported, 1 file could not be read: broken-scan.pdf, damaged PDF"
    cancelled = _job("cancelled", written=12, total=95)
    line = documents_line(cancelled, [FileState("a.txt", 50, written=12), FileState("b.txt", 45)])
    assert line == "0 documents imported, 1 document partly imported, 1 document not started"


def test_a_job_in_a_list_is_named_by_its_files_and_its_outcome() -> None:
    job = _job("cancelled", written=12, total=95, paths=tuple(f"/spool/{i}/f{i}.txt" for i in range(5)))
    assert job_title(job) == "f0.txt, f1.txt, f2.txt and 2 more"
    assert job_outcome(job) == "Cancelled: 12 memories written, 83 not started"


def test_the_imports_page_filters_by_state_knowledge_base_and_day() -> None:
    day = dt.datetime(2026, 12, 7, 10).timestamp()
    jobs = [_job("completed", project="handbook", started=day), _job("cancelled", project="wiki", started=day),
            _job("completed", project="wiki", started=day - 3 * 86400)]
    assert filter_jobs(jobs, ["Completed"], "", None, None) == [jobs[0], jobs[2]]
    assert filter_jobs(jobs, [], "wiki", None, None) == [jobs[1], jobs[2]]
    assert filter_jobs(jobs, [], "", dt.date(2026, 12, 6), None) == jobs[:2]

"""One import of a hostile corpus (tests/hostile_corpus.py: bombs, deep nesting, bad
encodings, odd names, special files) beside good files, through the real engine, job
runner, embedder and embedded Weaviate: every bad file is named with its reason, every
good one is imported, the importing process's peak resident memory stays within the bound
below, and no file holds the import past its time limit. Cancel acts inside a large file.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from memsys import MemorySystem
from memsys.config import BatchConfig
from memsys.engine import Engine
from memsys.ingest.files import iter_memories
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import InputProblem, ReadLimits
from memsys.ingest.workers import ReadCancelled

from dashboard_support import wait_until
from hostile_corpus import GOOD_TEXT, KINDS, build, inflating_pdf, make_unreadable, unmount_all

DEFAULTS = MemoryDefaults(project="hostile", repo="corpus", agent="tests")
SECONDS_PER_FILE = 20.0  # the engine's limit per file for this test (MEMSYS_READ_SECONDS_PER_FILE)
# The import may raise the importing process's peak resident memory by at most this much
# (the readers run in worker processes, each capped at 1 GiB of address space).
RSS_GROWTH_BOUND = 300 * 2**20


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _current_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_a_hostile_corpus_costs_each_file_only_itself(memsys_system: MemorySystem, tmp_path: Path) -> None:
    assert len(KINDS) >= 40
    settings = memsys_system.settings.replace(data_dir=tmp_path / "data", read_seconds_per_file=SECONDS_PER_FILE)
    engine = Engine(settings, system=memsys_system)
    try:
        build(tmp_path / "corpus")
        spooled = engine.imports.spool_paths([tmp_path / "corpus"])  # the unreadable file is named by the copy
    finally:
        unmount_all(tmp_path / "corpus")
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory counts from here
    before = _current_rss()
    started = time.monotonic()
    job_id = engine.imports.start(spooled, DEFAULTS, config=BatchConfig(max_retries=1))
    job = engine.runner.wait(job_id, timeout=900)
    took = time.monotonic() - started
    peak = _peak_rss()
    growth = peak - before
    assert job.state == "completed", job.error
    assert job.written + job.unchanged + job.failed == job.total

    failed = {f.item: f.reason for f in engine.jobs.iter_failed_items(job_id)}
    _, warnings = engine.jobs.warnings(job_id, limit=1000)
    warned = dict(warnings)
    stored = memsys_system.store.browse(offset=0, limit=2000)
    text_by_file: dict[str, str] = {}
    for memory in stored:
        text_by_file[memory.source_file] = text_by_file.get(memory.source_file, "") + memory.content

    wrong = []
    for kind in KINDS:
        name = f"corpus/{kind.name}"
        if kind.problem and kind.problem not in failed.get(name, ""):
            wrong.append((name, "problem", kind.problem, failed.get(name)))
        if kind.warning and kind.warning not in warned.get(name, ""):
            wrong.append((name, "warning", kind.warning, warned.get(name)))
        if kind.text and kind.text not in text_by_file.get(name, ""):
            wrong.append((name, "text", kind.text, failed.get(name) or warned.get(name) or sorted(text_by_file)))
    assert not wrong, "\n".join(map(str, wrong))
    for i in range(3):
        assert f"{GOOD_TEXT} Entry {i}." in text_by_file[f"corpus/good-{i}.md"]
    timed_out = [item for item, reason in failed.items() if "took longer than the limit" in reason]
    assert timed_out == ["corpus/long-line.txt"], timed_out
    assert growth <= RSS_GROWTH_BOUND, f"peak RSS grew by {growth / 2**20:.0f} MB"
    print(f"\nhostile kinds: {len(KINDS)} tried, {len(KINDS)} accounted for, 0 crashed the import; "
          f"{len(failed)} failed items, {len(warned)} warnings; peak RSS {peak / 2**20:.0f} MB, growth {growth / 2**20:.0f} MB "
          f"(bound {RSS_GROWTH_BOUND / 2**20:.0f} MB); import took {took:.0f} s")


def test_cancel_stops_a_read_inside_a_large_file(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as out:
        out.write("content,project\n")
        for i in range(600_000):
            out.write(f"row {i} of a large file that takes a while to read,p\n")
    cancel_at: list[float] = []
    read = 0
    stopped = None
    with pytest.raises(ReadCancelled):
        for piece in iter_memories([big], DEFAULTS, limits=ReadLimits(), cancelled=lambda: bool(cancel_at)):
            read += 1
            if read == 1000:
                cancel_at.append(time.monotonic())
    stopped = time.monotonic()
    assert read < 600_000  # it stopped inside the file
    print(f"\ncancel to stop inside a 36 MB csv: {stopped - cancel_at[0]:.2f} s")
    assert stopped - cancel_at[0] < 5


def test_a_file_past_its_time_limit_is_stopped_and_the_next_is_read(tmp_path: Path) -> None:
    (tmp_path / "a-slow.txt").write_text("x" * (4 * 2**20), encoding="utf-8")  # slow to cut into chunks
    (tmp_path / "b-good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    pieces = list(iter_memories([tmp_path / "a-slow.txt", tmp_path / "b-good.txt"], DEFAULTS,
                                limits=ReadLimits(seconds_per_file=2)))
    problems = [p for p in pieces if isinstance(p, InputProblem)]
    assert [(p.item, "took longer than the limit of 2 s" in p.reason) for p in problems] == [("a-slow.txt", True)]
    assert [m.content for m in pieces if not isinstance(m, InputProblem)] == [GOOD_TEXT]


def test_a_reader_that_balloons_is_stopped_at_its_memory_limit(tmp_path: Path) -> None:
    # 60 MB of tiny json records parsed whole (an object at the top, so not streamed)
    # needs far more than 300 MB: the reader is stopped, the next file is read.
    (tmp_path / "a-balloon.json").write_text('{"data": [' + ",".join(['{"content": "x"}'] * 3_500_000) + "]}", encoding="utf-8")
    (tmp_path / "b-good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    pieces = list(iter_memories([tmp_path / "a-balloon.json", tmp_path / "b-good.txt"], DEFAULTS,
                                limits=ReadLimits(reader_memory_bytes=600 * 2**20)))
    problems = [p for p in pieces if isinstance(p, InputProblem)]
    assert len(problems) == 1 and problems[0].item == "a-balloon.json", problems
    assert "memory" in problems[0].reason
    assert [m.content for m in pieces if not isinstance(m, InputProblem)][-1] == GOOD_TEXT
    assert os.getpid()  # the test process itself is untouched: it is still here to assert


def test_a_pdf_whose_streams_inflate_past_the_limit_per_pdf_is_refused(tmp_path: Path) -> None:
    # Four streams of 4 MB each stay under pypdf's own bound per stream (75 MB) and under
    # this 10 MB limit one by one; together they pass it, so the PDF is refused unread.
    (tmp_path / "a-inflating.pdf").write_bytes(inflating_pdf(4, 4))
    (tmp_path / "b-small.pdf").write_bytes(inflating_pdf(2, 1, "Small enough words"))
    pieces = list(iter_memories([tmp_path / "a-inflating.pdf", tmp_path / "b-small.pdf"], DEFAULTS,
                                limits=ReadLimits(max_pdf_stream_bytes=10 * 2**20)))
    problems = [p for p in pieces if isinstance(p, InputProblem)]
    assert [p.item for p in problems] == ["a-inflating.pdf"], problems
    assert "inflate past the limit of 10.0 MB once decompressed per PDF" in problems[0].reason
    assert [m.content for m in pieces if not isinstance(m, InputProblem)] == ["Small enough words"] * 2


def test_one_pdf_stream_that_inflates_past_the_limit_is_refused(tmp_path: Path) -> None:
    # 64 MB from one 64 KB stream (under pypdf's own 75 MB bound per stream); pypdf's bound
    # is lowered to the 10 MB limit, so decompression also stops there.
    (tmp_path / "one-stream.pdf").write_bytes(inflating_pdf(1, 64))
    pieces = list(iter_memories([tmp_path / "one-stream.pdf"], DEFAULTS, limits=ReadLimits(max_pdf_stream_bytes=10 * 2**20)))
    assert [(p.item, "once decompressed" in p.reason) for p in pieces if isinstance(p, InputProblem)] == [("one-stream.pdf", True)]


def test_an_unreadable_file_is_named_and_the_rest_of_the_folder_is_read(tmp_path: Path) -> None:
    # Read in place (no spool copy): the reader's own open fails with EACCES (see make_unreadable).
    folder = tmp_path / "folder"
    folder.mkdir()
    make_unreadable(folder / "a-unreadable.txt")
    (folder / "b-good.txt").write_text(GOOD_TEXT, encoding="utf-8")
    try:
        pieces = list(iter_memories([folder], DEFAULTS))
    finally:
        unmount_all(folder)
    problems = [p for p in pieces if isinstance(p, InputProblem)]
    assert [(p.item, p.reason) for p in problems] == [("folder/a-unreadable.txt", "could not be read: Permission denied")]
    assert [m.content for m in pieces if not isinstance(m, InputProblem)] == [GOOD_TEXT]


def _rows(count: int, start: int = 0) -> str:
    return "".join(f"row {i} of a csv that is being written to,p\n" for i in range(start, start + count))


@pytest.mark.parametrize("change", ["grows", "is cut short", "is replaced"])
def test_a_file_changed_while_it_is_read_is_named_with_what_changed(tmp_path: Path, change: str) -> None:
    # The worker streams pieces through a pipe that holds a few batches, so after the first
    # piece arrives it is still inside the file (blocked on the pipe) when the file changes.
    csv = tmp_path / "log.csv"
    csv.write_text("content,project\n" + _rows(20_000), encoding="utf-8")
    pieces = iter_memories([csv], DEFAULTS)
    first = next(pieces)
    assert not isinstance(first, InputProblem), first
    if change == "grows":
        with csv.open("a", encoding="utf-8") as out:
            out.write(_rows(100, start=20_000))
    elif change == "is cut short":
        os.truncate(csv, csv.stat().st_size // 2)
    else:
        (tmp_path / "new.csv").write_text("content,project\nthe new file,p\n", encoding="utf-8")
        os.replace(tmp_path / "new.csv", csv)
    rest = list(pieces)
    warnings = [p for p in rest if isinstance(p, InputProblem) and p.warning]
    assert [w.item for w in warnings] == ["log.csv"], warnings
    expected = {"grows": "grew from", "is cut short": "was cut short from", "is replaced": "was replaced by another file"}[change]
    assert expected in warnings[0].reason and "while it was being read" in warnings[0].reason, warnings[0].reason
    # A cut may leave half a row at the end: that row alone is a problem of its own.
    assert all(p.item.startswith("log.csv row ") for p in rest if isinstance(p, InputProblem) and not p.warning)
    assert len(rest) > 1  # the read went on after the change


def test_cancel_stops_an_import_job_while_it_plans_a_large_file(memsys_system: MemorySystem, tmp_path: Path) -> None:
    # The job's planning reads the file (in a reader worker); Cancel must act inside it,
    # not after the file's 600,000 rows.
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as out:
        out.write("content,project\n")
        for i in range(600_000):
            out.write(f"row {i} of a large file that takes a while to plan,p\n")
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    job_id = engine.imports.start([big], DEFAULTS)
    wait_until(lambda: (lambda j: j is not None and j.state == "planning" and j.total > 0)(engine.jobs.get(job_id)),
               timeout=120, interval=0.05, what="planning inside the file")
    asked = time.monotonic()
    engine.jobs.cancel(job_id)
    wait_until(lambda: not engine.jobs.require(job_id).is_active, timeout=60, interval=0.05, what="the job stopped")
    took = time.monotonic() - asked
    job = engine.jobs.require(job_id)
    assert job.total < 600_000 and job.written == 0, (job.state, job.total)  # it stopped inside the file
    print(f"\nimport job: Cancel to stopped while planning a 36 MB csv: {took:.2f} s ({job.state}, {job.total:,} rows planned)")
    assert took < 5

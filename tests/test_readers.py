"""Readers and `iter_memories`: real files of every supported kind become memories that
remember where they came from, and every kind of bad input becomes a clear per-file (or
per-row) problem while the good files beside it still import."""
from __future__ import annotations

import json
import re
import tracemalloc
import types
from pathlib import Path
from typing import Any

import pytest

from make_files import (
    docx_bytes,
    encrypted_pdf,
    pdf_with_text,
    pdf_without_text,
    write,
    zip_bytes,
)
from memsys.ingest import (
    FieldMapping,
    InputProblem,
    MemoryDefaults,
    ReadLimits,
    UnsafeNameError,
    iter_memories,
    spool_path,
)
from memsys.ingest.readers.sources import parser_said
from memsys.models import Memory, MemoryValidationError

DEFAULTS = MemoryDefaults(project="kb", repo="docs", agent="importer", tags=("import",))
GOOD_TEXT = "The good file is still imported."


def run(paths: list[Path], **kwargs: object) -> tuple[list[Memory], list[InputProblem]]:
    memories: list[Memory] = []
    problems: list[InputProblem] = []
    for item in iter_memories(paths, DEFAULTS, **kwargs):  # type: ignore[arg-type]
        (problems if isinstance(item, InputProblem) else memories).append(item)
    return memories, problems


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An import folder that always holds one good file."""
    root = tmp_path / "upload"
    write(root / "good.txt", GOOD_TEXT)
    return root


def good_file_imported(memories: list[Memory]) -> bool:
    return any(m.content == GOOD_TEXT and m.source_file == "upload/good.txt" for m in memories)


def only_problem(problems: list[InputProblem]) -> InputProblem:
    assert len(problems) == 1, problems
    return problems[0]


# --- Good input of every kind ----------------------------------------------------------------


def test_text_file_becomes_a_memory_with_defaults_and_its_origin(folder: Path) -> None:
    memories, problems = run([folder / "good.txt"])
    assert problems == []
    assert memories == [
        Memory(content=GOOD_TEXT, project="kb", repo="docs", agent="importer", tags=("import",),
               source="document-import", source_file="good.txt", source_location="line 1", chunk_index=0)
    ]


def test_iter_memories_is_a_generator() -> None:
    assert isinstance(iter_memories([], DEFAULTS), types.GeneratorType)


def test_folder_is_read_recursively_with_paths_relative_to_it_and_hidden_files_left_out(folder: Path) -> None:
    write(folder / "sub" / "deeper" / "note.md", "# Title\n\nA note in a subfolder.")
    write(folder / ".git" / "config", "[core]")
    write(folder / ".DS_Store", b"\x00\x01binary")
    memories, problems = run([folder])
    assert problems == []
    assert sorted(m.source_file for m in memories) == ["upload/good.txt", "upload/sub/deeper/note.md"]


@pytest.mark.parametrize(
    "encoding, text",
    [
        ("gbk", "你好，世界。这是一个用GBK编码保存的测试文件，内容是中文。"),
        ("shift_jis", "こんにちは、世界。これはシフトJISで保存されたテストファイルです。"),
        ("big5", "你好，世界。這是一個用大五碼儲存的測試檔案。"),
        ("utf-16", "UTF-16 with a byte order mark: 你好, こんにちは."),
        # Without a byte-order mark, as some Windows tools write it: Python's utf-16-le/-be write none.
        ("utf-16-le", "Meeting notes, 12 March.\nThe team agreed on the schedule.\n会议记录：讨论了项目进度。"),
        ("utf-16-be", "Zirconium is a chemical element with symbol Zr.\n锆是一种化学元素。\nÉtude: naïve façade."),
        ("utf-16-le", "会议记录：讨论了项目进度，确定了下一阶段的目标。\n下周一继续讨论预算。"),
        ("latin-1", "Café déjà vu: naïve façade, señor, über große Straße."),
    ],
)
def test_text_encoding_is_detected(folder: Path, encoding: str, text: str) -> None:
    write(folder / "encoded.txt", text, encoding=encoding)
    memories, problems = run([folder])
    assert problems == []
    assert [m.content for m in memories if m.source_file == "upload/encoded.txt"] == [text]


def test_a_csv_in_utf16_without_a_byte_order_mark_is_read_row_by_row(folder: Path) -> None:
    write(folder / "notes.csv", "content,project\n会议记录：讨论了项目进度,alpha\nBudget review,beta\n", encoding="utf-16-le")
    memories, problems = run([folder / "notes.csv"])
    assert problems == []
    assert [(m.content, m.project) for m in memories] == [("会议记录：讨论了项目进度", "alpha"), ("Budget review", "beta")]


@pytest.mark.parametrize(
    "data",
    [
        bytes(range(256)) * 8,
        ("Plain English notes about the schedule.\n" * 40).encode() + b"\x00",
        ("会议记录：讨论了项目进度。\n" * 40).encode() + b"\x00",
    ],
    ids=["bytes", "ascii-with-a-nul", "utf8-chinese-with-a-nul"],
)
def test_bytes_that_only_hold_zeros_are_not_read_as_utf16(folder: Path, data: bytes) -> None:
    write(folder / "data.txt", data)
    memories, problems = run([folder / "data.txt"])
    assert memories == []
    assert [p.reason for p in problems] == [problems[0].reason] and "binary" in problems[0].reason


def test_html_gives_its_text_after_its_title_without_scripts_or_styles(folder: Path) -> None:
    write(
        folder / "page.html",
        "<html><head><title>Release notes</title><style>p {color: red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Version 2</h1>"
        "<p>Faster &amp; smaller.</p><ul><li>one</li><li>two</li></ul></body></html>",
    )
    memories, _ = run([folder / "page.html"])
    # A page this small is read by trafilatura's baseline: its text, a line a block.
    assert [m.content for m in memories] == ["Release notes\n\nVersion 2\nFaster & smaller.\none\ntwo"]


def test_pdf_pages_become_memories_located_by_page(folder: Path) -> None:
    write(folder / "report.pdf", pdf_with_text(["First page text.", "Second page text."]))
    memories, problems = run([folder / "report.pdf"])
    assert problems == []
    assert [(m.content, m.source_file, m.source_location) for m in memories] == [
        ("First page text.", "report.pdf", "page 1"),
        ("Second page text.", "report.pdf", "page 2"),
    ]


def test_docx_paragraphs_and_tables_are_read_in_order(folder: Path) -> None:
    write(folder / "spec.docx", docx_bytes(["Introduction.", "Details follow."], [["Name", "Value"], ["size", "42"]]))
    memories, _ = run([folder / "spec.docx"])
    assert [m.content for m in memories] == ["Introduction.\n\nDetails follow.\n\nName | Value\n\nsize | 42"]


def test_csv_rows_map_columns_to_memory_fields(folder: Path) -> None:
    write(
        folder / "notes.csv",
        'content,project,repo,agent,tags,source\n"Use the cache, always",alpha,api,bob,"perf, cache",wiki\n',
    )
    memories, problems = run([folder / "notes.csv"])
    assert problems == []
    assert memories == [
        Memory(content="Use the cache, always", project="alpha", repo="api", agent="bob",
               tags=("import", "perf", "cache"), source="wiki", source_file="notes.csv",
               source_location="row 2", chunk_index=0)
    ]


def test_csv_empty_cells_fall_back_to_the_defaults(folder: Path) -> None:
    write(folder / "notes.csv", "text,project\nfirst note,\n")
    memories, _ = run([folder / "notes.csv"])
    assert [(m.content, m.project) for m in memories] == [("first note", "kb")]


def test_csv_columns_can_be_mapped_by_the_user(folder: Path) -> None:
    write(folder / "export.csv", "Id;Body;Team;Labels\n1;Ship on Friday;ops;[\"release\"]\n")
    mapping = FieldMapping(content="Body", project="Team", tags="Labels")
    memories, problems = run([folder / "export.csv"], mapping=mapping)
    assert problems == []
    assert [(m.content, m.project, m.tags) for m in memories] == [("Ship on Friday", "ops", ("import", "release"))]


def test_csv_in_gbk_is_decoded(folder: Path) -> None:
    write(folder / "notes.csv", "content,project\n会议记录：讨论了项目进度,alpha\n", encoding="gbk")
    memories, problems = run([folder / "notes.csv"])
    assert problems == []
    assert [(m.content, m.project) for m in memories] == [("会议记录：讨论了项目进度", "alpha")]


def test_jsonl_records_become_memories_located_by_line(folder: Path) -> None:
    lines = [{"content": "first", "tags": ["a"]}, {"text": "second", "agent": "eve"}]
    write(folder / "records.jsonl", "\n".join(json.dumps(r) for r in lines) + "\n")
    memories, _ = run([folder / "records.jsonl"])
    assert [(m.content, m.agent, m.tags, m.source_location) for m in memories] == [
        ("first", "importer", ("import", "a"), "line 1"),
        ("second", "eve", ("import",), "line 2"),
    ]


def test_json_in_the_seed_batch_format_is_read(folder: Path) -> None:
    records = {"memories": [{"content": "实现了新功能", "project": "my-project", "repo": "main",
                             "agent": "developer", "tags": ["feature"], "source": "development"}]}
    write(folder / "batch.json", json.dumps(records, ensure_ascii=False))
    memories, _ = run([folder / "batch.json"])
    assert [(m.content, m.project, m.source, m.source_location) for m in memories] == [
        ("实现了新功能", "my-project", "development", "item 1")
    ]


def test_zip_entries_are_read_and_named_inside_the_archive(folder: Path) -> None:
    write(folder / "bundle.zip", zip_bytes({"a.md": b"Alpha notes.", "dir/b.txt": b"Beta notes."}))
    memories, problems = run([folder])
    assert problems == []
    assert sorted((m.source_file, m.content) for m in memories) == [
        ("upload/bundle.zip/a.md", "Alpha notes."),
        ("upload/bundle.zip/dir/b.txt", "Beta notes."),
        ("upload/good.txt", GOOD_TEXT),
    ]


def test_big_csv_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    rows = 10_000
    with (tmp_path / "big.csv").open("w", encoding="utf-8") as f:
        f.write("content,project\n")
        for i in range(rows):
            f.write(f"Row number {i} says something worth remembering about topic {i % 97}.,p{i % 5}\n")
    size = (tmp_path / "big.csv").stat().st_size
    memories = iter_memories([tmp_path / "big.csv"], DEFAULTS)
    next(memories)  # warm up the tokenizer outside the measurement
    tracemalloc.start()
    count = 1 + sum(1 for _ in memories)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == rows
    assert peak < size / 2, f"peak {peak} bytes while reading a {size}-byte csv"


# --- Bad input: a clear message, and the good file still imports --------------------------------


def test_empty_file_is_reported(folder: Path) -> None:
    write(folder / "empty.txt", b"")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/empty.txt", "is empty")
    assert good_file_imported(memories)


def test_whitespace_only_file_is_reported_as_empty(folder: Path) -> None:
    write(folder / "blank.md", "  \n\n \t\n")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/blank.md", "is empty (only white space)")
    assert good_file_imported(memories)


def test_binary_file_is_reported(folder: Path) -> None:
    write(folder / "image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/image.txt"
    assert problem.reason.startswith("is a binary file, not text")
    assert good_file_imported(memories)


def test_a_few_bad_bytes_in_a_utf8_file_are_replaced_and_counted_in_a_warning(folder: Path) -> None:
    text = ("这是一个测试文件，用于检查编码。" * 20).encode("utf-8")
    write(folder / "mangled.txt", text[:99] + b"\xff\xfe\xfd" + text[99:])
    memories, problems = run([folder])
    warning = only_problem(problems)
    assert (warning.item, warning.warning) == ("upload/mangled.txt", True)
    assert warning.reason.startswith("3 byte(s) were not valid UTF-8 and were replaced")
    read = "".join(m.content for m in memories if m.source_file == "upload/mangled.txt")
    assert read.count("\ufffd") == 3 and "用于检查编码" in read
    assert good_file_imported(memories)


def test_corrupt_pdf_is_reported(folder: Path) -> None:
    write(folder / "broken.pdf", pdf_with_text(["Some text."])[:200])
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/broken.pdf"
    assert problem.reason.startswith("is damaged and could not be read as a PDF")
    assert not re.search(r"[A-Z][a-z]+(Error|Exception)\b", problem.reason), problem.reason  # the parser's words, not its class
    assert good_file_imported(memories)


def test_file_named_pdf_that_is_not_a_pdf_is_reported(folder: Path) -> None:
    write(folder / "fake.pdf", "just some text")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/fake.pdf", "is not a PDF (it does not start with %PDF-)")
    assert good_file_imported(memories)


def test_encrypted_pdf_is_reported(folder: Path) -> None:
    write(folder / "locked.pdf", encrypted_pdf(["Confidential."]))
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem(
        "upload/locked.pdf", "is password-protected; remove the password and import it again"
    )
    assert good_file_imported(memories)


def test_pdf_without_a_text_layer_is_reported(folder: Path) -> None:
    write(folder / "scan.pdf", pdf_without_text(3))
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/scan.pdf"
    assert "has no text layer on any of its 3 page(s)" in problem.reason
    assert good_file_imported(memories)


def test_docx_without_text_is_reported(folder: Path) -> None:
    write(folder / "blank.docx", docx_bytes([]))
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/blank.docx", "has no text (images or empty pages only?)")
    assert good_file_imported(memories)


def test_damaged_docx_is_reported(folder: Path) -> None:
    write(folder / "broken.docx", docx_bytes(["text"])[:500])
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/broken.docx"
    assert problem.reason.startswith("is damaged and could not be read as a .docx")
    assert not re.search(r"[A-Z][a-z]+(Error|Exception|File)\b", problem.reason), problem.reason
    assert good_file_imported(memories)


def test_a_parsers_words_keep_no_path_of_this_machine() -> None:
    said = parser_said(FileNotFoundError(2, "No such file or directory", "/srv/memsys/spool/0f/upload/a.pdf"))
    assert said == "No such file or directory: 'the file'"
    assert parser_said(ValueError("")) == "no reason given"
    assert len(parser_said(ValueError("x" * 500))) == 200


def test_csv_row_missing_content_is_reported_by_row_and_the_other_rows_import(folder: Path) -> None:
    write(folder / "data.csv", "content,project\nfirst,p\n,p\nthird,p\n")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/data.csv row 3", "has no content (column 'content' is empty)")
    assert [m.content for m in memories if m.source_file == "upload/data.csv"] == ["first", "third"]
    assert good_file_imported(memories)


def test_csv_row_with_too_many_values_is_reported(folder: Path) -> None:
    write(folder / "data.csv", "content,project\nfirst,p\nsecond,p,extra\n")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/data.csv row 3", "has 3 values but the header has 2 columns")
    assert [m.content for m in memories if m.source_file == "upload/data.csv"] == ["first"]


def test_csv_row_with_broken_quoting_is_reported(folder: Path) -> None:
    write(folder / "data.csv", 'content,project\n"bad"quote,p\nfine,p\n')
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.csv row 2"
    assert problem.reason.startswith("is malformed")
    assert [m.content for m in memories if m.source_file == "upload/data.csv"] == ["fine"]


def test_csv_without_a_content_column_is_reported(folder: Path) -> None:
    write(folder / "data.csv", "title,owner\nA,b\n")
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.csv"
    assert problem.reason.startswith("has no content column")
    assert "'title', 'owner'" in problem.reason
    assert good_file_imported(memories)


def test_csv_mapping_to_a_missing_column_is_reported(folder: Path) -> None:
    write(folder / "data.csv", "content\nA\n")
    memories, problems = run([folder], mapping=FieldMapping(project="Team"))
    assert only_problem(problems) == InputProblem("upload/data.csv", "has no column 'Team' for project (columns: 'content')")
    assert good_file_imported(memories)


def test_csv_row_with_bad_bytes_after_the_first_block_is_read_with_them_replaced_and_a_warning(folder: Path) -> None:
    rows = [f"row {i} is plain UTF-8 text,p\n".encode() for i in range(5000)]  # > 64 KiB
    rows[4000] = b"bad \xff\xfe row,p\n"
    write(folder / "data.csv", b"content,project\n" + b"".join(rows))
    memories, problems = run([folder])
    warning = only_problem(problems)
    assert (warning.item, warning.warning) == ("upload/data.csv", True)
    assert warning.reason.startswith("2 byte(s) were not valid UTF-8")
    assert len([m for m in memories if m.source_file == "upload/data.csv"]) == 5000
    assert good_file_imported(memories)


def test_jsonl_line_with_bad_bytes_after_the_first_block_is_read_with_them_replaced_and_a_warning(folder: Path) -> None:
    lines = [b'{"content": "line %d is fine"}\n' % i for i in range(3000)]  # > 64 KiB
    lines[2500] = b'{"content": "bad \xff"}\n'
    write(folder / "data.jsonl", b"".join(lines))
    memories, problems = run([folder])
    warning = only_problem(problems)
    assert (warning.item, warning.warning) == ("upload/data.jsonl", True)
    assert warning.reason.startswith("1 byte(s) were not valid UTF-8")
    assert len([m for m in memories if m.source_file == "upload/data.jsonl"]) == 3000


def test_undecodable_csv_is_reported(folder: Path) -> None:
    write(folder / "data.csv", b"content\n" + bytes(range(0x80, 0x100)) * 8)
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.csv"
    assert problem.reason.startswith("could not be decoded")
    assert good_file_imported(memories)


def test_malformed_json_line_is_reported_by_line_and_the_other_lines_import(folder: Path) -> None:
    write(folder / "data.jsonl", '{"content": "one"}\n{"content": "two"\n{"content": "three"}\n')
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.jsonl line 2"
    assert problem.reason.startswith("is not valid JSON")
    assert [m.content for m in memories if m.source_file == "upload/data.jsonl"] == ["one", "three"]


def test_record_with_tags_not_a_list_is_reported_with_the_validation_message(folder: Path) -> None:
    write(folder / "data.jsonl", '{"content": "one", "tags": "not-a-list"}\n{"content": "two"}\n')
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem(
        "upload/data.jsonl line 1", "field 'tags' must be a list of strings, got str"
    )
    assert [m.content for m in memories if m.source_file == "upload/data.jsonl"] == ["two"]


def test_json_record_missing_content_is_reported(folder: Path) -> None:
    write(folder / "data.json", json.dumps([{"content": "kept"}, {"title": "no content here"}]))
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.json item 2"
    assert problem.reason.startswith("has no content field")
    assert [m.content for m in memories if m.source_file == "upload/data.json"] == ["kept"]


def test_invalid_json_file_is_reported(folder: Path) -> None:
    write(folder / "data.json", '[{"content": "a"},')
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/data.json"
    assert problem.reason.startswith("is not valid JSON")
    assert good_file_imported(memories)


def test_file_over_the_size_limit_is_reported(folder: Path) -> None:
    write(folder / "huge.txt", "x" * 5000)
    memories, problems = run([folder], limits=ReadLimits(max_file_bytes=4096))
    assert only_problem(problems) == InputProblem("upload/huge.txt", "is 4.9 KB; the limit is 4.0 KB per file")
    assert good_file_imported(memories)


def test_unsupported_office_file_is_reported_with_what_to_do(folder: Path) -> None:
    write(folder / "sheet.xls", b"\xd0\xcf\x11\xe0 an old binary workbook")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem(
        "upload/sheet.xls", "is an old Excel file (.xls), which memsys cannot read: open it in Excel or LibreOffice, save it as .xlsx and import that"
    )
    assert good_file_imported(memories)


def test_missing_path_is_reported(folder: Path) -> None:
    memories, problems = run([folder / "nope.txt", folder / "good.txt"])
    assert only_problem(problems) == InputProblem("nope.txt", "does not exist or is not a file or folder")
    assert [m.source_file for m in memories] == ["good.txt"]


def test_zip_entry_with_dot_dot_is_reported_and_nothing_is_written_outside(folder: Path, tmp_path: Path) -> None:
    write(folder / "bundle.zip", zip_bytes({"../evil.txt": b"escaped", "ok.txt": b"Inside the zip."}))
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/bundle.zip/../evil.txt"
    assert "has '..' or an absolute path in its name" in problem.reason
    assert [m.content for m in memories if m.source_file.startswith("upload/bundle.zip")] == ["Inside the zip."]
    assert not (tmp_path / "evil.txt").exists() and not (folder / "evil.txt").exists()
    assert good_file_imported(memories)


def test_zip_entry_with_an_absolute_path_is_reported(folder: Path) -> None:
    write(folder / "bundle.zip", zip_bytes({"/etc/evil.txt": b"escaped", "ok.txt": b"Inside the zip."}))
    memories, problems = run([folder])
    problem = only_problem(problems)
    assert problem.item == "upload/bundle.zip//etc/evil.txt"
    assert "has '..' or an absolute path in its name" in problem.reason
    assert good_file_imported(memories)


def test_zip_bomb_by_expanded_size_is_refused_whole(folder: Path) -> None:
    write(folder / "bomb.zip", zip_bytes({"zeros.txt": b"0" * 3_000_000, "small.txt": b"small"}))
    assert (folder / "bomb.zip").stat().st_size < 20_000  # it really is a bomb
    memories, problems = run([folder], limits=ReadLimits(max_archive_bytes=1_000_000))
    assert only_problem(problems) == InputProblem(
        "upload/bomb.zip",
        "would expand to 2.9 MB; the limit is 976.6 KB per archive (nothing was imported from it)",
    )
    assert not any(m.source_file.startswith("upload/bomb.zip") for m in memories)
    assert good_file_imported(memories)


def test_zip_bomb_by_entry_count_is_refused_whole(folder: Path) -> None:
    write(folder / "many.zip", zip_bytes({f"f{i}.txt": b"tiny" for i in range(50)}))
    memories, problems = run([folder], limits=ReadLimits(max_archive_entries=20))
    assert only_problem(problems) == InputProblem(
        "upload/many.zip", "has 50 files; the limit is 20 per archive (nothing was imported from it)"
    )
    assert good_file_imported(memories)


def test_zip_entry_over_the_file_limit_is_reported(folder: Path) -> None:
    write(folder / "bundle.zip", zip_bytes({"big.txt": b"y" * 5000, "ok.txt": b"Fine entry."}))
    memories, problems = run([folder], limits=ReadLimits(max_file_bytes=4096))
    assert only_problem(problems) == InputProblem("upload/bundle.zip/big.txt", "is 4.9 KB; the limit is 4.0 KB per file")
    assert any(m.content == "Fine entry." for m in memories)


def test_zip_inside_a_zip_is_reported(folder: Path) -> None:
    inner = zip_bytes({"x.txt": b"inner"})
    write(folder / "outer.zip", zip_bytes({"inner.zip": inner, "ok.txt": b"Outer entry."}))
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem(
        "upload/outer.zip/inner.zip", "is a zip archive inside a zip archive; unpack the outer one first"
    )
    assert any(m.content == "Outer entry." for m in memories)


def test_damaged_zip_is_reported(folder: Path) -> None:
    write(folder / "broken.zip", zip_bytes({"a.txt": b"a" * 1000})[:60])
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem("upload/broken.zip", "is not a valid zip archive (damaged or not a zip)")
    assert good_file_imported(memories)


def test_link_to_a_file_outside_the_folder_is_not_followed(folder: Path, tmp_path: Path) -> None:
    write(tmp_path / "private.txt", "private data")
    (folder / "link.txt").symlink_to(tmp_path / "private.txt")
    memories, problems = run([folder])
    assert only_problem(problems) == InputProblem(
        "upload/link.txt", "is a link to a file outside the folder; links out are not followed"
    )
    assert not any(m.content == "private data" for m in memories)


# --- Settings and the spool -------------------------------------------------------------------


def test_defaults_that_cannot_make_a_memory_raise_before_reading() -> None:
    with pytest.raises(MemoryValidationError, match="field 'project' must not be empty"):
        MemoryDefaults(project=" ", repo="r", agent="a")


@pytest.mark.parametrize("name", ["../x.txt", "a/../../x.txt", "/etc/passwd", "C:\\Windows\\x.txt", "..\\x.txt"])
def test_spool_path_refuses_names_that_leave_the_spool(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeNameError, match="not saved"):
        spool_path(tmp_path / "spool", name)


def test_spool_path_keeps_ordinary_names_inside_the_spool(tmp_path: Path) -> None:
    assert spool_path(tmp_path / "spool", "docs/报告.pdf") == (tmp_path / "spool" / "docs" / "报告.pdf").resolve()


# --- The format registry -------------------------------------------------------------------------


def test_every_upload_type_has_a_reader_and_is_named_in_the_supported_sentence() -> None:
    from memsys.ingest.readers import FORMATS, SUPPORTED, UPLOAD_TYPES, format_of
    from memsys.ingest.readers.reading import READERS

    assert {f.name for f in FORMATS} == set(READERS)
    for suffix in UPLOAD_TYPES:
        file_format = format_of(f"x.{suffix.upper()}")
        assert file_format is not None and file_format.label in SUPPORTED, suffix


def test_the_columns_offered_for_mapping_are_the_columns_the_import_reads(folder: Path) -> None:
    from memsys.ingest.readers import has_columns, structured_columns

    write(folder / "notes.csv", "Body;Team\nsemicolons separate these columns;blue\n")
    columns = structured_columns(folder / "notes.csv")
    assert has_columns(folder / "notes.csv") and columns == ["Body", "Team"]
    memories, problems = run([folder / "notes.csv"], mapping=FieldMapping(content=columns[0], project=columns[1]))
    assert not problems
    assert [(m.content, m.project) for m in memories] == [("semicolons separate these columns", "blue")]


# --- For real: a search hit can be traced back to its file --------------------------------------


def test_search_hit_tells_which_file_and_page_it_came_from(memsys_system: Any, folder: Path) -> None:
    write(folder / "report.pdf", pdf_with_text(["Quarterly revenue grew by ten percent.",
                                                "The new warehouse in Lyon opens in March."]))
    write(folder / "faq.csv", "question,content\nParking?,Visitors park behind building B.\n")
    memories, problems = run([folder])
    assert problems == []
    memsys_system.write_memories_batch([m.to_dict() for m in memories])
    hit = memsys_system.search_memories("when does the Lyon warehouse open", limit=1)[0]
    assert (hit.source_file, hit.source_location, hit.chunk_index) == ("upload/report.pdf", "page 2", 0)
    hit = memsys_system.search_memories("where can visitors park", limit=1)[0]
    assert (hit.source_file, hit.source_location) == ("upload/faq.csv", "row 2")

"""More document formats, each made by its own library with Chinese, Japanese and English
text: imported through the real engine into embedded Weaviate, found by search and traced
to where it sits (page, sheet and rows, slide, chapter, heading). Scanned PDFs are read by
Tesseract OCR; a saved web page loses its menu and footer."""
from __future__ import annotations

import io
import tracemalloc
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from bench.ocr import SCAN_TEXT, character_accuracy, scanned_pdf
from make_files import pdf_with_text, write, zip_bytes
from memsys import MemorySystem
from memsys.config import ConfigError, Settings
from memsys.engine import Engine
from memsys.ingest.files import read_sources
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import (
    FieldMapping,
    InputProblem,
    OcrSettings,
    SourceText,
    has_columns,
    structured_columns,
)
from memsys.jobs import JobProgress
from office_files import FOOTER, MENU, docx_whole_bytes, eml_bytes, epub_bytes, pptx_bytes, web_page, xlsx_bytes

DEFAULTS = MemoryDefaults(project="formats", repo="docs", agent="importer")
SCAN_PAGES = [(language, SCAN_TEXT[language]) for language in ("zh", "ja", "en")]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    yield engine
    engine.job_store.close()


def import_files(engine: Engine, paths: list[Path]) -> JobProgress:
    job = engine.runner.wait(engine.imports.start(engine.imports.spool_paths(paths), DEFAULTS), timeout=600)
    assert job.state == "completed", job.error
    return job


def found(engine: Engine, query: str) -> tuple[str, str, str]:
    """The file, location and content of the best hit for `query`."""
    hit = engine.system.search_memories(query, limit=1)[0]
    return hit.source_file, hit.source_location, hit.content


def read(paths: list[Path], **kwargs: object) -> tuple[list[SourceText], list[InputProblem]]:
    pieces = list(read_sources(paths, **kwargs))  # type: ignore[arg-type]
    return ([p for p in pieces if isinstance(p, SourceText)], [p for p in pieces if isinstance(p, InputProblem)])


# --- Scanned PDFs: OCR ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scan") / "scan.pdf"
    path.write_bytes(scanned_pdf(SCAN_PAGES))
    return path


@pytest.fixture(scope="module")
def scan_read(scan: Path) -> dict[str, str]:
    """The scan read once by OCR: location -> text."""
    pieces, problems = read([scan])
    assert problems == []
    return {p.location: p.text for p in pieces}


@pytest.mark.parametrize("number, language", [(1, "zh"), (2, "ja"), (3, "en")])
def test_ocr_reads_each_language_of_a_scan_at_95_percent_of_characters(
    scan_read: dict[str, str], number: int, language: str
) -> None:
    assert character_accuracy("".join(SCAN_TEXT[language]), scan_read[f"page {number} (OCR)"]) >= 0.95


def test_a_scanned_pdf_is_imported_by_ocr_and_found_by_search(engine: Engine, scan: Path) -> None:
    job = import_files(engine, [scan])
    assert job.ocr_pages == 3 and job.failed == 0
    assert found(engine, "仓库管理系统每天晚上备份数据库")[:2] == ("scan.pdf", "page 1 (OCR)")
    assert found(engine, "倉庫の在庫は毎朝確認されます")[:2] == ("scan.pdf", "page 2 (OCR)")
    assert found(engine, "follow the import progress")[:2] == ("scan.pdf", "page 3 (OCR)")


def test_the_preview_counts_scanned_pages_without_reading_them(engine: Engine, scan: Path) -> None:
    preview = engine.imports.preview(engine.imports.spool_paths([scan]), DEFAULTS)
    assert (preview.ocr_pages, preview.memories, preview.problems) == (3, 0, [])
    assert preview.ocr_seconds > 0


def test_with_ocr_off_a_scan_is_reported_and_nothing_is_read(scan: Path) -> None:
    pieces, problems = read([scan], ocr=OcrSettings(enabled=False))
    assert pieces == []
    assert [p.item for p in problems] == ["scan.pdf"]
    assert "has no text layer on any of its 3 page(s)" in problems[0].reason
    assert "MEMSYS_OCR=off" in problems[0].reason


def test_ocr_stops_at_its_page_limit_and_names_the_pages_left_unread(tmp_path: Path) -> None:
    write(tmp_path / "long.pdf", scanned_pdf([SCAN_PAGES[2], SCAN_PAGES[2]]))
    pieces, problems = read([tmp_path / "long.pdf"], ocr=OcrSettings(max_pages=1))
    assert [p.location for p in pieces] == ["page 1 (OCR)"]
    assert [p.item for p in problems] == ["long.pdf"] and "pages 2-2 were not read" in problems[0].reason


def test_ocr_stops_at_its_time_budget_for_a_file_and_names_the_pages_left_unread(tmp_path: Path) -> None:
    write(tmp_path / "slow.pdf", scanned_pdf([SCAN_PAGES[2], SCAN_PAGES[2], SCAN_PAGES[2]]))
    pieces, problems = read([tmp_path / "slow.pdf"], ocr=OcrSettings(file_timeout=0.001))
    assert [p.location for p in pieces] == ["page 1 (OCR)"]  # the first page is always tried
    assert [(p.item, p.reason) for p in problems] == [
        ("slow.pdf page 2", "and the 1 scanned page(s) after it were not read: OCR stopped after 0.001 s for this file")
    ]


def test_a_pdf_with_a_text_page_and_a_scanned_page_reads_both(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in (pdf_with_text(["The text layer of page one."]), scanned_pdf([SCAN_PAGES[2]])):
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    write(tmp_path / "mixed.pdf", out.getvalue())
    pieces, problems = read([tmp_path / "mixed.pdf"])
    assert problems == []
    assert [(p.location, p.text.split("\n")[0]) for p in pieces] == [
        ("page 1", "The text layer of page one."),
        ("page 2 (OCR)", SCAN_TEXT["en"][0]),
    ]


def test_ocr_settings_come_from_the_environment() -> None:
    assert Settings.load(env={}, secrets_path=Path("/none")).ocr_enabled is True
    settings = Settings.load(env={"MEMSYS_OCR": "off", "MEMSYS_OCR_LANGUAGES": "eng"}, secrets_path=Path("/none"))
    assert (settings.ocr_enabled, settings.ocr_languages) == (False, "eng")
    with pytest.raises(ConfigError, match="MEMSYS_OCR is 'maybe'; use on or off"):
        Settings.load(env={"MEMSYS_OCR": "maybe"}, secrets_path=Path("/none"))
    with pytest.raises(ConfigError, match="MEMSYS_OCR_LANGUAGES"):
        Settings.load(env={"MEMSYS_OCR_LANGUAGES": "eng; rm -rf /"}, secrets_path=Path("/none"))


# --- Every format through the real engine: imported, searchable, traced ----------------------------

SHEET = {"库存": [["content", "project", "tags"],
                ["上海仓库的库存每周盘点一次。", "物流", "盘点"],
                ["大阪の倉庫は毎朝八時に点検されます。", "logistics", ""],
                ["The Lyon warehouse ships parcels on Mondays.", "logistics", "shipping, eu"]]}
SLIDES = [("季度总结", "收入增长了百分之十。", "Remind the room that revenue grew in every region."),
          ("新製品", "四月に発売します。", "演説メモ：新製品の発売日は四月十日です。")]
CHAPTERS = [("第一章 启程", "飞船在黎明时分离开了地球轨道。"),
            ("第二章 火星基地", "火星基地的氧气由温室里的植物提供。"),
            ("第三章 帰還", "乗組員は三年後に地球へ帰還した。")]


def format_files(folder: Path) -> Path:
    """One small file of each format, in a folder."""
    write(folder / "book.xlsx", xlsx_bytes(SHEET))
    write(folder / "deck.pptx", pptx_bytes(SLIDES, table=[["Linux", "Windows"], ["Yes", "Yes"]]))
    write(folder / "novel.epub", epub_bytes("星际旅行", CHAPTERS))
    write(folder / "mail.eml", eml_bytes(
        "Quarterly budget review", "张伟 <zhang@example.com>",
        "The marketing budget rises by twelve percent next quarter.", None,
        [("minutes.txt", "text/plain", "会議の議事録：次回の会議は金曜日に開催します。".encode()),
         ("logo.png", "image/png", b"\x89PNG\r\n\x1a\n not read")]))
    write(folder / "guide.docx", docx_whole_bytes())
    write(folder / "page.html", web_page("量子计算 | Example News", "量子计算机的冷却系统", [
        "量子计算机需要把芯片冷却到接近绝对零度，稀释制冷机是最常见的方案。",
        "冷却系统的稳定性直接影响量子比特的相干时间，因此工程师会持续监测温度。",
        "Engineers monitor the dilution refrigerator around the clock to keep the qubits coherent.",
    ]))
    return folder


@pytest.fixture(scope="module")
def imported(base_system: MemorySystem, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, JobProgress]]:
    """The format files imported once into a collection of their own."""
    system = base_system.with_collection(f"Formats_{uuid.uuid4().hex[:12]}")
    folder = format_files(tmp_path_factory.mktemp("formats") / "docs")
    engine = Engine(system.settings.replace(data_dir=tmp_path_factory.mktemp("formats-data")), system=system)
    job = import_files(engine, [folder])
    yield engine, job
    engine.job_store.close()
    system.store.delete_all()


def test_every_format_imports_without_a_problem(imported: tuple[Engine, JobProgress]) -> None:
    engine, job = imported
    assert job.failed == 0, [(f.item, f.reason) for f in engine.job_store.failed_items(job.job_id)]
    assert job.written >= 15


@pytest.mark.parametrize(
    "query, file, location",
    [
        ("大阪の倉庫は毎朝点検されます", "docs/book.xlsx", "sheet 库存 row 3"),
        ("新製品の発売日は四月十日", "docs/deck.pptx", "slide 2"),
        ("火星基地的氧气由植物提供", "docs/novel.epub", "chapter 2: 第二章 火星基地"),
        ("marketing budget next quarter", "docs/mail.eml", ""),
        ("次回の会議は金曜日", "docs/mail.eml/minutes.txt", "line 1"),
        ("サーバーにパッケージをインストール", "docs/guide.docx", "2 Setup > 2.1 Install"),
        ("量子计算机的冷却系统与绝对零度", "docs/page.html", ""),
    ],
)
def test_each_format_is_found_by_search_and_traced_to_where_it_sits(
    imported: tuple[Engine, JobProgress], query: str, file: str, location: str
) -> None:
    assert found(imported[0], query)[:2] == (file, location)


def test_no_memory_holds_the_web_pages_menu_or_footer(imported: tuple[Engine, JobProgress]) -> None:
    engine, _ = imported
    page = [m.content for m in engine.memories.browse(limit=1000) if m.source_file == "docs/page.html"]
    assert page and all(item not in text for text in page for item in [*MENU, FOOTER, "cookies"])
    assert page[0].startswith("量子计算 | Example News") and "# 量子计算机的冷却系统" in page[0]


# --- Spreadsheets --------------------------------------------------------------------------------


def test_sheet_rows_with_a_content_column_map_like_csv_rows(tmp_path: Path) -> None:
    write(tmp_path / "book.xlsx", xlsx_bytes(SHEET))
    pieces, problems = read([tmp_path / "book.xlsx"])
    assert problems == []
    assert [(p.location, p.text, dict(p.fields)) for p in pieces] == [
        ("sheet 库存 row 2", "上海仓库的库存每周盘点一次。", {"project": "物流", "tags": ["盘点"]}),
        ("sheet 库存 row 3", "大阪の倉庫は毎朝八時に点検されます。", {"project": "logistics"}),
        ("sheet 库存 row 4", "The Lyon warehouse ships parcels on Mondays.", {"project": "logistics", "tags": ["shipping", "eu"]}),
    ]


def test_a_sheet_without_a_content_column_is_read_in_blocks_of_rows(tmp_path: Path) -> None:
    import datetime as dt

    rows = [["品名", "数量", "入荷日"], ["りんご", 12.0, dt.datetime(2024, 5, 1)], [None, None, None], ["みかん", 3, None]]
    write(tmp_path / "stock.xlsx", xlsx_bytes({"在庫": rows}))
    pieces, problems = read([tmp_path / "stock.xlsx"])
    assert problems == []
    assert [(p.location, p.text) for p in pieces] == [
        ("sheet 在庫 rows 2-4", "品名: りんご | 数量: 12 | 入荷日: 2024-05-01\n品名: みかん | 数量: 3"),
    ]


def test_the_import_page_offers_a_workbooks_columns_and_the_mapping_applies(tmp_path: Path) -> None:
    write(tmp_path / "export.xlsx", xlsx_bytes({"Sheet1": [["Id", "Body", "Team"], [1, "Ship on Friday", "ops"]],
                                                "Sheet2": [["Id", "Body", "Owner"], [2, "金曜日に出荷", "dev"]]}))
    assert has_columns(tmp_path / "export.xlsx")
    assert structured_columns(tmp_path / "export.xlsx") == ["Id", "Body", "Team", "Owner"]
    pieces, problems = read([tmp_path / "export.xlsx"], mapping=FieldMapping(content="Body", project="Team"))
    assert [(p.location, p.text, dict(p.fields)) for p in pieces] == [
        ("sheet Sheet1 row 2", "Ship on Friday", {"project": "ops"})
    ]
    assert [(p.item, p.reason.split(" (")[0]) for p in problems] == [
        ("export.xlsx sheet Sheet2", "has no column 'Team' for project")
    ]


def test_a_workbook_is_streamed_not_loaded_whole(tmp_path: Path) -> None:
    import openpyxl

    rows = [["content", "project"]] + [[f"Row {i} holds a sentence worth keeping about topic {i % 97}.", f"p{i % 5}"]
                                       for i in range(5000)]
    write(tmp_path / "big.xlsx", xlsx_bytes({"data": rows}))
    tracemalloc.start()
    workbook = openpyxl.load_workbook(tmp_path / "big.xlsx")  # the whole workbook, as not to read it
    _, whole = tracemalloc.get_traced_memory()
    workbook.close()
    del workbook
    tracemalloc.stop()
    tracemalloc.start()
    count = sum(1 for _ in read_sources([tmp_path / "big.xlsx"]))
    _, streamed = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 5000
    assert streamed < whole / 4, f"reading took {streamed} bytes at its peak; loading whole took {whole}"


def test_a_damaged_workbook_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "broken.xlsx", xlsx_bytes(SHEET)[:300])
    pieces, problems = read([tmp_path / "broken.xlsx"])
    assert pieces == [] and [p.item for p in problems] == ["broken.xlsx"]
    assert problems[0].reason.startswith("is not a valid .xlsx workbook")


# --- Slides, e-books, e-mail ---------------------------------------------------------------------


def test_each_slide_is_a_piece_with_its_notes_and_every_table_cell(tmp_path: Path) -> None:
    write(tmp_path / "deck.pptx", pptx_bytes(SLIDES, table=[["Linux", "Windows"], ["Yes", "Yes"]]))
    pieces, problems = read([tmp_path / "deck.pptx"])
    assert problems == []
    assert [(p.location, p.text) for p in pieces] == [
        ("slide 1", "季度总结\n\n收入增长了百分之十。\n\nNotes: Remind the room that revenue grew in every region."),
        ("slide 2", "新製品\n\n四月に発売します。\n\nNotes: 演説メモ：新製品の発売日は四月十日です。"),
        ("slide 3", "Linux | Windows\nYes | Yes"),
    ]


def test_epub_chapters_come_in_reading_order_with_their_titles(tmp_path: Path) -> None:
    write(tmp_path / "novel.epub", epub_bytes("星际旅行", CHAPTERS, spine_order=[2, 0, 1]))
    pieces, problems = read([tmp_path / "novel.epub"])
    assert problems == []
    assert [(p.location, p.text.split("\n")[-1]) for p in pieces] == [
        ("chapter 1: 第三章 帰還", "乗組員は三年後に地球へ帰還した。"),
        ("chapter 2: 第一章 启程", "飞船在黎明时分离开了地球轨道。"),
        ("chapter 3: 第二章 火星基地", "火星基地的氧气由温室里的植物提供。"),
    ]


def test_an_email_gives_its_headers_body_and_text_attachments(tmp_path: Path) -> None:
    write(tmp_path / "mail.eml", eml_bytes(
        "会議のお知らせ", "山田 <yamada@example.jp>", "明日の会議は十時からです。", None,
        [("agenda.md", "text/markdown", "# Agenda\n\n1. Budget".encode()), ("photo.jpg", "image/jpeg", b"\xff\xd8 not read")]))
    pieces, problems = read([tmp_path / "mail.eml"])
    assert problems == []
    assert [(p.source_file, p.text) for p in pieces] == [
        ("mail.eml", "Subject: 会議のお知らせ\nFrom: 山田 <yamada@example.jp>\nTo: ops@example.com\n"
                     "Date: Wed, 01 May 2024 09:30:00 +0000\nAttachments: agenda.md, photo.jpg\n\n明日の会議は十時からです。"),
        ("mail.eml/agenda.md", "# Agenda\n\n1. Budget"),
    ]


def test_an_html_only_email_body_is_cleaned_of_its_menu_and_footer(tmp_path: Path) -> None:
    html = web_page("Newsletter", "本周新闻", ["新的数据中心在成都启用，容量是原来的两倍，可以支持更多的客户。",
                                              "The Chengdu data centre doubles our capacity for customers in the west."])
    write(tmp_path / "news.eml", eml_bytes("本周新闻", "news@example.com", None, html))
    pieces, problems = read([tmp_path / "news.eml"])
    assert problems == [] and len(pieces) == 1
    assert "新的数据中心在成都启用" in pieces[0].text
    assert not any(item in pieces[0].text for item in [*MENU, FOOTER])


# --- Word, whole -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def word_pieces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("word") / "guide.docx"
    path.write_bytes(docx_whole_bytes())
    pieces, problems = read([path])
    assert problems == []
    return {p.location: p.text for p in pieces}


def test_docx_sections_are_located_by_their_heading_path(word_pieces: dict[str, str]) -> None:
    assert list(word_pieces) == ["", "1 Overview", "2 Setup > 2.1 Install", "2 Setup > 2.2 Configure",
                                 "header", "footer", "footnotes"]
    assert word_pieces["2 Setup > 2.2 Configure"] == "2.2 Configure\n\nEdit the configuration file and restart the service."


def test_docx_table_rows_keep_every_cell_even_repeated_ones(word_pieces: dict[str, str]) -> None:
    assert "Supported | Yes | Yes" in word_pieces["2 Setup > 2.1 Install"].split("\n\n")


def test_docx_text_boxes_headers_footers_and_footnotes_are_read_once(word_pieces: dict[str, str]) -> None:
    install = word_pieces["2 Setup > 2.1 Install"]
    assert install.count("文本框里的提示：先备份数据库。") == 1  # not again from the fallback copy
    assert "サーバーに パッケージをインストールします。[1]" in install
    assert word_pieces["header"] == "机密文件 Confidential header"
    assert word_pieces["footer"] == "第 1 页 footer text"
    assert word_pieces["footnotes"] == "[1] 脚注：需要管理员权限。"


# --- Web pages -------------------------------------------------------------------------------------


def test_a_page_where_extraction_finds_nothing_falls_back_to_its_visible_text(tmp_path: Path) -> None:
    write(tmp_path / "tiny.html", "<p>Hi</p>")
    pieces, problems = read([tmp_path / "tiny.html"])
    assert problems == [] and [p.text for p in pieces] == ["Hi"]


def test_office_files_inside_a_zip_are_read_like_files_on_disk(tmp_path: Path) -> None:
    write(tmp_path / "bundle.zip", zip_bytes({
        "office/book.xlsx": xlsx_bytes(SHEET), "office/deck.pptx": pptx_bytes(SLIDES),
        "office/novel.epub": epub_bytes("星际旅行", CHAPTERS), "office/guide.docx": docx_whole_bytes(),
        "office/mail.eml": eml_bytes("Notes", "a@example.com", "See the attachment.", None,
                                     [("notes.txt", "text/plain", "添付のメモ".encode())]),
    }))
    pieces, problems = read([tmp_path / "bundle.zip"])
    assert problems == []
    assert {(p.source_file, p.location) for p in pieces} >= {
        ("bundle.zip/office/book.xlsx", "sheet 库存 row 4"), ("bundle.zip/office/deck.pptx", "slide 2"),
        ("bundle.zip/office/novel.epub", "chapter 3: 第三章 帰還"), ("bundle.zip/office/guide.docx", "2 Setup > 2.1 Install"),
        ("bundle.zip/office/mail.eml", ""), ("bundle.zip/office/mail.eml/notes.txt", ""),
    }

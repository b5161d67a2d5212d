"""More document formats, each made by its own library with Chinese, Japanese and English
text: imported through the real engine into embedded Weaviate, found by search and traced
to where it sits (page, sheet and rows, slide, chapter, heading). Scanned PDFs are read by
Tesseract OCR; a saved web page loses its menu and footer."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest

from bench.ocr import SCAN_TEXT, character_accuracy, scanned_pdf
from make_files import pdf_with_text, write
from memsys import MemorySystem
from memsys.config import ConfigError, Settings
from memsys.engine import Engine
from memsys.ingest.documents import MemoryDefaults
from memsys.ingest.readers import InputProblem, OcrSettings, SourceText, read_sources
from memsys.jobs import JobProgress

DEFAULTS = MemoryDefaults(project="formats", repo="docs", agent="importer")
SCAN_PAGES = [(language, SCAN_TEXT[language]) for language in ("zh", "ja", "en")]


@pytest.fixture
def engine(memsys_system: MemorySystem, tmp_path: Path) -> Iterator[Engine]:
    engine = Engine(memsys_system.settings.replace(data_dir=tmp_path / "data"), system=memsys_system)
    yield engine
    engine.jobs.close()


def import_files(engine: Engine, paths: list[Path]) -> JobProgress:
    job = engine.runner.wait(engine.start_import(engine.spool_paths(paths), DEFAULTS), timeout=600)
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
    preview = engine.preview(engine.spool_paths([scan]), DEFAULTS)
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

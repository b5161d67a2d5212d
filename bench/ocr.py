"""OCR of scanned PDFs: character accuracy per language on pages rendered from known
Chinese, Japanese and English text (Pillow + Noto CJK, wrapped as a PDF with no text
layer), and pages per second on this machine. The tests build their scans with the same
`scanned_pdf`, so what is measured here is what the tests check.
"""
from __future__ import annotations

import io
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator

from bench.common import Result

# Debian's fonts-noto-cjk (installed by tools/install_system_packages.sh).
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
# Face index in the collection: the Japanese face for ja and English, the Simplified
# Chinese face for zh (so each text has its own glyph shapes).
_FACE = {"ja": 0, "en": 0, "zh": 2}

SCAN_TEXT: dict[str, list[str]] = {
    "zh": [
        "扫描文件的光学字符识别测试。",
        "仓库管理系统在每天晚上自动备份数据库。",
        "用户可以通过控制面板查看导入进度。",
    ],
    "ja": [
        "スキャンした書類の文字認識テストです。",
        "倉庫の在庫は毎朝九時に確認されます。",
        "設定画面から言語を変更できます。",
    ],
    "en": [
        "Optical character recognition of a scanned page.",
        "The warehouse inventory is checked every morning.",
        "Operators can follow the import progress.",
    ],
}


def page_image(lines: list[str], language: str, dpi: int = 200) -> "object":
    """An A4 page at `dpi` with `lines` in black on white, as a scanner would give it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(NOTO_CJK), size=dpi * 40 // 200, index=_FACE[language])
    width, height = dpi * 827 // 100, dpi * 1169 // 100
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    y = dpi * 3 // 4
    for line in lines:
        draw.text((dpi * 6 // 10, y), line, font=font, fill=0)
        y += dpi * 45 // 100
    return image


def scanned_pdf(pages: list[tuple[str, list[str]]], dpi: int = 200) -> bytes:
    """A PDF of images only (no text layer): one page per (language, lines)."""
    images = [page_image(lines, language, dpi) for language, lines in pages]
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=dpi)  # type: ignore[attr-defined]
    return out.getvalue()


def character_accuracy(expected: str, got: str) -> float:
    """1 - (edit distance / length) over the characters, white space ignored."""
    a, b = re.sub(r"\s", "", expected), re.sub(r"\s", "", got)
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return max(0.0, 1 - previous[-1] / max(len(a), 1))


_REPEAT = 6


def run() -> Iterator[Result]:
    from memsys.ingest.files import read_sources
    from memsys.ingest.readers import InputProblem, OcrSettings

    languages = list(SCAN_TEXT)
    # A fuller page than the tests use: the three sentences six times, 18 lines.
    pages = {lang: SCAN_TEXT[lang] * _REPEAT for lang in languages}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "scan.pdf"
        path.write_bytes(scanned_pdf([(lang, pages[lang]) for lang in languages]))
        start = time.perf_counter()
        pieces = list(read_sources([path], ocr=OcrSettings()))
        seconds = time.perf_counter() - start
    problems = [p for p in pieces if isinstance(p, InputProblem)]
    texts = {p.location: p.text for p in pieces if not isinstance(p, InputProblem)}
    for number, language in enumerate(languages, start=1):
        accuracy = character_accuracy("".join(pages[language]), texts.get(f"page {number} (OCR)", ""))
        yield Result("I15", f"OCR character accuracy, {language} (A4, 18 lines, 200 dpi scan)", accuracy * 100, "%",
                     ">= 95% (ours)", accuracy >= 0.95, f"languages {OcrSettings().languages}; problems: {len(problems)}")
    yield Result("I15", "OCR pages per minute (render at 300 dpi + Tesseract)", 60 * len(languages) / seconds,
                 "pages/min", "(reported)", True, f"{seconds / len(languages):.1f} s a page, load {os.getloadavg()[0]:.1f}")
    yield _thread_limit_ratio(path_bytes=scanned_pdf([("zh", pages["zh"])]))


def _thread_limit_ratio(path_bytes: bytes) -> Result:
    """Tesseract with one OpenMP thread (memsys's choice) vs its default, on one page,
    alternated twice in this run."""
    import subprocess

    import pypdfium2

    from memsys.ingest.readers.ocr import DEFAULT_LANGUAGES, tesseract_env

    document = pypdfium2.PdfDocument(path_bytes)
    image = document[0].render(scale=300 / 72, grayscale=True).to_pil()
    document.close()
    out = io.BytesIO()
    image.save(out, "PNG")
    command = ["tesseract", "stdin", "stdout", "-l", DEFAULT_LANGUAGES, "--psm", "3"]
    default_env = {k: v for k, v in os.environ.items() if k != "OMP_THREAD_LIMIT"}
    one = default = 0.0
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(command, input=out.getvalue(), capture_output=True, check=True, env=tesseract_env(1))
        one += time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(command, input=out.getvalue(), capture_output=True, check=True, env=default_env)
        default += time.perf_counter() - start
    return Result("I15", "OCR speed, one OpenMP thread vs Tesseract's default", default / one, "x", ">= 1x (ours)",
                  default >= one, f"{one / 2:.1f} s vs {default / 2:.1f} s a page, load {os.getloadavg()[0]:.1f}")

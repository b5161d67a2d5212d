"""OCR of scanned pages with Tesseract (Debian's `tesseract-ocr` and its language data,
installed by tools/install_system_packages.sh). The binary is called directly, one page
image on stdin and its text on stdout, with a time limit per page; a missing binary or
language is a plain `OcrUnavailableError`, never a crash of the import.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

DEFAULT_LANGUAGES = "chi_sim+jpn+eng"
# About what one A4 page costs with the three languages on a quiet 2-core machine (from
# `python -m bench ocr`: 2-3 s; several times that while the cores are busy); the import
# preview multiplies it by the pages to read.
OCR_SECONDS_PER_PAGE = 3.0
_LANGUAGE = re.compile(r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")
# CJK text has no spaces between characters; Tesseract puts one between many of them.
_CJK = "\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_SPACE_IN_CJK = re.compile(rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")


@dataclass(frozen=True)
class OcrSettings:
    """Whether pages without a text layer are read by OCR, in which Tesseract languages
    ("chi_sim+jpn+eng": each page is read with all of them at once), and its bounds."""

    enabled: bool = True
    languages: str = DEFAULT_LANGUAGES
    max_pages: int = 500  # per file; pages past it are reported, not read
    page_timeout: float = 120.0  # seconds for one page
    file_timeout: float = 1800.0  # seconds of OCR for one file; the pages left are reported
    dpi: int = 300  # pages are rendered at this resolution for Tesseract

    def __post_init__(self) -> None:
        if not _LANGUAGE.match(self.languages):
            raise ValueError(
                f"OCR languages {self.languages!r} are not Tesseract language names joined by '+' (e.g. {DEFAULT_LANGUAGES})"
            )
        for name in ("max_pages", "dpi"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} is {value!r}; it must be a whole number of at least 1")
        for name in ("page_timeout", "file_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} is {getattr(self, name)!r}; it must be greater than 0")


class OcrUnavailableError(RuntimeError):
    """Tesseract or one of the wanted languages is not installed."""


class OcrFailedError(RuntimeError):
    """Tesseract could not read one page (it failed or ran out of time)."""


def installed_languages() -> frozenset[str]:
    """The language data Tesseract has; empty when Tesseract is not installed."""
    binary = shutil.which("tesseract")
    if binary is None:
        return frozenset()
    done = subprocess.run([binary, "--list-langs"], capture_output=True, text=True, timeout=30, check=False)
    # The first line is a heading ("List of available languages in ...").
    return frozenset(line.strip() for line in done.stdout.splitlines()[1:] if line.strip())


def check_available(settings: OcrSettings) -> None:
    """Raise OcrUnavailableError naming what is missing (the binary or a language)."""
    if shutil.which("tesseract") is None:
        raise OcrUnavailableError(
            "Tesseract is not installed (Debian: apt-get install tesseract-ocr tesseract-ocr-chi-sim "
            "tesseract-ocr-jpn; `make setup` does it)"
        )
    missing = sorted(set(settings.languages.split("+")) - installed_languages())
    if missing:
        raise OcrUnavailableError(f"Tesseract has no language data for {', '.join(missing)} (set MEMSYS_OCR_LANGUAGES)")


def read_image(png: bytes, settings: OcrSettings) -> str:
    """The text Tesseract reads in one page image (PNG bytes), with the spaces it puts
    between CJK characters removed. Raises OcrFailedError."""
    try:
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", settings.languages, "--psm", "3"],
            input=png, capture_output=True, timeout=settings.page_timeout, check=False, env=tesseract_env(),
        )
    except subprocess.TimeoutExpired:
        raise OcrFailedError(f"OCR took longer than {settings.page_timeout:g} s") from None
    except FileNotFoundError:
        raise OcrFailedError("Tesseract is not installed") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OcrFailedError(f"Tesseract failed: {message[-1] if message else 'exit ' + str(done.returncode)}")
    return clean_ocr_text(done.stdout.decode("utf-8", "replace"))


def tesseract_env(threads: int = 1) -> dict[str, str]:
    """Tesseract's environment: OpenMP limited to `threads` (unless the operator set
    OMP_THREAD_LIMIT). Its default of one busy-waiting thread per core is 2-3x slower on a
    machine whose cores are busy with other work (`python -m bench ocr` measures it)."""
    return {**os.environ, "OMP_THREAD_LIMIT": os.environ.get("OMP_THREAD_LIMIT", str(threads))}


def clean_ocr_text(text: str) -> str:
    """Tesseract's output as text: no spaces inside CJK runs, no runs of blank lines."""
    lines = [_SPACE_IN_CJK.sub("", line).strip() for line in text.replace("\f", "\n").split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()

"""PDF: one piece per page. Pages with a text layer are read by pypdf; pages without one
(scans) are rendered with pypdfium2 and read by Tesseract OCR when OCR is on, located as
"page 3 (OCR)". While only estimating (the import preview) scanned pages are counted in
`ReadTally.ocr_pages`, not read, since OCR takes seconds a page.
"""
from __future__ import annotations

import io
import math
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Iterator

from memsys.ingest.readers.encoding import normalise_text
from memsys.ingest.readers.ocr import OcrFailedError, OcrUnavailableError, check_available, read_image
from memsys.ingest.readers.sources import (
    InputProblem, Item, LimitError, ReadContext, SourceText, human_size, parser_said, read_bytes,
)

# PDFium is not thread-safe; the job runner and a preview may read PDFs at the same time.
_PDFIUM = threading.Lock()
# A page rendered for OCR never exceeds this many pixels, whatever size the PDF says it is.
_MAX_PIXELS = 40_000_000
_PASSWORD = "is password-protected; remove the password and import it again"


@dataclass
class _TextLayer:
    """What a PDF's text layer gave: the pages with text, and those without (scans)."""

    pages: dict[int, SourceText]
    scanned: list[int]
    page_count: int = 0


def read_pdf(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    data = read_bytes(item, ctx.limits.max_file_bytes)
    if b"%PDF-" not in data[:1024]:
        yield InputProblem(item.name, "is not a PDF (it does not start with %PDF-)")
        return
    layer = _text_layer(data, item, ctx)
    if isinstance(layer, InputProblem):
        yield layer
        return
    pages, scanned, page_count = layer.pages, layer.scanned, layer.page_count
    ocr = ctx.ocr
    if scanned and ocr.enabled:
        try:
            check_available(ocr)
        except OcrUnavailableError as e:
            yield InputProblem(item.name, f"has {len(scanned)} page(s) without a text layer, which OCR cannot read: {e}")
            scanned = []
    if scanned and ocr.enabled:
        if len(scanned) > ocr.max_pages:
            skipped = scanned[ocr.max_pages:]
            yield InputProblem(
                item.name,
                f"has {len(scanned)} scanned pages; OCR reads at most {ocr.max_pages} per file, so pages "
                f"{skipped[0]}-{skipped[-1]} were not read",
            )
            scanned = scanned[: ocr.max_pages]
        if ctx.estimate_only:
            ctx.tally.ocr_pages += len(scanned)
            yield from (pages[n] for n in sorted(pages))
            return
        for number, outcome in _ocr_pages(data, item.name, scanned, ctx):
            if isinstance(outcome, InputProblem):
                yield outcome
            elif outcome:
                pages[number] = SourceText(outcome, item.name, f"page {number} (OCR)")
    if not pages:
        if not ocr.enabled:
            why = "; OCR is turned off (MEMSYS_OCR=off), turn it on to read scans"
        elif scanned:
            why = ", and OCR found no text on them"
        else:
            why = ""
        yield InputProblem(item.name, f"has no text layer on any of its {page_count} page(s) (a scan or images only?){why}")
        return
    for number in sorted(pages):
        yield pages[number]


def _text_layer(data: bytes, item: Item, ctx: ReadContext) -> _TextLayer | InputProblem:
    """Each page's text layer, within the PDF limits; the problem of a PDF that cannot be
    opened. A limit passed or a parser out of depth or memory is raised for read_item."""
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    layer = _TextLayer({}, [])
    try:
        with _stream_budget(ctx.limits.max_pdf_stream_bytes):
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                return InputProblem(item.name, _PASSWORD)
            if len(reader.pages) > ctx.limits.max_pdf_pages:
                raise LimitError(f"has {len(reader.pages):,} pages; the limit is {ctx.limits.max_pdf_pages:,} per PDF")
            # Pages that share their content stream (one stream drawn on many pages) have the
            # same text: extract it once, not once per page.
            extracted: dict[object, str] = {}
            for number, page in enumerate(reader.pages, start=1):
                key = _content_key(page)
                if key is None or key not in extracted:
                    extracted[key] = normalise_text(page.extract_text() or "").strip()
                text = extracted[key]
                if key is None:
                    del extracted[key]
                if text:
                    layer.pages[number] = SourceText(text, item.name, f"page {number}")
                else:
                    layer.scanned.append(number)
            layer.page_count = len(reader.pages)
    except FileNotDecryptedError:
        return InputProblem(item.name, _PASSWORD)
    except LimitReachedError as e:
        # pypdf's own bound on one stream, which _stream_budget lowers to ours per PDF.
        raise LimitError(_stream_limit_reason(ctx.limits.max_pdf_stream_bytes)) from e
    except (LimitError, RecursionError, MemoryError):
        raise  # named by read_item in its own words
    except Exception as e:  # noqa: BLE001 - pypdf raises many kinds of error on damaged files
        return InputProblem(item.name, f"is damaged and could not be read as a PDF ({parser_said(e)})")
    return layer


def _ocr_pages(data: bytes, name: str, numbers: list[int], ctx: ReadContext) -> Iterator[tuple[int, str | InputProblem]]:
    """Each page's OCR text ("" when it has none), or the problem that stopped it."""
    import pypdfium2

    with _PDFIUM:
        document = pypdfium2.PdfDocument(data)
    started = time.monotonic()
    try:
        for index, number in enumerate(numbers):
            if index and time.monotonic() - started > ctx.ocr.file_timeout:
                yield number, InputProblem(
                    f"{name} page {number}",
                    f"and the {len(numbers) - index - 1} scanned page(s) after it were not read: OCR stopped after "
                    f"{ctx.ocr.file_timeout:g} s for this file",
                )
                return
            try:
                with _PDFIUM:
                    png = _render(document[number - 1], ctx.ocr.dpi)
                text = read_image(png, ctx.ocr)
            except OcrFailedError as e:
                yield number, InputProblem(f"{name} page {number}", f"could not be read by OCR: {e}")
                continue
            except pypdfium2.PdfiumError as e:
                yield number, InputProblem(f"{name} page {number}", f"could not be rendered for OCR: {e}")
                continue
            ctx.tally.ocr_page_done()
            yield number, text
    finally:
        with _PDFIUM:
            document.close()


def _render(page: Any, dpi: int) -> bytes:
    """A page as a greyscale PNG at `dpi` (less for a page too large to render whole)."""
    width, height = page.get_size()  # in points, 72 per inch
    scale = min(dpi / 72, math.sqrt(_MAX_PIXELS / max(width * height, 1.0)))
    image = page.render(scale=scale, grayscale=True).to_pil()
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _content_key(page: object) -> object:
    """What identifies a page's content stream(s): their object numbers, or None when the
    content is inline (then it cannot be shared)."""
    contents = page.get("/Contents")  # type: ignore[attr-defined]
    refs = contents if isinstance(contents, list) else [contents]
    if not refs or any(getattr(r, "idnum", None) is None for r in refs):
        return None
    return tuple((r.idnum, r.generation) for r in refs)


# --- the limit on decompressed streams per PDF ------------------------------------------------
# pypdf bounds each stream it decodes (75 MB), not the sum over a file, so a PDF of many
# streams that each inflate a thousandfold would be bounded only by the reader's memory
# limit. Every decode goes through `pypdf.filters.decode_stream_data` (decoded streams are
# cached on their object, so each is counted once); it is wrapped once per process to
# charge the bytes to the budget of the PDF this thread is reading (a context variable,
# so concurrent reads in threads do not share one).
_BUDGET: ContextVar[list[int] | None] = ContextVar("memsys_pdf_stream_budget", default=None)
_WRAP_LOCK = threading.Lock()
_OUTPUT_LIMITS = ("zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
                  "brotli_maximum_output_length", "jbig2_maximum_output_length",
                  "array_based_stream_maximum_output_length", "maximum_declared_stream_length")


class PdfStreamLimitError(LimitError):
    """A PDF's streams inflate past the limit per PDF."""


def _stream_limit_reason(limit: int) -> str:
    return (f"has streams that inflate past the limit of {human_size(limit)} once decompressed per PDF "
            "(a compression bomb?); it was not read")


@contextmanager
def _stream_budget(limit: int) -> Iterator[None]:
    """Charge every stream pypdf decodes in this block to one budget of `limit` bytes, and
    keep pypdf's per-stream bounds no higher than it (so no single stream inflates far past
    the budget before it is counted)."""
    from pypdf import apply_configuration, get_configuration

    _wrap_decoder()
    current = get_configuration()
    lowered = {name: min(getattr(current, name), limit) for name in _OUTPUT_LIMITS if hasattr(current, name)}
    token = _BUDGET.set([limit, limit])  # bytes left, the limit
    try:
        with apply_configuration(**lowered):
            yield
    finally:
        _BUDGET.reset(token)


def _wrap_decoder() -> None:
    import pypdf.filters

    with _WRAP_LOCK:
        original = pypdf.filters.decode_stream_data
        if getattr(original, "memsys_counted", False):
            return

        def decode_stream_data(stream: Any) -> bytes:
            data = original(stream)
            budget = _BUDGET.get()
            if budget is not None:
                budget[0] -= len(data)
                if budget[0] < 0:
                    raise PdfStreamLimitError(_stream_limit_reason(budget[1]))
            return data

        decode_stream_data.memsys_counted = True  # type: ignore[attr-defined]
        pypdf.filters.decode_stream_data = decode_stream_data

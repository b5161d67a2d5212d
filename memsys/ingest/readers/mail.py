"""E-mail: .eml messages read with the standard library's `email` package (RFC 5322 and
MIME, encoded headers and bodies decoded). The message is one piece: Subject, From, To,
Date and the names of its attachments, then the body (the plain-text part, or the HTML
part's main content). Attachments in formats memsys reads (text, pdf, docx, ...) are read
by the same readers and named "<message>.eml/<attachment name>"; other attachments
(images) are named in the message's text but not read.
"""
from __future__ import annotations

import io
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import PurePosixPath
from typing import Iterator

from memsys.ingest.readers.text import page_text
from memsys.ingest.readers.encoding import UndecodableError, decode_bytes, normalise_text
from memsys.ingest.readers.formats import format_of
from memsys.ingest.readers.sources import InputProblem, Item, ReadContext, SourceText, read_bytes

_HEADERS = ("Subject", "From", "To", "Cc", "Date")


def read_eml(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    data = read_bytes(item, ctx.limits.max_file_bytes)
    message = BytesParser(policy=policy.default).parsebytes(data)
    if not any(message[h] for h in ("Subject", "From", "Date")) and not message.is_multipart():
        yield InputProblem(item.name, "is not an e-mail message (no Subject, From or Date header)")
        return
    attachments = list(message.iter_attachments())
    names = [_attachment_name(part, number) for number, part in enumerate(attachments, start=1)]
    lines = [f"{h}: {' '.join(str(message[h]).split())}" for h in _HEADERS if message[h]]
    if names:
        lines.append("Attachments: " + ", ".join(names))
    body = _body(message)
    yield SourceText(normalise_text("\n".join(lines) + ("\n\n" + body if body else "")).strip(), item.name)
    for part, name in zip(attachments, names):
        yield from _read_attachment(part, f"{item.name}/{name}", ctx)


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _part_text(part)
    return page_text(text) if part.get_content_subtype() == "html" else text.strip()


def _part_text(part: EmailMessage) -> str:
    try:
        return str(part.get_content())
    except (LookupError, UnicodeDecodeError):
        # An unknown or wrong charset label: judge the bytes as a text file is judged.
        payload = part.get_payload(decode=True)
        try:
            return decode_bytes(payload) if isinstance(payload, bytes) else ""
        except UndecodableError:
            return ""


def _attachment_name(part: EmailMessage, number: int) -> str:
    # Only the last path component: a name is a label here, never a place on disk.
    name = PurePosixPath((part.get_filename() or "").replace("\\", "/")).name
    return name or f"attachment {number}"


def _read_attachment(part: EmailMessage, name: str, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    file_format = format_of(name)
    if file_format is None and part.get_content_maintype() != "text":
        return  # an image or another kind memsys does not read; named in the message above
    if file_format is not None and file_format.archive:
        yield InputProblem(name, "is an archive attached to an e-mail; save it and import it on its own")
        return
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return  # an attached message: its text is not a file of its own
    yield from ctx.read_entry(Item(name, len(payload), lambda: io.BytesIO(payload)))

"""Zip archives: read an entry at a time with the same readers as files on disk, never
extracted (so no entry name can write outside the spool), within the archive limits of
`ReadLimits` (entry count, expanded size) so a zip bomb is refused before anything is read.
"""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path, PurePosixPath
from typing import Iterator

from memsys.ingest.readers.sources import InputProblem, Item, ReadContext, SourceText, human_size
from memsys.spool import is_safe_relative_name

def _zip_entry_name(info: zipfile.ZipInfo) -> str:
    # Zips from Windows often store UTF-8 names without the UTF-8 flag; zipfile then
    # decodes them as cp437. Undo that when the bytes are valid UTF-8.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def declared_entries(path: Path) -> int | None:
    """How many entries a zip says it has, from its end-of-central-directory record alone
    (so an archive of a million entries is refused before a million ZipInfo objects are
    built); None when the record cannot be found (zipfile then says what is wrong)."""
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - (1 << 16) - 22))
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = struct.unpack("<H", tail[at + 10:at + 12])[0]
    if count == 0xFFFF:  # zip64: the real count is in the zip64 record before it
        at64 = tail.rfind(b"PK\x06\x06", 0, at)
        if at64 < 0 or len(tail) < at64 + 40:
            return None
        count = struct.unpack("<Q", tail[at64 + 32:at64 + 40])[0]
    return int(count)


def read_zip(item: Item, ctx: ReadContext) -> Iterator[SourceText | InputProblem]:
    if item.path is None:
        yield InputProblem(item.name, "is a zip archive inside a zip archive; unpack the outer one first")
        return
    declared = declared_entries(item.path)
    if declared is not None and declared > ctx.limits.max_archive_entries:
        yield InputProblem(
            item.name,
            f"has {declared:,} files; the limit is {ctx.limits.max_archive_entries:,} per archive "
            "(nothing was imported from it)",
        )
        return
    try:
        archive = zipfile.ZipFile(item.path)
    except zipfile.BadZipFile:
        yield InputProblem(item.name, "is not a valid zip archive (damaged or not a zip)")
        return
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > ctx.limits.max_archive_entries:
            yield InputProblem(
                item.name,
                f"has {len(entries):,} files; the limit is {ctx.limits.max_archive_entries:,} per archive "
                "(nothing was imported from it)",
            )
            return
        expanded = sum(info.file_size for info in entries)
        if expanded > ctx.limits.max_archive_bytes:
            yield InputProblem(
                item.name,
                f"would expand to {human_size(expanded)}; the limit is {human_size(ctx.limits.max_archive_bytes)} per archive "
                "(nothing was imported from it)",
            )
            return
        for info in entries:
            entry = _zip_entry_name(info)
            name = f"{item.name}/{entry}"
            if not is_safe_relative_name(entry):
                yield InputProblem(
                    name, "has '..' or an absolute path in its name, which could point outside the import folder; skipped"
                )
                continue
            parts = PurePosixPath(entry.replace("\\", "/")).parts
            if parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
                continue  # Finder's resource forks and hidden files, as in folders
            if info.flag_bits & 0x1:
                yield InputProblem(name, "is password-protected inside the archive")
                continue
            yield from ctx.read_entry(Item(name, info.file_size, lambda info=info: archive.open(info)))

"""A folder on the server as a source. Its documents are the regular files under it (hidden
files and folders left out, as an import of a folder leaves them out); a file's version is
the hash of its content (size and modification time for files over `HASH_LIMIT`). Links
that lead out of the folder are not followed. Which folders may be a source is the
engine's decision (the data directory and MEMSYS_SOURCE_ROOTS); the connector reads the one
it is given.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from memsys.ingest.sources.base import (
    Listing,
    RemoteEntry,
    SourceProblem,
    SourceSpec,
    copy_file_capped,
    register,
    target_in,
)

HASH_LIMIT = 16 * 2**20
MAX_DOCUMENTS = 100_000


def file_version(path: Path, st: os.stat_result) -> str:
    if st.st_size > HASH_LIMIT:
        return f"size {st.st_size} mtime {st.st_mtime_ns}"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()[:32]


@register("folder")
class FolderConnector:
    def __init__(self, spec: SourceSpec, secret: str | None = None) -> None:
        self.spec = spec
        self.root = Path(spec.location)

    def list(self) -> Listing:
        root = self.root
        if not root.is_dir():
            return Listing((), False, "the folder cannot be found, or is not a folder")
        try:
            real_root = root.resolve(strict=True)
        except OSError:
            return Listing((), False, "the folder cannot be opened")
        entries: list[RemoteEntry] = []
        problems: list[str] = []

        def refused(error: OSError) -> None:
            problems.append(f"a folder inside could not be read ({error.strerror or 'refused'})")

        for folder, dirs, files in os.walk(root, onerror=refused, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(folder) / name
                key = path.relative_to(root).as_posix()
                if not self.spec.wants(key):
                    continue
                try:
                    if not path.resolve(strict=True).is_relative_to(real_root):
                        continue  # a link out of the folder: not part of the source
                    st = path.stat()
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    entries.append(RemoteEntry(key, file_version(path, st), st.st_size))
                except OSError as e:
                    problems.append(f"{key} could not be read ({e.strerror or 'refused'})")
                if len(entries) > MAX_DOCUMENTS:
                    return Listing(tuple(entries), False, f"the folder has more than {MAX_DOCUMENTS} documents")
        if problems:
            more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
            return Listing(tuple(entries), False, f"the folder could not be listed completely: {problems[0]}{more}")
        return Listing(tuple(entries), True)

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path:
        path = self.root / entry.key
        try:
            if not path.resolve(strict=True).is_relative_to(self.root.resolve(strict=True)):
                raise SourceProblem(f"{entry.key} leads out of the folder; not fetched")
            return copy_file_capped(path, target_in(folder, entry.key), entry.key, self.spec.max_bytes)
        except FileNotFoundError:
            raise SourceProblem(f"{entry.key} was removed while the sync ran; not fetched") from None
        except PermissionError:
            raise SourceProblem(f"{entry.key} cannot be read (permission denied); not fetched") from None

    def close(self) -> None:
        pass

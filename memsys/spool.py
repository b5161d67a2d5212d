"""The spool: the folder under the data directory where every import's input is kept on
disk (uploads the moment they arrive, copies of local paths), so a job can always be
resumed from the same bytes. It owns the name safety of what lands there: a name with '..'
or an absolute path raises UnsafeNameError and nothing is written outside the spool.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Sequence

# Beside a copied folder's files: what could not be copied and why (a named pipe, a socket,
# an unreadable file), so the import names each of them instead of refusing the folder.
# Hidden, so readers never take it for input.
NOT_COPIED = ".memsys-not-copied.json"


class UnsafeNameError(ValueError):
    """A file name that could point outside its folder ('..', an absolute path)."""


def is_safe_relative_name(name: str) -> bool:
    """True for a relative name that stays inside its folder: no '..', no absolute path,
    no drive letter, no NUL. Backslashes count as separators (zips made on Windows)."""
    if not name or "\x00" in name:
        return False
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return False
    return ".." not in PurePosixPath(posix).parts


def spool_path(spool_dir: Path, name: str) -> Path:
    """Where an uploaded file called `name` goes inside `spool_dir`; raises UnsafeNameError
    for a name that could land outside it."""
    if not is_safe_relative_name(name):
        raise UnsafeNameError(f"{name!r} has '..' or an absolute path in its name; not saved")
    target = (spool_dir / name.replace("\\", "/")).resolve()
    if not target.is_relative_to(spool_dir.resolve()):
        raise UnsafeNameError(f"{name!r} would be saved outside the upload folder; not saved")
    return target


def special_file_reason(mode: int) -> str:
    """Why a folder entry that is not a regular file is skipped, by its kind."""
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file; skipped without opening it"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file; skipped"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file; skipped"
    return "is not a regular file; skipped"


def not_copied(folder: Path) -> list[tuple[str, str]]:
    """(name relative to `folder`, reason) of every entry its copy left out."""
    try:
        return [(str(name), str(reason)) for name, reason in json.loads((folder / NOT_COPIED).read_text("utf-8"))]
    except FileNotFoundError:
        return []


class _FolderCopy:
    """Copies a folder's regular files; anything else (a FIFO is never opened) or a file
    that cannot be read is written down in NOT_COPIED instead of failing the whole copy."""

    def __init__(self, source: Path, target: Path) -> None:
        self.source, self.target = source, target
        self.left_out: list[tuple[str, str]] = []

    def copy(self, src: str, dst: str) -> str:
        name = Path(src).relative_to(self.source).as_posix()
        try:
            mode = os.stat(src).st_mode
            if not stat.S_ISREG(mode):
                self.left_out.append((name, special_file_reason(mode)))
                return dst
            return str(shutil.copy2(src, dst))
        except OSError as e:
            self.left_out.append((name, f"could not be read: {e.strerror or e}"))
            return dst

    def run(self) -> None:
        shutil.copytree(self.source, self.target, symlinks=True, ignore=shutil.ignore_patterns(".git"),
                        copy_function=self.copy)
        if self.left_out:
            (self.target / NOT_COPIED).write_text(json.dumps(self.left_out, ensure_ascii=False), "utf-8")


class Spool:
    """The spool folder `root`; one subfolder per upload or per set of copied paths."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def new_folder(self) -> Path:
        folder = self.root / uuid.uuid4().hex[:12]
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def save_upload(self, upload_id: str, name: str, data: BinaryIO) -> Path:
        """Copy one uploaded file into the spool now (streamed, not held in memory). A name
        with '..' or an absolute path raises UnsafeNameError: nothing lands outside the spool."""
        folder = spool_path(self.root, upload_id)
        target = spool_path(folder, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(data, out, length=1 << 20)
        return target

    def drop(self, paths: Sequence[Path | str], source_file: str | None = None) -> int:
        """Remove what a job spooled: all of `paths`, or only the file an import named
        `source_file` ("notes.md", "<folder>/a/b.md"). A member of a zip stays: the archive
        holds other files too. Only paths inside the spool are touched. Returns files removed."""
        removed = 0
        root = self.root.resolve()
        for raw in paths:
            path = Path(raw)
            if not path.resolve().is_relative_to(root) or path.resolve() == root:
                continue
            if source_file is None:
                target = path
            elif path.is_dir() and source_file.startswith(path.name + "/") and is_safe_relative_name(source_file):
                target = path.parent / source_file
            elif path.name == source_file:
                target = path
            else:
                continue
            if target.is_dir():
                removed += sum(1 for f in target.rglob("*") if f.is_file())
                shutil.rmtree(target)
            elif target.is_file():
                target.unlink()
                removed += 1
        return removed

    def copy_in(self, paths: Sequence[Path | str]) -> list[Path]:
        """Copy files and folders into a new spool folder; returns the copies."""
        folder = self.new_folder()
        copies = []
        for raw in paths:
            path = Path(raw)
            target = spool_path(folder, path.resolve().name or "input")
            if path.is_dir():
                _FolderCopy(path, target).run()
            elif path.is_file():
                shutil.copy2(path, target)
            else:
                raise FileNotFoundError(f"{path} does not exist")
            copies.append(target)
        return copies

"""The spool: the folder under the data directory where every import's input is kept on
disk (uploads the moment they arrive, copies of local paths), so a job can always be
resumed from the same bytes. It owns the name safety of what lands there: a name with '..'
or an absolute path raises UnsafeNameError and nothing is written outside the spool.
"""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Sequence


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
                shutil.copytree(path, target, symlinks=True, ignore=shutil.ignore_patterns(".git"))
            elif path.is_file():
                shutil.copy2(path, target)
            else:
                raise FileNotFoundError(f"{path} does not exist")
            copies.append(target)
        return copies

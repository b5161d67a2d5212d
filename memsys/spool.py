"""The spool: the folder under the data directory where every import's input is kept on
disk (uploads the moment they arrive, copies of local paths), so a job can always be
resumed from the same bytes. It owns the name safety of what lands there: a name with '..'
or an absolute path raises UnsafeNameError and nothing is written outside the spool.

With MEMSYS_SPOOL_BACKEND=s3 the spool has a mirror, a folder in an S3 bucket
(memsys/bucket.py): a job handed to `memsys worker` processes has its files put there
(`publish`), a worker on another machine fetches the ones its own spool lacks before it
reads them (`localize`, removed again once read: `discard`), and what the spool drops goes
from the bucket too. Keys are the files' paths inside the spool.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol, Sequence

from memsys.logs import event, get_logger

log = get_logger("spool")

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


class Mirror(Protocol):
    """Where the spool's files are also kept for other machines (memsys.bucket.Bucket)."""

    where: str

    def sizes(self, *parts: str) -> dict[str, int]: ...

    def put_file(self, path: Path, *parts: str) -> None: ...

    def get_file(self, target: Path, *parts: str) -> None: ...

    def get_folder(self, folder: Path, *parts: str) -> None: ...

    def delete(self, *parts: str) -> int: ...

    def delete_key(self, *parts: str) -> None: ...


class Spool:
    """The spool folder `root`; one subfolder per upload or per set of copied paths; and its
    `mirror` in a bucket, when there is one."""

    def __init__(self, root: Path, mirror: Mirror | None = None) -> None:
        self.root = root
        self.mirror = mirror

    def _relative(self, path: Path | str) -> str | None:
        """The path's name inside the spool ("3bde03c5707d/notes.csv"), or None outside it."""
        resolved, root = Path(path).resolve(), self.root.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            return None
        return resolved.relative_to(root).as_posix()

    def publish(self, paths: Sequence[Path | str]) -> int:
        """Put the files of `paths` (inside the spool) in the mirror, those not there yet with
        the same size; returns how many were put. Without a mirror, nothing to do."""
        if self.mirror is None:
            return 0
        put = 0
        listed: dict[str, dict[str, int]] = {}
        for raw in paths:
            relative = self._relative(raw)
            if relative is None:
                continue
            top = relative.split("/", 1)[0]
            if top not in listed:
                listed[top] = self.mirror.sizes(top)
            path = Path(raw)
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
            for file in files:
                key = file.resolve().relative_to(self.root.resolve()).as_posix()
                if listed[top].get(key[len(top) + 1:]) != file.stat().st_size:
                    self.mirror.put_file(file, key)
                    put += 1
        if put:
            log.info("%d spooled files put in %s for the workers", put, self.mirror.where,
                     extra=event("spool.published", files=put))
        return put

    def localize(self, paths: Sequence[Path | str]) -> tuple[list[str], list[Path]]:
        """(the paths to read on this machine, the copies fetched for them). A path that
        exists here is read where it is (this machine made it, or the spool is a shared
        folder). Another machine's spooled path ("/home/a/.memsys/spool/3bde03c5707d/notes.csv")
        is found in the mirror by its last parts ("3bde03c5707d/notes.csv": the spool's
        folders have names of their own) and fetched into this machine's spool, to be
        `discard`ed once read. A path the mirror lacks too stays as it is: reading it then
        says the file is not there."""
        local: list[str] = []
        fetched: list[Path] = []
        listed: dict[str, dict[str, int]] = {}
        for raw in paths:
            key = None if Path(raw).exists() or self.mirror is None else self._key_of(Path(raw), listed)
            if key is None:
                local.append(str(raw))
                continue
            relative, is_file = key
            target = self.root / relative
            if not target.exists():
                if is_file:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.mirror.get_file(target, relative)  # type: ignore[union-attr]
                else:
                    self.mirror.get_folder(target, relative)  # type: ignore[union-attr]
                fetched.append(target)
            local.append(str(target))
        if fetched and self.mirror is not None:
            log.info("%d spooled paths fetched from %s", len(fetched), self.mirror.where,
                     extra=event("spool.fetched", paths=len(fetched)))
        return local, fetched

    def remote_sizes(self, paths: Sequence[Path | str]) -> dict[str, int | None]:
        """For each of `paths` this machine lacks and the mirror has: its size (None for a
        folder), so the work can be cut up before anything is fetched."""
        found: dict[str, int | None] = {}
        listed: dict[str, dict[str, int]] = {}
        for raw in paths:
            if self.mirror is None or Path(raw).exists():
                continue
            key = self._key_of(Path(raw), listed)
            if key is not None:
                relative, is_file = key
                top, _, rest = relative.partition("/")
                found[str(raw)] = listed[top][rest] if is_file else None
        return found

    def _key_of(self, path: Path, listed: dict[str, dict[str, int]] | None = None) -> tuple[str, bool] | None:
        """The path's name in the mirror and whether it is one file (else a folder), tried
        from its last two parts up: the first folder of the mirror holding the rest.
        `listed` keeps the mirror's listings of folders between calls."""
        listed = {} if listed is None else listed
        parts = PurePosixPath(path.as_posix()).parts
        for i in range(len(parts) - 2, 0, -1):
            top, rest = parts[i], "/".join(parts[i + 1:])
            if not is_safe_relative_name(top) or not is_safe_relative_name(rest):
                continue
            if top not in listed:
                listed[top] = self.mirror.sizes(top)  # type: ignore[union-attr]
            keys = listed[top]
            if rest in keys:
                return f"{top}/{rest}", True
            if any(k.startswith(rest + "/") for k in keys):
                return f"{top}/{rest}", False
        return None

    def discard(self, fetched: Sequence[Path]) -> None:
        """Remove this machine's copies that `localize` made (the mirror keeps its own)."""
        for path in fetched:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()
            parent = path.parent
            if parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()

    def forget_remote(self, paths: Sequence[Path | str]) -> None:
        """Remove `paths` (files or folders inside the spool) from the mirror. A bucket that
        cannot be reached leaves them there, said in the log: the local removal stands."""
        if self.mirror is None:
            return
        for raw in paths:
            relative = self._relative(raw)
            if relative is None:
                continue
            try:
                if not self.mirror.delete(relative):
                    self.mirror.delete_key(relative)
            except ValueError as e:  # BucketError: plain words, no secret
                log.warning("spooled %s stays in %s: %s", relative, self.mirror.where, e,
                            extra=event("spool.forget_failed", path=relative))

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
            self.forget_remote([target])
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

"""What every kind of source shares: the saved source's description (`SourceSpec`), one
listed document (`RemoteEntry`), a listing that says whether it is complete (`Listing`),
the problem a person reads (`SourceProblem`), the `Connector` protocol and the registry
the kinds add themselves to (`CONNECTORS`, through `register`).

A connector never decides what is removed: it lists, and a listing that is not complete
(unreachable, refused, partial, capped) makes the sync remove nothing.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from memsys.spool import is_safe_relative_name

KINDS = ("folder", "git", "s3", "website", "imap", "webdav")


@dataclass(frozen=True)
class SourceSpec:
    """What a saved source says, secrets excluded."""

    kind: str
    location: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_bytes: int | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def wants(self, key: str) -> bool:
        """True when the entry `key` passes the include and exclude globs."""
        return wanted(key, self.include, self.exclude)

    def option(self, name: str, default: str = "") -> str:
        return str(self.options.get(name, default) or default)


@dataclass(frozen=True)
class RemoteEntry:
    """One document of a source: `key` is its relative '/'-separated path inside the source
    (it becomes the document's source file name); `version` changes when its content does."""

    key: str
    version: str
    size: int | None = None


@dataclass(frozen=True)
class Listing:
    """A source's documents. complete=False (unreachable, refused, partial, capped): the sync
    removes nothing and says `problem`."""

    entries: tuple[RemoteEntry, ...]
    complete: bool
    problem: str = ""


class SourceProblem(Exception):
    """A source could not be read; the message is shown to people (plain words, no secret,
    no server path)."""


class Connector(Protocol):
    def list(self) -> Listing: ...

    def fetch(self, entry: RemoteEntry, folder: Path) -> Path: ...

    def close(self) -> None: ...


ConnectorFactory = Callable[[SourceSpec, "str | None"], Connector]

CONNECTORS: dict[str, ConnectorFactory] = {}


def register(kind: str) -> Callable[[ConnectorFactory], ConnectorFactory]:
    """Class or factory decorator: the connector for `kind`."""

    def add(factory: ConnectorFactory) -> ConnectorFactory:
        CONNECTORS[kind] = factory
        return factory

    return add


def wanted(key: str, include: Iterable[str], exclude: Iterable[str]) -> bool:
    """Globs match the whole key or its file name ('*.md' matches 'docs/a.md'); an empty
    include takes everything; exclude wins."""
    include, exclude = tuple(include), tuple(exclude)
    name = key.rsplit("/", 1)[-1]

    def hit(globs: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(key, g) or fnmatch.fnmatchcase(name, g) for g in globs)

    return (not include or hit(include)) and not hit(exclude)


def target_in(folder: Path, key: str) -> Path:
    """Where the document `key` is written inside `folder` (its parents made); raises
    SourceProblem for a key that would land outside it."""
    if not is_safe_relative_name(key):
        raise SourceProblem(f"{key!r} has '..' or an absolute path in its name; not fetched")
    target = (folder / key.replace("\\", "/")).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise SourceProblem(f"{key!r} would be saved outside the sync's folder; not fetched")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def copy_capped(stream: BinaryIO, target: Path, key: str, max_bytes: int | None) -> Path:
    """Copy `stream` into `target`, stopping (and removing the part written) past
    `max_bytes`; raises SourceProblem naming `key`."""
    written = 0
    with target.open("wb") as out:
        while chunk := stream.read(1 << 16):
            written += len(chunk)
            if max_bytes is not None and written > max_bytes:
                out.close()
                target.unlink(missing_ok=True)
                raise SourceProblem(f"{key} is larger than the source's limit of {max_bytes} bytes; not fetched")
            out.write(chunk)
    return target


def copy_file_capped(path: Path, target: Path, key: str, max_bytes: int | None) -> Path:
    with path.open("rb") as stream:
        return copy_capped(stream, target, key, max_bytes)


def host_of(location: str) -> str:
    """The host a location talks to ('' for a local path): a credential is dropped when an
    admin moves a source to another host."""
    parts = urlsplit(location)
    if parts.scheme and parts.netloc:
        return (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    if "@" in location and ":" in location and "://" not in location:  # scp-like git URL
        return location.split("@", 1)[1].split(":", 1)[0].lower()
    return ""


def open_connector(spec: SourceSpec, secret: str | None) -> Connector:
    """The connector for `spec.kind`; raises SourceProblem for a kind memsys has no
    connector for."""
    factory = CONNECTORS.get(spec.kind)
    if factory is None:
        raise SourceProblem(f"memsys cannot read sources of kind {spec.kind!r}")
    return factory(spec, secret)


__all__ = [
    "CONNECTORS", "KINDS", "Connector", "Listing", "RemoteEntry", "SourceProblem", "SourceSpec",
    "copy_capped", "copy_file_capped", "host_of", "open_connector", "register", "target_in", "wanted",
]

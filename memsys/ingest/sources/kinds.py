"""Every kind of source memsys can read, loaded once so each adds its connector to
`CONNECTORS` (memsys.ingest.sources.base). A new kind is a module beside this one that
decorates its connector with `@register("kind")`, and one import line here."""
from __future__ import annotations

from memsys.ingest.sources import folder, git
from memsys.ingest.sources import imap, s3, webdav, website
from memsys.ingest.sources.base import CONNECTORS, KINDS

__all__ = ["CONNECTORS", "KINDS", "folder", "git", "imap", "s3", "webdav", "website"]

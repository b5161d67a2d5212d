"""Every kind of source memsys can read, loaded once so each adds its connector to
`CONNECTORS` (memsys.ingest.sources.base). A new kind is a module beside this one that
decorates its connector with `@register("kind")`, and one import line here."""
from __future__ import annotations

import memsys.ingest.sources.imap  # noqa: F401  (registers "imap")
import memsys.ingest.sources.s3  # noqa: F401  (registers "s3")
import memsys.ingest.sources.webdav  # noqa: F401  (registers "webdav")
import memsys.ingest.sources.website  # noqa: F401  (registers "website")
from memsys.ingest.sources.base import CONNECTORS, KINDS

__all__ = ["CONNECTORS", "KINDS"]

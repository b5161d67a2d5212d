"""What a job was asked to do (`ImportRequest`, kept as JSON in the job database so a
job can run again from scratch after any stop), and the settings an import reads by.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from memsys.config import BatchConfig, Settings, redact_url
from memsys.embeddings.providers import EmbeddingProvider
from memsys.ingest.chunking import ChunkSettings
from memsys.ingest.memories import MemoryDefaults
from memsys.ingest.readers import FieldMapping, OcrSettings, ReadLimits


@dataclass(frozen=True)
class ImportRequest:
    """Everything a job needs to run again from scratch: spooled paths and settings."""

    paths: tuple[str, ...]
    defaults: MemoryDefaults
    mapping: FieldMapping | None = None
    chunking: ChunkSettings | None = None
    config: BatchConfig = dataclasses.field(default_factory=BatchConfig)
    label: str = ""
    # The embedder the job started with (provider fingerprint and a readable name): a
    # resume with other embedding settings would mix two models' vectors in one collection.
    embedder: str = ""
    embedder_name: str = ""
    started_by: str = ""  # who started it: a signed-in user, or "" (the CLI, a script)
    # What was imported, in the user's terms (the folder or files given), and whether the
    # import mirrors it: documents an earlier import of the same origin had and this one
    # does not are removed once it completes.
    origin: str = ""
    mirror: bool = False
    # A source's sync (memsys/engine/sources.py) fetches only changed documents: the ones it
    # did not fetch because they did not change are kept by the mirror.
    keep_documents: tuple[str, ...] = ()
    # A re-embed job (memsys/jobs/reembed.py): the memories of the physical collection
    # `reembed_from` are embedded again into the new collection `reembed_into`.
    reembed_from: str = ""
    reembed_into: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "paths": list(self.paths),
            "defaults": dataclasses.asdict(self.defaults),
            "mapping": dataclasses.asdict(self.mapping) if self.mapping else None,
            "chunking": dataclasses.asdict(self.chunking) if self.chunking else None,
            "config": self.config.to_dict(),
            "label": self.label,
            "embedder": self.embedder,
            "embedder_name": self.embedder_name,
            "started_by": self.started_by,
            "origin": self.origin,
            "mirror": self.mirror,
            "keep_documents": list(self.keep_documents),
            "reembed_from": self.reembed_from,
            "reembed_into": self.reembed_into,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImportRequest":
        defaults = dict(data["defaults"])
        defaults["tags"] = tuple(defaults.get("tags") or ())
        return cls(
            paths=tuple(data["paths"]),
            defaults=MemoryDefaults(**defaults),
            mapping=FieldMapping(**data["mapping"]) if data.get("mapping") else None,
            chunking=ChunkSettings(**data["chunking"]) if data.get("chunking") else None,
            config=BatchConfig.from_dict(data.get("config") or {}),
            label=data.get("label", ""),
            embedder=data.get("embedder", ""),
            embedder_name=data.get("embedder_name", ""),
            started_by=data.get("started_by", ""),
            origin=data.get("origin", ""),
            mirror=bool(data.get("mirror", False)),
            keep_documents=tuple(data.get("keep_documents") or ()),
            reembed_from=data.get("reembed_from", ""),
            reembed_into=data.get("reembed_into", ""),
        )


def read_limits(settings: Settings) -> ReadLimits:
    """What one file may cost an import (README, "Limits on what is read")."""
    return ReadLimits(seconds_per_file=settings.read_seconds_per_file)


def embedder_name(provider: EmbeddingProvider) -> str:
    where = f" at {redact_url(provider.base_url)}" if provider.base_url else ""
    return f"{provider.name} / {provider.model}{where}"


def ocr_settings(settings: Settings) -> OcrSettings:
    """The OCR of scanned pages as the operator set it (MEMSYS_OCR, MEMSYS_OCR_LANGUAGES)."""
    return OcrSettings(enabled=settings.ocr_enabled, languages=settings.ocr_languages)


"""The settings one browser session may change (provider, model, base URL, Weaviate
connection, API keys), applied on top of the environment and `.streamlit/secrets.toml`
through `Settings.load`, so the same validation applies. Keys are kept as `Secret`s and
only ever described as "set" or "not set".
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from memsys.config import ConfigError, Secret, Settings, redact_url
from memsys.engine import check_settings

# Field -> the setting's environment name (the names Settings.load reads).
EDITABLE = {
    "provider": "MEMSYS_EMBEDDING_PROVIDER",
    "model": "MEMSYS_EMBEDDING_MODEL",
    "dimensions": "MEMSYS_EMBEDDING_DIMENSIONS",
    "base_url": "OPENAI_BASE_URL",
    "openai_api_key": "OPENAI_API_KEY",
    "weaviate_url": "WEAVIATE_URL",
    "weaviate_grpc_port": "MEMSYS_WEAVIATE_GRPC_PORT",
    "weaviate_api_key": "WEAVIATE_API_KEY",
    "collection": "MEMSYS_COLLECTION",
}
SECRET_FIELDS = ("openai_api_key", "weaviate_api_key")


def load_settings(
    overrides: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    secrets_path: Path | None = None,
) -> Settings:
    """Settings with this session's overrides (field -> value; "" means "not overridden")
    on top of the environment. Raises ConfigError naming the setting that cannot work,
    including a provider that cannot start (openai without a key or a server)."""
    merged = dict(os.environ if env is None else env)
    for name, value in (overrides or {}).items():
        if name not in EDITABLE:
            raise ConfigError(f"{name!r} cannot be changed from the dashboard")
        if value is not None and str(value).strip():
            merged[EDITABLE[name]] = str(value).strip()
            if name == "weaviate_url":  # the session's server replaces every configured node
                if "," in str(value):
                    raise ConfigError("Weaviate URL: enter one server here; a cluster's nodes are listed in "
                                      "WEAVIATE_URLS in the server's settings")
                merged["WEAVIATE_URLS"] = str(value).strip()
    settings = Settings.load(env=merged, secrets_path=secrets_path)
    if overrides and str(overrides.get("base_url") or "").strip():
        # The session's endpoint replaces every configured one (OPENAI_BASE_URLS too).
        settings = settings.replace(openai_base_urls=())
    if overrides:
        configured = Settings.load(env=dict(os.environ if env is None else env), secrets_path=secrets_path)
        settings = keys_stay_with_their_endpoints(settings, configured, overrides)
    check_settings(settings)  # raises ConfigError for a provider that cannot work
    if overrides and overrides.get("weaviate_grpc_port") and not settings.weaviate_url:
        # Embedded Weaviate runs once per process, on the configured ports.
        raise ConfigError("the gRPC port is for a Weaviate server: enter the server's URL as well")
    return settings


def keys_stay_with_their_endpoints(settings: Settings, configured: Settings, overrides: Mapping[str, str]) -> Settings:
    """A server's key goes only to the endpoint it was configured for: a session that points
    the embedder or Weaviate somewhere else uses the key it typed for it, or none."""
    changes: dict[str, Secret] = {}
    if settings.embedding_endpoints != configured.embedding_endpoints and not overrides.get("openai_api_key"):
        changes["openai_api_key"] = Secret("")
    # Every node the session may talk to must be a configured one, on the configured gRPC
    # port (the key goes over gRPC too).
    same_weaviate = set(settings.weaviate_nodes) <= set(configured.weaviate_nodes) \
        and settings.weaviate_grpc_port == configured.weaviate_grpc_port
    if not same_weaviate and not overrides.get("weaviate_api_key"):
        changes["weaviate_api_key"] = Secret("")
    return settings.replace(**changes) if changes else settings


def fingerprint(settings: Settings) -> str:
    """Identifies settings without revealing them: equal settings, equal fingerprint.
    Secrets enter only as a hash, so the fingerprint can be used as a cache key."""
    parts = []
    for name, value in sorted(vars(settings).items()):
        if name in SECRET_FIELDS:
            value = hashlib.sha256(value.get().encode("utf-8")).hexdigest()
        parts.append(f"{name}={value}")
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SettingRow:
    """One line of the settings table: what a person sees, never a secret."""

    name: str
    value: str
    source: str  # "this session" or "environment / secrets file / default"


def describe(settings: Settings, overrides: Mapping[str, str] | None = None) -> list[SettingRow]:
    overrides = {k: v for k, v in (overrides or {}).items() if v}

    def row(label: str, field: str, value: str) -> SettingRow:
        source = "this session" if field in overrides else "environment, secrets file or default"
        return SettingRow(label, value, source)

    if settings.embedding_provider == "openai":
        base_url = ", ".join(redact_url(u) or "" for u in settings.embedding_endpoints) or "OpenAI (default)"
    else:
        base_url = "not used by the local model"
    return [
        row("Embedding provider", "provider", settings.embedding_provider),
        row("Embedding model", "model", settings.embedding_model),
        row("Dimensions", "dimensions", str(settings.embedding_dimensions or "model default")),
        row("Embedding base URL", "base_url", base_url),
        row("OpenAI API key", "openai_api_key", "set" if settings.openai_api_key else "not set"),
        row("Weaviate mode", "weaviate_url", settings.weaviate_mode),
        row("Weaviate URL", "weaviate_url", ", ".join(redact_url(u) or "" for u in settings.weaviate_nodes)
            or f"none (embedded, port {settings.weaviate_port})"),
        row("Weaviate gRPC port", "weaviate_grpc_port", str(settings.weaviate_grpc_port or "default")),
        row("Weaviate API key", "weaviate_api_key", "set" if settings.weaviate_api_key else "not set"),
        row("Collection", "collection", settings.collection),
        SettingRow("OCR of scanned PDFs", f"on ({settings.ocr_languages})" if settings.ocr_enabled else "off",
                   "environment, secrets file or default"),
        SettingRow("Data folder", str(settings.data_dir), "environment, secrets file or default"),
        SettingRow("Job database", f"PostgreSQL {redact_url(settings.database_url)}" if settings.database_url
                   else "SQLite file in the data folder", "environment, secrets file or default"),
    ]

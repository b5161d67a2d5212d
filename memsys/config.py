"""All configuration in one place: `Settings` (where data lives, which embedder and which
Weaviate to use) read from the environment and `.streamlit/secrets.toml`, and
`BatchConfig` (how imports are batched and retried). Defaults need no configuration at all.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from memsys.http_guard import split_host

# The Weaviate server version, pinned next to the client version in requirements.txt.
# tools/install_weaviate.py builds exactly this version; embedded mode starts exactly it.
WEAVIATE_VERSION = "1.35.2"

LOCAL_MODEL = "multilingual-e5-small-q4"
LOCAL_DIMENSIONS = 384
DEFAULT_OPENAI_MODEL = "text-embedding-3-small"
PROVIDERS = ("local", "openai")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The embedding cache's folder, relative to the data directory (`BatchConfig.cache_dir`).
DEFAULT_CACHE_DIR = ".cache/embeddings"
CONSISTENCY_LEVELS = ("ONE", "QUORUM", "ALL")


class Secret:
    """A string that never shows itself: repr, str and f-strings print a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('set')" if self._value else "Secret('')"

    __str__ = __repr__


class ConfigError(ValueError):
    """A setting has a value memsys cannot use; the message names the setting."""


def url_password(url: str | None) -> str:
    """The password inside a URL (`https://user:pass@host/`), a secret like a key; "" if none."""
    if not url:
        return ""
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


def redact_url(url: str | None) -> str | None:
    """A URL fit to show, store or log: any user name and password inside it removed."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(a URL that cannot be read)"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memsys"


def _read_secrets_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as f:
        data = tomllib.load(f)
    # Accept both top-level keys and a [memsys] table.
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    flat.update(data.get("memsys", {}))
    return {str(k).upper(): v for k, v in flat.items()}


@dataclass(frozen=True)
class Settings:
    """Where memsys keeps its data and which services it talks to."""

    data_dir: Path = Path(".memsys")
    embedding_provider: str = "local"
    embedding_model: str = LOCAL_MODEL
    embedding_dimensions: int | None = None
    openai_api_key: Secret = field(default_factory=lambda: Secret(""))
    openai_base_url: str | None = None
    # Several OpenAI-compatible servers of one model (OPENAI_BASE_URLS, comma separated).
    openai_base_urls: tuple[str, ...] = ()
    embedding_timeout: float = 60.0
    # Rate-limit budget (None: learned from the provider's x-ratelimit-* headers only).
    embedding_requests_per_minute: int | None = None
    embedding_tokens_per_minute: int | None = None
    embedding_concurrency: int = 2  # requests in flight per endpoint
    # Weaviate builds its vector index in the background; a job waits for it to drain.
    async_indexing: bool = False
    weaviate_url: str | None = None
    # Every node of a Weaviate cluster memsys may talk to (WEAVIATE_URLS), the first being
    # weaviate_url: when the node in use stops answering, memsys moves to the next.
    weaviate_urls: tuple[str, ...] = ()
    weaviate_api_key: Secret = field(default_factory=lambda: Secret(""))
    weaviate_port: int = 8079
    weaviate_grpc_port: int | None = None  # default: 50060 embedded, 50051 for a server
    weaviate_binary_dir: Path = field(default_factory=lambda: user_cache_dir() / "weaviate")
    weaviate_timeout: float = 60.0
    collection: str = "Memory"
    # Cluster settings, applied when memsys creates the collection. Replication factor and
    # shard count default to Weaviate's choice on one node (1) and, on a cluster, to every
    # node holding a copy (at most 3) and one shard per node.
    replication_factor: int | None = None
    shard_count: int | None = None
    async_replication: bool = True
    write_consistency: str = "QUORUM"
    read_consistency: str = "QUORUM"
    # The shared server stops after this long with no memsys process using it; 0 = never.
    server_idle_seconds: int = 900
    # What the server runs beside Weaviate, as `python -m <this>` (MEMSYS_SERVER_COMPANION;
    # "off": nothing): the sources' schedule, so syncs happen with no dashboard open.
    server_companion: str = "memsys sources scheduler"
    cache_size_limit_bytes: int = 64 * 2**30
    cache_eviction_policy: str = "none"
    ocr_enabled: bool = True  # scanned PDF pages are read by Tesseract OCR
    ocr_languages: str = "chi_sim+jpn+eng"  # Tesseract language names joined by '+'
    # Sign-in roles (see memsys/access.py): e-mails, @domains or group:NAME entries.
    admins: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    viewers: tuple[str, ...] = ()
    # Issuers (the ID token's `iss`) whose e-mail addresses are verified although their
    # tokens carry no `email_verified`; other tokens' addresses count only when verified.
    verified_email_issuers: tuple[str, ...] = ()
    # The names the dashboard is served under besides loopback (`memsys.example.com`,
    # `memsys.example.com:8443`); a request for any other name is refused (memsys/http_guard.py).
    allowed_hosts: tuple[str, ...] = ()
    # Folders a folder source may read besides the data directory (MEMSYS_SOURCE_ROOTS).
    source_roots: tuple[str, ...] = ()
    # Without sign-in, the dashboard needs the token in `dashboard_token_path`; off lets
    # every user of this machine in as admin.
    dashboard_token: bool = True
    # Backup sets (`memsys backup`): MEMSYS_BACKUP_DIR, best on another disk; default the
    # data directory's backups/ folder.
    backup_dir: Path | None = None
    # Where backup sets go (MEMSYS_BACKUP_BACKEND): "filesystem" (the folder above, Weaviate's
    # backup-filesystem) or "s3" (a bucket: Weaviate's backup-s3, enabled on the cluster with
    # its own BACKUP_S3_* settings, and the other parts put there by memsys with these).
    backup_backend: str = "filesystem"
    backup_s3_bucket: str = ""
    backup_s3_path: str = ""  # a folder inside the bucket ("" = its top)
    backup_s3_endpoint: str = ""  # an S3-compatible server (http://127.0.0.1:7070); "" = AWS
    backup_s3_region: str = "us-east-1"
    backup_s3_access_key: str = ""
    backup_s3_secret_key: Secret = field(default_factory=lambda: Secret(""))
    # Scheduled backups by the memsys server: every this many hours (0: off), keeping the
    # newest `backup_keep` complete ones made by the schedule.
    backup_every_hours: float = 0.0
    backup_keep: int = 7
    # Retention (memsys/jobs/retention.py): a settled job's spooled files go this many days
    # after it ended, its memories' texts after MEMSYS_JOB_TEXTS_KEEP_DAYS (0: never).
    spool_keep_days: int = 7
    # The spool on a folder of its own (MEMSYS_SPOOL_DIR): shared by the machines whose
    # `memsys worker` processes read the imports' files (NFS or the like, the same path on each).
    spool_folder: Path | None = None
    # Or the spool's files in an S3 bucket too (MEMSYS_SPOOL_BACKEND=s3): a job handed to the
    # workers has its files put there, and a worker fetches what its machine lacks.
    spool_backend: str = "folder"
    spool_s3_bucket: str = ""
    spool_s3_path: str = "spool"  # a folder inside the bucket
    spool_s3_endpoint: str = ""  # an S3-compatible server; "" = AWS
    spool_s3_region: str = "us-east-1"
    spool_s3_access_key: str = ""
    spool_s3_secret_key: Secret = field(default_factory=lambda: Secret(""))
    # The log on a folder of its own (MEMSYS_LOG_DIR), shared the same way: each line names
    # its process (worker@host:pid); writers take turns through a lock file beside it.
    log_folder: Path | None = None
    job_texts_keep_days: int = 0
    # Cache entries not used for this many days are removed by the memsys server (0: never).
    cache_unused_days: int = 0
    log_level: str = "WARNING"  # on stderr; the file in log_dir gets INFO and above (DEBUG too at DEBUG)
    log_max_bytes: int = 5 * 2**20
    log_backups: int = 5
    # The HTTP API and MCP server (memsys/service/): concurrent single writes wait this long
    # for others to share their embedding and Weaviate batch; at most this many memories
    # wait at once (more are answered 429); each token's requests per minute unless the
    # token says otherwise; the largest JSON body and uploaded file it takes.
    api_batch_window_ms: int = 20
    api_queue_limit: int = 10_000
    api_rate_limit: int = 6000
    api_max_body_bytes: int = 10 * 2**20
    api_max_upload_bytes: int = 512 * 2**20

    @property
    def secrets(self) -> list[str]:
        """Every secret these settings hold (API keys, passwords inside URLs), for scrubbing."""
        found = [self.openai_api_key.get(), self.weaviate_api_key.get(),
                 self.backup_s3_secret_key.get(), self.spool_s3_secret_key.get(),
                 url_password(self.openai_base_url), url_password(self.weaviate_url),
                 *(url_password(u) for u in self.weaviate_urls),
                 *(url_password(u) for u in self.openai_base_urls), url_password(self.database_url)]
        return [s for s in found if s]
    # How long a write to the job database waits for another process's write to end.
    jobs_db_timeout: float = 20.0
    # MEMSYS_DATABASE_URL: a postgresql:// URL puts the job database (jobs, their items and
    # batches, metrics, the audit trail, sources and schedules) on PostgreSQL, shared by
    # every machine that names it; unset, it is the SQLite file `jobs_db`. Its password is
    # a secret (never shown, logged or stored).
    database_url: str | None = field(default=None, repr=False)
    # How long an import waits for one file (or archive entry) to be read and cut into chunks.
    read_seconds_per_file: float = 60.0

    @property
    def log_dir(self) -> Path:
        """MEMSYS_LOG_DIR (a folder the workers on several machines share, so the Logs page
        reads every machine's lines), else the data directory's `logs`."""
        return self.log_folder or self.data_dir / "logs"

    @property
    def weaviate_data_dir(self) -> Path:
        return self.data_dir / "weaviate"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / DEFAULT_CACHE_DIR

    @property
    def batch_config_path(self) -> Path:
        """The batch settings new imports start from (saved from the Batch settings page)."""
        return self.data_dir / "batch_config.json"

    @property
    def dashboard_token_path(self) -> Path:
        return self.data_dir / "dashboard_token"

    @property
    def jobs_db(self) -> Path:
        return self.data_dir / "jobs.sqlite3"

    @property
    def job_database(self) -> Path | str:
        """Where the job database is: MEMSYS_DATABASE_URL when set, else `jobs_db`."""
        return self.database_url or self.jobs_db

    @property
    def spool_dir(self) -> Path:
        """Where imports keep their input: MEMSYS_SPOOL_DIR (a folder every worker machine
        mounts at the same path), else the data directory's `spool`."""
        return self.spool_folder or self.data_dir / "spool"

    @property
    def backups_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def embedding_endpoints(self) -> tuple[str, ...]:
        """The base URLs embeddings go to: OPENAI_BASE_URLS, else OPENAI_BASE_URL, else none
        (OpenAI itself)."""
        if self.openai_base_urls:
            return self.openai_base_urls
        return (self.openai_base_url,) if self.openai_base_url else ()

    @property
    def weaviate_nodes(self) -> tuple[str, ...]:
        """The Weaviate URLs memsys may talk to, in order: WEAVIATE_URLS when its first is
        the URL in use (a session that chose another URL has only that one), else the URL."""
        if self.weaviate_urls and self.weaviate_urls[0] == self.weaviate_url:
            return self.weaviate_urls
        return (self.weaviate_url,) if self.weaviate_url else ()

    @property
    def weaviate_mode(self) -> str:
        if not self.weaviate_url:
            return "embedded"
        return "cloud" if ".weaviate.cloud" in self.weaviate_url or ".wcs." in self.weaviate_url else "server"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        secrets_path: Path | None = None,
    ) -> "Settings":
        """Read settings: environment first, then `.streamlit/secrets.toml`, then defaults."""
        env = dict(os.environ if env is None else env)
        secrets = _read_secrets_file(secrets_path or Path(".streamlit/secrets.toml"))

        def get(name: str) -> str | None:
            value = env.get(name)
            if value in (None, ""):
                value = secrets.get(name)
            return None if value in (None, "") else str(value)

        provider = (get("MEMSYS_EMBEDDING_PROVIDER") or "local").lower()
        if provider not in PROVIDERS:
            raise ConfigError(
                f"MEMSYS_EMBEDDING_PROVIDER is {provider!r}; use one of {', '.join(PROVIDERS)}"
            )
        default_model = LOCAL_MODEL if provider == "local" else DEFAULT_OPENAI_MODEL
        kwargs: dict[str, Any] = {
            "embedding_provider": provider,
            "embedding_model": get("MEMSYS_EMBEDDING_MODEL") or default_model,
            "embedding_dimensions": _int(get, "MEMSYS_EMBEDDING_DIMENSIONS", None, minimum=1),
            "openai_api_key": Secret(get("OPENAI_API_KEY") or ""),
            "openai_base_url": get("OPENAI_BASE_URL"),
            "openai_base_urls": _entries(get("OPENAI_BASE_URLS")),
            "embedding_timeout": _float(get, "MEMSYS_EMBEDDING_TIMEOUT", 60.0),
            "embedding_requests_per_minute": _int(get, "MEMSYS_EMBEDDING_RPM", None, minimum=1),
            "embedding_tokens_per_minute": _int(get, "MEMSYS_EMBEDDING_TPM", None, minimum=1),
            "embedding_concurrency": _int(get, "MEMSYS_EMBEDDING_CONCURRENCY", 2, minimum=1),
            "async_indexing": _switch(get, "MEMSYS_ASYNC_INDEXING", False),
            "weaviate_urls": _entries(get("WEAVIATE_URLS")),
            "weaviate_api_key": Secret(get("WEAVIATE_API_KEY") or ""),
            "weaviate_port": _int(get, "MEMSYS_WEAVIATE_PORT", 8079, minimum=1),
            "weaviate_grpc_port": _int(get, "MEMSYS_WEAVIATE_GRPC_PORT", None, minimum=1),
            "weaviate_timeout": _float(get, "MEMSYS_WEAVIATE_TIMEOUT", 60.0),
            "collection": get("MEMSYS_COLLECTION") or "Memory",
            "replication_factor": _int(get, "MEMSYS_REPLICATION_FACTOR", None, minimum=1),
            "shard_count": _int(get, "MEMSYS_SHARD_COUNT", None, minimum=1),
            "async_replication": _bool(get, "MEMSYS_ASYNC_REPLICATION", True),
            "write_consistency": _choice(get, "MEMSYS_WRITE_CONSISTENCY", "QUORUM", CONSISTENCY_LEVELS),
            "read_consistency": _choice(get, "MEMSYS_READ_CONSISTENCY", "QUORUM", CONSISTENCY_LEVELS),
            "server_idle_seconds": _int(get, "MEMSYS_SERVER_IDLE_SECONDS", 900, minimum=0),
            "server_companion": _companion(get("MEMSYS_SERVER_COMPANION")),
            "cache_size_limit_bytes": _int(
                get, "MEMSYS_CACHE_SIZE_LIMIT_BYTES", 64 * 2**30, minimum=1
            ),
            "cache_eviction_policy": get("MEMSYS_CACHE_EVICTION_POLICY") or "none",
            "ocr_enabled": _switch(get, "MEMSYS_OCR", True),
            "ocr_languages": get("MEMSYS_OCR_LANGUAGES") or "chi_sim+jpn+eng",
            "jobs_db_timeout": _float(get, "MEMSYS_JOBS_DB_TIMEOUT", 20.0),
            "database_url": _database_url(get("MEMSYS_DATABASE_URL")),
            "read_seconds_per_file": _float(get, "MEMSYS_READ_SECONDS_PER_FILE", 60.0),
            "dashboard_token": _switch(get, "MEMSYS_DASHBOARD_TOKEN", True),
            "spool_keep_days": _int(get, "MEMSYS_SPOOL_KEEP_DAYS", 7, minimum=0),
            "job_texts_keep_days": _int(get, "MEMSYS_JOB_TEXTS_KEEP_DAYS", 0, minimum=0),
            "cache_unused_days": _int(get, "MEMSYS_CACHE_UNUSED_DAYS", 0, minimum=0),
            "log_level": _choice(get, "MEMSYS_LOG_LEVEL", "WARNING", LOG_LEVELS),
            "log_max_bytes": _int(get, "MEMSYS_LOG_MAX_BYTES", 5 * 2**20, minimum=4096),
            "log_backups": _int(get, "MEMSYS_LOG_BACKUPS", 5, minimum=1),
            "api_batch_window_ms": _int(get, "MEMSYS_API_BATCH_WINDOW_MS", 20, minimum=0),
            "api_queue_limit": _int(get, "MEMSYS_API_QUEUE_LIMIT", 10_000, minimum=1),
            "api_rate_limit": _int(get, "MEMSYS_API_RATE_LIMIT", 6000, minimum=1),
            "api_max_body_bytes": _int(get, "MEMSYS_API_MAX_BODY_BYTES", 10 * 2**20, minimum=1024),
            "api_max_upload_bytes": _int(get, "MEMSYS_API_MAX_UPLOAD_BYTES", 512 * 2**20, minimum=1),
        }
        for name, setting in (("MEMSYS_ADMINS", "admins"), ("MEMSYS_OPERATORS", "operators"), ("MEMSYS_VIEWERS", "viewers"),
                              ("MEMSYS_VERIFIED_EMAIL_ISSUERS", "verified_email_issuers"),
                              ("MEMSYS_ALLOWED_HOSTS", "allowed_hosts"), ("MEMSYS_SOURCE_ROOTS", "source_roots")):
            raw = env.get(name) or secrets.get(name)  # a list in secrets.toml, comma-separated in the environment
            kwargs[setting] = _entries(raw)
        if get("MEMSYS_DATA_DIR"):
            kwargs["data_dir"] = Path(get("MEMSYS_DATA_DIR"))  # type: ignore[arg-type]
        if get("MEMSYS_SPOOL_DIR"):
            kwargs["spool_folder"] = Path(get("MEMSYS_SPOOL_DIR"))  # type: ignore[arg-type]
        if get("MEMSYS_LOG_DIR"):
            kwargs["log_folder"] = Path(get("MEMSYS_LOG_DIR"))  # type: ignore[arg-type]
        if get("MEMSYS_BACKUP_DIR"):
            kwargs["backup_dir"] = Path(get("MEMSYS_BACKUP_DIR"))  # type: ignore[arg-type]
        kwargs.update(_backup_settings(get))
        kwargs.update(_spool_settings(get))
        if get("MEMSYS_WEAVIATE_BINARY_DIR"):
            kwargs["weaviate_binary_dir"] = Path(get("MEMSYS_WEAVIATE_BINARY_DIR"))  # type: ignore[arg-type]
        kwargs["weaviate_url"], kwargs["weaviate_urls"] = _weaviate_urls(get("WEAVIATE_URL"), kwargs["weaviate_urls"])
        _check_loaded(kwargs)
        return cls(**kwargs)


def _database_url(url: str | None) -> str | None:
    """MEMSYS_DATABASE_URL: a PostgreSQL URL, or nothing (the SQLite file in the data directory)."""
    if not url:
        return None
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"MEMSYS_DATABASE_URL is {redact_url(url)!r}: write a PostgreSQL URL "
                          "(postgresql://user:password@host:5432/memsys), or leave it unset for the SQLite file "
                          "in the data directory")
    return url


def _check_loaded(kwargs: Mapping[str, Any]) -> None:
    """Refuse settings that read well but cannot work, naming the setting and what to write."""
    for host in kwargs["allowed_hosts"]:
        if split_host(host) is None:
            raise ConfigError(f"MEMSYS_ALLOWED_HOSTS: {host!r} is not a host name (write memsys.example.com, "
                              "or memsys.example.com:8443 for one port only)")
    if kwargs["embedding_provider"] == "local" and kwargs["embedding_model"] != LOCAL_MODEL:
        raise ConfigError(
            f"MEMSYS_EMBEDDING_MODEL is {kwargs['embedding_model']!r}, but the local "
            f"provider only has {LOCAL_MODEL!r}"
        )
    policies = ("none", "least-recently-stored", "least-recently-used", "least-frequently-used")
    if kwargs["cache_eviction_policy"] not in policies:
        raise ConfigError(
            f"MEMSYS_CACHE_EVICTION_POLICY is {kwargs['cache_eviction_policy']!r}; "
            f"use one of {', '.join(policies)}"
        )
    if not kwargs["collection"][0].isalpha() or not kwargs["collection"].replace("_", "").isalnum():
        raise ConfigError(
            f"MEMSYS_COLLECTION is {kwargs['collection']!r}; use letters, digits and _ only, starting with a letter"
        )
    if not re.fullmatch(r"[A-Za-z_]+(\+[A-Za-z_]+)*", kwargs["ocr_languages"]):
        raise ConfigError(
            f"MEMSYS_OCR_LANGUAGES is {kwargs['ocr_languages']!r}; use Tesseract language names joined by '+', "
            "e.g. chi_sim+jpn+eng"
        )


def _bucket_settings(get: Any, part: str, default_backend: str, default_path: str) -> dict[str, Any]:
    """MEMSYS_<PART>_BACKEND (its default or s3) and the bucket's MEMSYS_<PART>_S3_* settings,
    as the `<part>_backend` and `<part>_s3_*` fields (part: "backup" or "spool")."""
    env, field_ = f"MEMSYS_{part.upper()}", part
    found: dict[str, Any] = {
        f"{field_}_backend": _choice(get, f"{env}_BACKEND", default_backend.upper(), (default_backend.upper(), "S3")).lower(),
        f"{field_}_s3_bucket": get(f"{env}_S3_BUCKET") or "",
        f"{field_}_s3_path": (get(f"{env}_S3_PATH") or default_path).strip("/"),
        f"{field_}_s3_endpoint": get(f"{env}_S3_ENDPOINT") or "",
        f"{field_}_s3_region": get(f"{env}_S3_REGION") or "us-east-1",
        f"{field_}_s3_access_key": get(f"{env}_S3_ACCESS_KEY") or "",
        f"{field_}_s3_secret_key": Secret(get(f"{env}_S3_SECRET_KEY") or ""),
    }
    if found[f"{field_}_backend"] == "s3" and not found[f"{field_}_s3_bucket"]:
        raise ConfigError(f"{env}_BACKEND is s3 but {env}_S3_BUCKET is not set; name the bucket")
    return found


def _backup_settings(get: Any) -> dict[str, Any]:
    """MEMSYS_BACKUP_BACKEND and its bucket, MEMSYS_BACKUP_EVERY (hours) and MEMSYS_BACKUP_KEEP."""
    return {
        **_bucket_settings(get, "backup", "filesystem", ""),
        "backup_every_hours": 0.0 if (get("MEMSYS_BACKUP_EVERY_HOURS") or "0").lower() in ("0", "off")
        else _float(get, "MEMSYS_BACKUP_EVERY_HOURS", 0.0),
        "backup_keep": _int(get, "MEMSYS_BACKUP_KEEP", 7, minimum=1),
    }


def _spool_settings(get: Any) -> dict[str, Any]:
    """MEMSYS_SPOOL_BACKEND (folder or s3) and its bucket."""
    return _bucket_settings(get, "spool", "folder", "spool")


def _switch(get: Any, name: str, default: bool) -> bool:
    raw = get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("on", "true", "yes", "1"):
        return True
    if value in ("off", "false", "no", "0"):
        return False
    raise ConfigError(f"{name} is {raw!r}; use on or off")


def _weaviate_urls(url: str | None, urls: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """The URL in use and every node, from WEAVIATE_URL and WEAVIATE_URLS: each of the list
    a http(s) URL, naming its node's gRPC port when not MEMSYS_WEAVIATE_GRPC_PORT
    (`?grpc=50052`). With both set, WEAVIATE_URL is one of the list, and comes first."""
    for value in urls:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a port that is not a number
            grpc = parse_qs(parts.query).get("grpc", ["1"])[0]
        except ValueError as e:
            raise ConfigError(f"WEAVIATE_URLS: {redact_url(value)!r} is not a URL ({e})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not grpc.isdigit():
            raise ConfigError(f"WEAVIATE_URLS: {redact_url(value)!r} is not a http(s) URL of a Weaviate node "
                              "(such as http://10.0.0.5:8080, or http://10.0.0.5:8080?grpc=50051)")
        if ".weaviate.cloud" in value or ".wcs." in value:
            raise ConfigError("WEAVIATE_URLS: a Weaviate Cloud cluster has one URL; set WEAVIATE_URL to it")
    if url and urls:
        if url not in urls:
            raise ConfigError("WEAVIATE_URL is not one of WEAVIATE_URLS; set one of them (WEAVIATE_URLS lists every node)")
        return url, (url, *(u for u in urls if u != url))
    return url or (urls[0] if urls else None), urls


def _companion(raw: str | None) -> str:
    if raw is None:
        return "memsys sources scheduler"
    return "" if raw.strip().lower() in ("off", "none", "no", "0") else raw.strip()


def _entries(raw: Any) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    return tuple(str(i).strip() for i in items if str(i).strip())


def _int(get: Any, name: str, default: int | None, minimum: int) -> int | None:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name} is {value}; it must be at least {minimum}")
    return value


def _bool(get: Any, name: str, default: bool) -> bool:
    raw = get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} is {raw!r}; use true or false")


def _choice(get: Any, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = get(name)
    if raw is None:
        return default
    value = raw.strip().upper()
    if value not in choices:
        raise ConfigError(f"{name} is {raw!r}; use one of {', '.join(choices)}")
    return value


def _float(get: Any, name: str, default: float) -> float:
    raw = get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a number") from None
    if value <= 0:
        raise ConfigError(f"{name} is {value}; it must be greater than 0")
    return value


# --- BatchConfig: batching, retries and bounds, validated -------------------------------

LENGTH_BUCKETS = ("short", "medium", "long", "very_long")
# A text shorter than its bucket's limit (characters) is in that bucket; very_long has none.
LENGTH_LIMITS = {"short": 100, "medium": 500, "long": 2000}
# Batch sizes that keep one request's tokens well inside a provider's limit for texts of each
# bucket's length (shorter texts pack more per request); shown beside the fields.
RECOMMENDED_BATCH_SIZES = {
    "short": (40, 60),
    "medium": (30, 50),
    "long": (20, 40),
    "very_long": (10, 25),
}


# The largest value each field may take: beyond these a setting only hurts (more threads
# than cores can use, waits longer than an operator would, batches past any provider's limit).
UPPER_BOUNDS: dict[str, int | float] = {
    "default_batch_size": 2048, "max_retries": 20, "base_retry_delay": 600.0, "max_retry_delay": 3600.0,
    "gc_frequency": 100_000, "embed_workers": 16, "write_workers": 16, "queue_depth": 64,
    "memory_limit_mb": 262_144, "min_batch_size": 2048, "max_batch_size": 2048,
    **{f"text_type_batch_sizes.{bucket}": 2048 for bucket in LENGTH_BUCKETS},
}


@dataclass
class BatchConfig:
    """How imports are batched, retried and bounded. Every field acts; unknown keys are an error."""

    # Batch sizes
    default_batch_size: int = 50
    text_type_batch_sizes: dict[str, int] | None = None

    # Retries
    max_retries: int = 3
    base_retry_delay: float = 1.0
    max_retry_delay: float = 60.0

    # Cache
    enable_cache: bool = True
    cache_dir: str = DEFAULT_CACHE_DIR

    # Performance
    enable_progress_bar: bool = True
    gc_frequency: int = 10

    # Errors
    continue_on_error: bool = True
    log_errors: bool = True

    # Concurrency and memory
    embed_workers: int = 2
    write_workers: int = 3
    queue_depth: int = 4
    memory_limit_mb: int = 2048
    min_batch_size: int = 10
    max_batch_size: int = 200

    # Rate-limit budget for this import (0: the settings' and the provider's headers')
    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    def __post_init__(self) -> None:
        if self.text_type_batch_sizes is None:
            self.text_type_batch_sizes = {"short": 60, "medium": 40, "long": 25, "very_long": 15}  # see LENGTH_LIMITS
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value cannot work."""
        problems = batch_config_problems(dataclasses.asdict(self))
        if problems:
            raise ConfigError(problems[0].message)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BatchConfig":
        if not isinstance(data, Mapping):
            raise ConfigError("a batch configuration must be a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in names)
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r} in the batch configuration; "
                f"known settings: {', '.join(sorted(names))}"
            )
        return cls(**dict(data))

    @classmethod
    def from_file(cls, config_path: str | os.PathLike[str]) -> "BatchConfig":
        """Load from a JSON file of these fields (as `to_file` writes it); unknown keys are an error."""
        path = Path(config_path)
        try:
            with path.open("r", encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path.name} is not valid JSON: {e.msg} at line {e.lineno}") from None
        return cls.from_dict(data)

    @classmethod
    def saved(cls, path: Path) -> "BatchConfig":
        """The batch settings saved at `path`, or the defaults when nothing is saved there."""
        return cls.from_file(path) if path.is_file() else cls()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_file(self, config_path: str | os.PathLike[str]) -> None:
        path = Path(config_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)

    @staticmethod
    def length_bucket(text: str) -> str:
        n = len(text)
        for bucket, limit in LENGTH_LIMITS.items():
            if n < limit:
                return bucket
        return "very_long"

    def get_batch_size_for_text(self, text: str) -> int:
        """The batch size for a text of this length: its length bucket's entry in `text_type_batch_sizes`."""
        assert self.text_type_batch_sizes is not None
        return self.text_type_batch_sizes[self.length_bucket(text)]

    def resolve_cache_dir(self, data_dir: Path) -> Path:
        """The cache folder: `cache_dir` is always relative to the data directory."""
        return data_dir / self.cache_dir

@dataclass(frozen=True)
class ConfigProblem:
    """One field of a batch configuration that cannot work: `field` as BatchConfig names it
    ("max_retries", "text_type_batch_sizes.short"), `problem` what is wrong with it."""

    field: str
    problem: str  # "is -2; it must be a whole number of at least 0"

    @property
    def message(self) -> str:
        return f"{self.field} {self.problem}"


def batch_config_problems(values: Mapping[str, Any]) -> list[ConfigProblem]:
    """Every problem of a batch configuration's values at once (a form shows them all
    together; `BatchConfig.validate` raises the first). Fields left out take their defaults."""
    v = {**{f.name: f.default for f in dataclasses.fields(BatchConfig)}, **values}
    sizes = v.get("text_type_batch_sizes") or {"short": 60, "medium": 40, "long": 25, "very_long": 15}
    missing = [b for b in LENGTH_BUCKETS if b not in sizes]
    if missing:
        return [ConfigProblem("text_type_batch_sizes", f"is missing {', '.join(missing)}")]
    unknown = [b for b in sizes if b not in LENGTH_BUCKETS]
    if unknown:
        return [ConfigProblem("text_type_batch_sizes",
                              f"has unknown bucket {unknown[0]!r}; use {', '.join(LENGTH_BUCKETS)}")]
    whole, seconds, budget = "a whole number of at least 1", "a number of seconds, 0 or more", "a whole number, 0 for no limit of its own"
    checks: list[tuple[str, Any, bool, str]] = [
        ("default_batch_size", v["default_batch_size"], _pos_int(v["default_batch_size"]), whole),
        ("max_retries", v["max_retries"], _int_at_least(v["max_retries"], 0), "a whole number of at least 0"),
        ("base_retry_delay", v["base_retry_delay"], _num_at_least(v["base_retry_delay"], 0), seconds),
        ("max_retry_delay", v["max_retry_delay"], _num_at_least(v["max_retry_delay"], 0), seconds),
        ("gc_frequency", v["gc_frequency"], _pos_int(v["gc_frequency"]), whole),
        ("embed_workers", v["embed_workers"], _pos_int(v["embed_workers"]), whole),
        ("write_workers", v["write_workers"], _pos_int(v["write_workers"]), whole),
        ("queue_depth", v["queue_depth"], _pos_int(v["queue_depth"]), whole),
        ("memory_limit_mb", v["memory_limit_mb"], _int_at_least(v["memory_limit_mb"], 64), "a whole number of MB, at least 64"),
        ("min_batch_size", v["min_batch_size"], _pos_int(v["min_batch_size"]), whole),
        ("max_batch_size", v["max_batch_size"], _pos_int(v["max_batch_size"]), whole),
        ("requests_per_minute", v["requests_per_minute"], _int_at_least(v["requests_per_minute"], 0), budget),
        ("tokens_per_minute", v["tokens_per_minute"], _int_at_least(v["tokens_per_minute"], 0), budget),
        ("cache_dir", v["cache_dir"], _inside(v["cache_dir"]), "a folder path inside the data directory, like .cache/embeddings"),
    ]
    for bucket in LENGTH_BUCKETS:
        checks.append((f"text_type_batch_sizes.{bucket}", sizes[bucket], _pos_int(sizes[bucket]), whole))
    for name in ("enable_cache", "enable_progress_bar", "continue_on_error", "log_errors"):
        checks.append((name, v[name], isinstance(v[name], bool), "true or false"))
    problems = [ConfigProblem(name, f"is {value!r}; it must be {want}") for name, value, ok, want in checks if not ok]
    bad = {p.field for p in problems}
    for name, limit in UPPER_BOUNDS.items():
        if name in bad:
            continue
        value = sizes[name.split(".")[1]] if name.startswith("text_type_batch_sizes.") else v[name]
        if value > limit:
            problems.append(ConfigProblem(name, f"is {value!r}; it must be at most {limit:,}"))
            bad.add(name)
    if not bad & {"min_batch_size", "max_batch_size"} and v["min_batch_size"] > v["max_batch_size"]:
        problems.append(ConfigProblem(
            "min_batch_size", f"({v['min_batch_size']}) is larger than max_batch_size ({v['max_batch_size']})"))
    if not bad & {"base_retry_delay", "max_retry_delay"} and v["base_retry_delay"] > v["max_retry_delay"]:
        problems.append(ConfigProblem(
            "base_retry_delay", f"({v['base_retry_delay']}) is larger than max_retry_delay ({v['max_retry_delay']})"))
    return problems



def _inside(v: Any) -> bool:
    """A relative folder path that stays inside the folder it is relative to."""
    if not isinstance(v, str) or not v.strip() or "\x00" in v:
        return False
    p = Path(v)
    return not p.is_absolute() and not v.startswith("~") and ".." not in p.parts


def _pos_int(v: Any) -> bool:
    return _int_at_least(v, 1)


def _int_at_least(v: Any, minimum: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _num_at_least(v: Any, minimum: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= minimum

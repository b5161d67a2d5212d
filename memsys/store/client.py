"""Opening one Weaviate client: the timeouts every memsys client uses, where a node
answers (`NodeAddress`), and a client on a configured server (WEAVIATE_URL or one node of
WEAVIATE_URLS) or on Weaviate Cloud. The memsys server's own clients are opened by
`memsys.store.server`; following a server or a cluster over time is `memsys.store.connection`.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlparse

from memsys.config import Settings, redact_url
from memsys.errors import StoreUnavailableError, scrub, weaviate_errors
from memsys.lazy import lazy_module, lazy_names

if TYPE_CHECKING:
    import weaviate
    from weaviate.classes.init import AdditionalConfig, Auth, Timeout
else:  # imported on first use (memsys.lazy): only opening a client loads the Weaviate client
    weaviate = lazy_module("weaviate")
    AdditionalConfig, Auth, Timeout = lazy_names("weaviate.classes.init", "AdditionalConfig", "Auth", "Timeout")

# Weaviate answers at most this many objects per query (its QUERY_MAXIMUM_RESULTS, whose
# default this is; the memsys server is run with it set to this value).
MAX_RESULTS = 10_000


def client_timeouts(settings: Settings) -> AdditionalConfig:
    """A write that hangs (a replica killed in the middle of it) ends as a retryable error
    after `weaviate_timeout`, rather than after the client's default of minutes."""
    return AdditionalConfig(timeout=Timeout(init=30, query=settings.weaviate_timeout, insert=settings.weaviate_timeout))



@dataclass(frozen=True)
class NodeAddress:
    """Where one Weaviate node answers: its REST base URL and its gRPC port."""

    url: str  # as configured (shown, redacted)
    rest: str  # scheme://host:port, no query
    host: str
    port: int
    grpc_port: int
    secure: bool

    @classmethod
    def parse(cls, url: str, settings: Settings) -> "NodeAddress":
        parts = urlparse(url)
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        grpc = parse_qs(parts.query).get("grpc", [""])[0]
        host = parts.hostname or "localhost"
        return cls(url, f"{parts.scheme or 'http'}://{host}:{port}", host, port,
                   int(grpc) if grpc.isdigit() else settings.weaviate_grpc_port or 50051, secure)

    def answers(self, timeout: float = 1.0) -> bool:
        """Whether both its ports take a connection (a node that was killed refuses at once;
        the client would retry gRPC for a minute before saying so)."""
        for port in (self.port, self.grpc_port):
            try:
                socket.create_connection((self.host, port), timeout=timeout).close()
            except OSError:
                return False
        return True



def connect(settings: Settings, node: int = 0) -> weaviate.WeaviateClient:
    """A client on the server the settings name (`weaviate_url`), or on Weaviate Cloud. A
    cluster is reached through one node (`node`, an index into `settings.weaviate_nodes`),
    which coordinates replication to the others, so they may come and go."""
    timeouts = client_timeouts(settings)
    url = settings.weaviate_nodes[node]
    try:
        auth = Auth.api_key(settings.weaviate_api_key.get()) if settings.weaviate_api_key else None
        if settings.weaviate_mode == "cloud":
            return weaviate.connect_to_weaviate_cloud(cluster_url=url, auth_credentials=auth,
                                                      additional_config=timeouts)
        address = NodeAddress.parse(url, settings)
        return weaviate.connect_to_custom(
            http_host=address.host,
            http_port=address.port,
            http_secure=address.secure,
            grpc_host=address.host,
            grpc_port=address.grpc_port,
            grpc_secure=address.secure,
            auth_credentials=auth,
            additional_config=timeouts,
        )
    except weaviate_errors(OSError) as e:
        secrets = settings.secrets
        raise StoreUnavailableError(f"cannot connect to {redact_url(url)}: {scrub(str(e), secrets)}") from None

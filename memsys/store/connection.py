"""The connection a store and the stores made from it share: one Weaviate client, opened
on first use, that follows the data directory's memsys server when it is restarted or
replaced, and moves to the next node of a cluster (WEAVIATE_URLS) when the one in use
stops answering.
"""
from __future__ import annotations

import threading
import time

from typing import TYPE_CHECKING

import httpx

from memsys.config import Settings, redact_url
from memsys.errors import StoreUnavailableError
from memsys.lazy import caught_once_imported
from memsys.logs import event, get_logger
from memsys.store import server
from memsys.store.client import NodeAddress, connect

if TYPE_CHECKING:
    import weaviate

log = get_logger("store")
# The client's errors of a node that did not answer (without importing the client: memsys.lazy).
_unanswered = caught_once_imported("weaviate.exceptions", "WeaviateConnectionError", "WeaviateClosedClientError")


def is_unreachable(error: BaseException) -> bool:
    """True when the node memsys talks to did not answer at all (down, or cut off), as
    opposed to answering with an error. A client closed by another thread moving to the
    next node counts too: the call is made again there."""
    text = str(error)
    return isinstance(error, _unanswered(httpx.TransportError)) \
        or "StatusCode.UNAVAILABLE" in text or "failed to connect to all addresses" in text


class Connection:
    """One Weaviate client, shared by a store and the stores `with_collection` makes.

    On embedded Weaviate it follows the data directory's server: when the state file
    changes (the server was restarted or replaced) the next use reconnects. When the server
    was stopped, the next use starts it again, except while an import runs in this process:
    then its batches fail with a clear reason and the job is resumed later, so `memsys
    server stop` really stops the server."""

    def __init__(self, settings: Settings, client: weaviate.WeaviateClient | None = None) -> None:
        self.settings = settings
        self._client = client
        self._owned = client is None
        self._embedded = client is None and not settings.weaviate_url
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self._imports = 0
        # A cluster given as several nodes (WEAVIATE_URLS): the one in use, and when it was
        # last seen answering. Each use at most once a second checks it still answers, and
        # moves to the next node that does when it does not.
        self._nodes = [NodeAddress.parse(u, settings) for u in settings.weaviate_nodes] \
            if client is None and len(settings.weaviate_nodes) > 1 else []
        self._node = 0
        self._checked = 0.0
        self.alias_switches = 0  # how often this process moved an alias (search rechecks its embedder)

    @property
    def node_url(self) -> str:
        """The REST base URL of the node in use."""
        if self._nodes:
            return self._nodes[self._node].rest
        if self.settings.weaviate_url:
            return NodeAddress.parse(self.settings.weaviate_url, self.settings).rest
        return f"http://127.0.0.1:{self.settings.weaviate_port}"

    def get(self) -> weaviate.WeaviateClient:
        with self._lock:
            if self._client is not None and self._embedded:
                identity = server.state_identity(self.settings)
                if identity != self._identity and (identity is not None or self._imports == 0):
                    self._drop()
            if self._client is not None and self._nodes and time.monotonic() - self._checked >= 1.0:
                if self._nodes[self._node].answers():
                    self._checked = time.monotonic()
                else:
                    self._leave_node("it stopped answering")
            if self._client is None:
                self._client = self._open()
            return self._client

    @property
    def node_count(self) -> int:
        return max(1, len(self._nodes))

    def fail_over(self, client: weaviate.WeaviateClient, error: BaseException) -> bool:
        """After `error` on `client`: True when the caller should try again, on another
        node (the node did not answer and the cluster has others), or on the client another
        thread already moved to."""
        if not self._nodes or not is_unreachable(error):
            return False
        with self._lock:
            if client is self._client:
                self._leave_node(f"a call failed: {type(error).__name__}")
            return True

    def _leave_node(self, why: str) -> None:
        left = self._nodes[self._node]
        self._drop()
        self._node = (self._node + 1) % len(self._nodes)
        log.warning("Weaviate node %s: %s; moving to the next node of WEAVIATE_URLS", redact_url(left.url), why,
                    extra=event("store.node_left", node=redact_url(left.url), reason=why))

    def _open(self) -> weaviate.WeaviateClient:
        if self._nodes:
            return self._open_a_node()
        if self.settings.weaviate_url:
            return connect(self.settings)
        client, _ = server.connect_client(self.settings)
        self._identity = server.state_identity(self.settings)
        return client

    def _open_a_node(self) -> weaviate.WeaviateClient:
        """The first node, from the one in use on, that answers and connects."""
        problems = []
        for step in range(len(self._nodes)):
            index = (self._node + step) % len(self._nodes)
            node = self._nodes[index]
            if not node.answers():
                problems.append(f"{redact_url(node.url)}: does not answer")
                continue
            try:
                client = connect(self.settings, index)
            except StoreUnavailableError as e:
                problems.append(str(e))
                continue
            if index != self._node:
                log.warning("Weaviate: now using node %s", redact_url(node.url),
                            extra=event("store.node_used", node=redact_url(node.url)))
            self._node, self._checked = index, time.monotonic()
            return client
        raise StoreUnavailableError("no node of WEAVIATE_URLS answers: " + "; ".join(problems))

    def _drop(self) -> None:
        if self._client is not None and self._owned:
            self._client.close()
            if self._embedded:
                server.release_client(self.settings)
        self._client = None

    def close(self) -> None:
        with self._lock:
            self._drop()

    def importing(self, delta: int) -> None:
        with self._lock:
            self._imports += delta

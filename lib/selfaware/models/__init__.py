"""Model specs and backends.

A model is named by one spec string, parsed here and nowhere else:

    local:smollm2-135m                          the embedded default (SmolLM2-135M-Instruct)
    local:/models/Qwen2.5-7B-Instruct           any Hugging Face model directory on disk
    local:smollm2-135m?adapter=<dir>            the same with a LoRA adapter
    openai:gpt-4o-2024-08-06                    OpenAI API (OPENAI_API_KEY)
    fireworks:accounts/fireworks/models/...     Fireworks API (FIREWORKS_API_KEY)
    openai-compatible:http://host:8000/v1|name  any server speaking the OpenAI chat API (vLLM, SGLang, TGI)
    openai-compatible:http://...|name?identity=H   the same, answering as the model whose content hash is H
                                                (``selfaware.vllm`` hands these out: the cache key then
                                                names the model's content, not the server's address)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs

from ..errors import ConfigError
from .base import ChatModel, Messages, NumberScore, OptionScore

BACKENDS = ("local", "openai", "fireworks", "openai-compatible")


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str
    adapter: str | None = None
    base_url: str | None = None
    identity: str | None = None  # openai-compatible only: the served model's content hash

    # facts about the model, read from the spec and the embedded-model table, never from substrings
    @property
    def is_local(self) -> bool:
        """Runs in this process (transformers), so scores are exact and calls cost nothing."""
        return self.backend == "local"

    @property
    def is_free(self) -> bool:
        """Costs nothing per call: a local model or the user's own OpenAI-compatible server."""
        return self.backend in ("local", "openai-compatible")

    @property
    def embedded(self):
        """The ``EmbeddedModel`` (title, parameters, source, licence) when this is one, else None."""
        if not self.is_local:
            return None
        from .embedded import EMBEDDED
        return EMBEDDED.get(self.name)

    @property
    def parameters(self) -> int | None:
        """Parameter count when known (the embedded models); None for any other model."""
        return self.embedded.parameters if self.embedded else None

    @property
    def title(self) -> str:
        """A readable name: the embedded model's title, else the model name."""
        return self.embedded.title if self.embedded else self.name

    @property
    def is_small(self) -> bool:
        """Known to have under a billion parameters: far below the papers' models, and a weak judge."""
        return self.parameters is not None and self.parameters < 1_000_000_000

    def __str__(self) -> str:
        if self.backend == "openai-compatible":
            return f"{self.backend}:{self.base_url}|{self.name}" + (f"?identity={self.identity}" if self.identity else "")
        return f"{self.backend}:{self.name}" + (f"?adapter={self.adapter}" if self.adapter else "")


def parse_spec(spec: str) -> ModelSpec:
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"model spec {spec!r} must look like 'backend:name', backend one of {', '.join(BACKENDS)}")
    backend, _, rest = spec.partition(":")
    if backend not in BACKENDS:
        raise ConfigError(f"model spec {spec!r}: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if not rest:
        raise ConfigError(f"model spec {spec!r} names no model")
    if backend == "openai-compatible":
        base_url, sep, name = rest.rpartition("|")
        if not sep or not base_url.startswith(("http://", "https://")) or not name:
            raise ConfigError(f"model spec {spec!r} must look like 'openai-compatible:http://host:port/v1|model'")
        name, _, query = name.partition("?identity=")
        if not name or (_ and not query):
            raise ConfigError(f"model spec {spec!r}: '?identity=' needs a model name before it and a hash after it")
        return ModelSpec(backend, name, base_url=base_url, identity=query or None)
    name, _, query = rest.partition("?")
    adapter = None
    if query:
        params = parse_qs(query)
        unknown = set(params) - {"adapter"}
        if unknown:
            raise ConfigError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
        adapter = params["adapter"][0]
        if backend != "local":
            raise ConfigError(f"model spec {spec!r}: adapters are for local models only")
    return ModelSpec(backend, name, adapter=adapter)


def load_model(spec: str) -> ChatModel:
    """The ChatModel for a spec. Loading is lazy: nothing heavy happens until the first call. A local
    model is kept per inference dtype: its cache identity names the dtype, so a run that changes the
    precision gets a model whose answers are keyed by the new one."""
    parsed = parse_spec(spec)
    if parsed.backend == "local":
        from ..hardware import inference_dtype
        return _load(str(parsed), inference_dtype())
    return _load(str(parsed))


@lru_cache(maxsize=64)
def _load(spec: str, dtype: str | None = None) -> ChatModel:
    parsed = parse_spec(spec)
    if parsed.backend == "local":
        from .local import LocalChatModel
        return LocalChatModel(parsed)
    if parsed.backend == "openai":
        from .api import OpenAIChatModel
        return OpenAIChatModel(parsed)
    if parsed.backend == "fireworks":
        from .api import FireworksChatModel
        return FireworksChatModel(parsed)
    from .api import OpenAICompatibleChatModel
    return OpenAICompatibleChatModel(parsed)


__all__ = ["ChatModel", "Messages", "ModelSpec", "NumberScore", "OptionScore", "load_model", "parse_spec"]

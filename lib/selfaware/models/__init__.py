"""Model specs and backends.

A model is named by one spec string, parsed here and nowhere else:

    local:smollm2-135m                          the embedded default (SmolLM2-135M-Instruct)
    local:/models/Qwen2.5-7B-Instruct           any Hugging Face model directory on disk
    local:smollm2-135m?adapter=<dir>            the same with a LoRA adapter
    local:smollm2-135m?steer=<v.npy>&layer=12&scale=4
                                                the same with a steering vector (a 1-D .npy file) times
                                                ``scale`` (default 1) added to the residual stream after
                                                decoder layer ``layer`` (0-based) at every position
    openai:gpt-4o-2024-08-06                    OpenAI API (OPENAI_API_KEY)
    fireworks:accounts/fireworks/models/...     Fireworks API (FIREWORKS_API_KEY)
    openai-compatible:http://host:8000/v1|name  any server speaking the OpenAI chat API (vLLM, SGLang, TGI)
    openai-compatible:http://...|name?identity=H   the same, answering as the model whose content hash is H
                                                (``selfaware.vllm`` hands these out: the cache key then
                                                names the model's content, not the server's address)
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs

from ..errors import ConfigError, ModelNotAvailable
from .base import ChatModel, Messages, NumberScore, OptionScore


# ---- the backend registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backend:
    """One kind of model, named by a spec prefix (``<name>:...``). Its ``ChatModel`` class is imported only
    when a model of this backend is first loaded, after checking that the packages it needs are installed,
    so a missing SDK is a one-line error naming the package, and naming a backend costs no import."""

    name: str
    module: str  # the module that holds the ChatModel class
    chat_model: str  # the class's name there
    requires: tuple[tuple[str, str], ...] = ()  # (importable module, pip package) pairs it needs
    is_local: bool = False  # runs in this process (transformers): scores are exact, calls cost nothing
    is_free: bool = False  # costs nothing per call (a local model, or the user's own server)
    served_at_url: bool = False  # the spec names a server: 'name:http://host:port/v1|model'
    takes_adapter: bool = False  # '?adapter=<dir>' may follow the model's name
    takes_steering: bool = False  # '?steer=<file.npy>&layer=L&scale=S' may follow the model's name

    def chat_model_class(self) -> type[ChatModel]:
        missing = [package for module, package in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise ModelNotAvailable(f"the {self.name!r} backend needs {', '.join(missing)}: "
                                    f"pip install {' '.join(missing)} (or pip install -r requirements.txt)")
        return getattr(importlib.import_module(self.module), self.chat_model)


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Make a spec prefix known: ``parse_spec`` accepts it and ``load_model`` loads its class."""
    _BACKENDS[backend.name] = backend
    return backend


def backend(name: str) -> Backend:
    """The registered backend of that name; an unknown name is an error that lists the known ones."""
    if name not in _BACKENDS:
        raise ConfigError(f"unknown model backend {name!r} (known: {', '.join(_BACKENDS)})")
    return _BACKENDS[name]


def backends() -> tuple[str, ...]:
    """The names of the registered backends, in registration order."""
    return tuple(_BACKENDS)


_OPENAI_SDK = (("openai", "openai"),)
register_backend(Backend("local", f"{__name__}.local", "LocalChatModel",
                         (("torch", "torch"), ("transformers", "transformers")),
                         is_local=True, is_free=True, takes_adapter=True, takes_steering=True))
register_backend(Backend("openai", f"{__name__}.api", "OpenAIChatModel", _OPENAI_SDK))
register_backend(Backend("fireworks", f"{__name__}.api", "FireworksChatModel", (("fireworks", "fireworks-ai"),)))
register_backend(Backend("openai-compatible", f"{__name__}.api", "OpenAICompatibleChatModel", _OPENAI_SDK,
                         is_free=True, served_at_url=True))
BACKENDS = backends()  # the built-in ones; ``backends()`` also names any registered later


@dataclass(frozen=True)
class ModelSpec:
    backend: str
    name: str
    adapter: str | None = None
    base_url: str | None = None
    identity: str | None = None  # openai-compatible only: the served model's content hash
    steer: str | None = None  # a steering vector (.npy), added after decoder layer ``layer`` times ``scale``
    layer: int | None = None
    scale: float = 1.0

    # facts about the model, read from the spec and the embedded-model table, never from substrings
    @property
    def is_local(self) -> bool:
        """Runs in this process (transformers), so scores are exact and calls cost nothing."""
        return backend(self.backend).is_local

    @property
    def is_free(self) -> bool:
        """Costs nothing per call: a local model or the user's own OpenAI-compatible server."""
        return backend(self.backend).is_free

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
        if self.base_url:
            return f"{self.backend}:{self.base_url}|{self.name}" + (f"?identity={self.identity}" if self.identity else "")
        options = ([f"adapter={self.adapter}"] if self.adapter else []) + \
            ([f"steer={self.steer}", f"layer={self.layer}", f"scale={self.scale:g}"] if self.steer else [])
        return f"{self.backend}:{self.name}" + ("?" + "&".join(options) if options else "")


def parse_spec(spec: str) -> ModelSpec:
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"model spec {spec!r} must look like 'backend:name', "
                          f"backend one of {', '.join(backends())}")
    name, _, rest = spec.partition(":")
    if name not in _BACKENDS:
        raise ConfigError(f"model spec {spec!r}: unknown backend {name!r} (known: {', '.join(backends())})")
    if not rest:
        raise ConfigError(f"model spec {spec!r} names no model")
    found = backend(name)
    if found.served_at_url:
        base_url, sep, model = rest.rpartition("|")
        if not sep or not base_url.startswith(("http://", "https://")) or not model:
            raise ConfigError(f"model spec {spec!r} must look like '{name}:http://host:port/v1|model'")
        model, marker, query = model.partition("?identity=")
        if not model or (marker and not query):
            raise ConfigError(f"model spec {spec!r}: '?identity=' needs a model name before it and a hash after it")
        return ModelSpec(found.name, model, base_url=base_url, identity=query or None)
    model, _, query = rest.partition("?")
    if not query:
        return ModelSpec(found.name, model)
    params = {key: values[0] for key, values in parse_qs(query).items()}
    unknown = set(params) - {"adapter", "steer", "layer", "scale"}
    if unknown:
        raise ConfigError(f"model spec {spec!r}: unknown option(s) {', '.join(sorted(unknown))}")
    if "adapter" in params and not found.takes_adapter:
        raise ConfigError(f"model spec {spec!r}: adapters are for local models only")
    steering = {key: params[key] for key in ("steer", "layer", "scale") if key in params}
    if not steering:
        return ModelSpec(found.name, model, adapter=params.get("adapter"))
    if not found.takes_steering:
        raise ConfigError(f"model spec {spec!r}: steering vectors are for local models only")
    if "steer" not in steering or "layer" not in steering:
        raise ConfigError(f"model spec {spec!r}: a steering vector needs both 'steer=<file.npy>' and 'layer=<index>'")
    try:
        layer, scale = int(steering["layer"]), float(steering.get("scale", 1.0))
    except ValueError:
        raise ConfigError(f"model spec {spec!r}: 'layer' must be an integer and 'scale' a number") from None
    if layer < 0 or not math.isfinite(scale):
        raise ConfigError(f"model spec {spec!r}: 'layer' must be 0 or more and 'scale' a finite number")
    return ModelSpec(found.name, model, adapter=params.get("adapter"), steer=steering["steer"], layer=layer,
                     scale=scale)


def load_model(spec: str) -> ChatModel:
    """The ChatModel for a spec. Loading is lazy: nothing heavy happens until the first call. A local
    model is kept per inference dtype: its cache identity names the dtype, so a run that changes the
    precision gets a model whose answers are keyed by the new one."""
    parsed = parse_spec(spec)
    if parsed.is_local:
        from ..hardware import inference_dtype
        return _load(str(parsed), inference_dtype())
    return _load(str(parsed))


@lru_cache(maxsize=64)
def _load(spec: str, dtype: str | None = None) -> ChatModel:
    parsed = parse_spec(spec)
    return backend(parsed.backend).chat_model_class()(parsed)


__all__ = ["Backend", "ChatModel", "Messages", "ModelSpec", "NumberScore", "OptionScore", "backend", "backends",
           "load_model", "parse_spec", "register_backend"]

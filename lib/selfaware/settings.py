"""Runtime settings: how this machine runs the work, never what a page measures.

Each setting has a typed field here and an environment variable that gives its default (``SELFAWARE_`` and
the field's name in capitals, e.g. ``SELFAWARE_SCORE_BATCH=4``). A run's own choices (its cache mode and
precision, from the page's parameters) live in the run context (:mod:`selfaware.context`) and take
precedence. ``run.json`` records the effective values and which of them came from the environment.

A value that does not parse is a one-line :class:`~selfaware.errors.ConfigError` naming the variable.
Settings that change numbers (precision, dtype) are also part of every cache identity that they affect
(``selfaware.hardware``); the others only change speed, memory or patience.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

PREFIX = "SELFAWARE_"


class RuntimeSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # the call cache: rw (read and write), replay (a miss is an error), off
    cache_mode: Literal["rw", "replay", "off"] = "rw"
    # auto: bf16 where the device computes it natively, else fp32 (selfaware.hardware)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # the torch dtype local models compute in, overriding the precision (float16, say)
    dtype: str | None = None
    # cpu, cuda, cuda:1...; default: cuda when a GPU is there
    device: str | None = None
    # torch threads per process; 0: one per core this process may run on
    torch_threads: int = Field(0, ge=0)
    # prompts scored at once by a local model; default: the embedded model's own size, else 16
    score_batch: int | None = Field(None, ge=1)
    # prompts sampled at once by a local model
    sample_batch: int = Field(16, ge=1)
    # GB of weights kept loaded between cells (at least one model stays)
    max_loaded_gb: float = Field(4.0, gt=0)
    # MB of frozen-layer activations kept in memory for LoRA on the top layers; above it they are recomputed
    frozen_cache_mb: float = Field(4096.0, ge=0)
    # API backends: requests in flight (default per provider), per-request timeout, attempts, back-off, deadline
    api_concurrency: int | None = Field(None, ge=1)
    api_timeout: float = Field(60.0, gt=0)
    api_max_attempts: int = Field(8, ge=1)
    api_backoff_base: float = Field(1.0, ge=0)
    api_backoff_max: float = Field(60.0, ge=0)
    api_total_seconds: float = Field(900.0, gt=0)
    # seconds between status polls of an API finetuning job
    finetune_poll_seconds: float = Field(20.0, gt=0)
    # progress bars (SELFAWARE_PROGRESS=0 hides them)
    progress: bool = True
    # vLLM: the engine's virtual environment, its KV-cache size and how long a server may take to start
    vllm_env: str | None = None
    vllm_kvcache_gb: float = Field(2.0, gt=0)
    vllm_start_timeout: float = Field(600.0, gt=0)
    # pages the runner ran at once (selfaware book --jobs N sets it for each page's kernel): above 1, a page's
    # seconds were measured beside other pages, about 1.4x its time alone on 2 cores
    pages_at_once: int = Field(1, ge=1)


def variable(field: str) -> str:
    """The environment variable that gives ``field``'s default."""
    return PREFIX + field.upper()


def _from_environment() -> dict[str, str]:
    found = {}
    for name in RuntimeSettings.model_fields:
        value = os.environ.get(variable(name))
        if value not in (None, ""):
            found[name] = value
    return found


def current() -> RuntimeSettings:
    """The settings now: each field from its environment variable when set, else its default. Read afresh
    on every call (a test or a user may change the environment between two runs in one process)."""
    given = _from_environment()
    try:
        return RuntimeSettings(**given)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0])
        raise ConfigError(f"{variable(name)}={given.get(name)!r}: {first['msg']}") from None


def recorded() -> dict[str, Any]:
    """The effective settings as ``run.json`` keeps them, with the names that came from the environment."""
    return {**current().model_dump(), "from_environment": sorted(_from_environment())}

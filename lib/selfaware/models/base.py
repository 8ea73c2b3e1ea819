"""The one interface every backend speaks.

A backend implements three batch primitives on plain request dicts (so that they can be cached):
``_sample``, ``_option_logprobs`` and ``_number_distribution``. The public methods build the requests,
route them through the content-addressed cache and turn answers into friendly values.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

from ..cache import CallCache, content_hash, default_cache

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class NumberScore:
    """Probability-weighted answer to a "give a number lo-hi" question."""

    expected: float | None  # mean over the numbers, renormalised to the mass on numbers; None if no mass
    mass: float  # total probability that the answer is a number in range
    method: str  # "exact" (local, or a server that scores continuations: vLLM), "top_logprobs" (API) or
    # "sampled" (API without log-probabilities, or whose tokenizer writes numbers one digit per token)
    distribution: dict[int, float]


@dataclass(frozen=True)
class OptionScore:
    """Log-probability of each given answer option, and the probabilities renormalised over them."""

    logprobs: dict[str, float]
    method: str

    @property
    def probs(self) -> dict[str, float]:
        finite = {k: v for k, v in self.logprobs.items() if v is not None and math.isfinite(v)}
        if not finite:
            return {k: 1.0 / len(self.logprobs) for k in self.logprobs}
        top = max(finite.values())
        weights = {k: math.exp(v - top) if k in finite else 0.0 for k, v in self.logprobs.items()}
        total = sum(weights.values())
        return {k: w / total for k, w in weights.items()}


def sample_seed(seed: int, index: int) -> int:
    """Seed of the index-th sample: independent of how many samples are asked at once."""
    return int(content_hash({"seed": seed, "index": index}, 12), 16) % (2**31 - 1)


class ChatModel(ABC):
    backend: str = "abstract"

    def __init__(self, spec: str, identity: dict[str, Any], cache: CallCache | None = None):
        self.spec = spec
        self.identity = identity  # what makes answers of this model differ from another's
        self._cache = cache

    @property
    def cache(self) -> CallCache:
        return self._cache if self._cache is not None else default_cache()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "backend": self.backend, **self.identity}

    # ---- public API -------------------------------------------------------------------------------
    def sample(self, prompts: Sequence[Messages], n: int = 1, temperature: float = 1.0, max_tokens: int = 64,
               seed: int = 0) -> list[list[str]]:
        """``n`` completions per prompt. Sample ``i`` of a prompt has its own seed, so asking for more
        samples later reuses the first ones from the cache."""
        requests = [
            {"model": self.identity, "messages": list(messages), "temperature": float(temperature),
             "max_tokens": int(max_tokens), "seed": sample_seed(seed, i)}
            for messages in prompts for i in range(n)
        ]
        answers = self.cache.cached_call("sample", requests, self._sample, flush_every=self.flush_every)
        return [answers[j * n:(j + 1) * n] for j in range(len(prompts))]

    def score_options(self, prompts: Sequence[Messages], options: Sequence[str],
                      whole_word: bool = False) -> list[OptionScore]:
        """Log-probability of each option as the start of the answer (multi-token options as whole
        sequences). With ``whole_word`` the option must also end there (the next token does not continue
        the word), so that "Safe" does not also count the answers "Safety" or "Safer"."""
        extra = {"whole_word": True} if whole_word else {}
        requests = [{"model": self.identity, "messages": list(m), "options": list(options), **extra}
                    for m in prompts]
        answers = self.cache.cached_call("options", requests, self._option_logprobs, flush_every=self.flush_every)
        return [OptionScore(logprobs=a["logprobs"], method=a["method"]) for a in answers]

    def expected_number(self, prompts: Sequence[Messages], low: int = 0, high: int = 100) -> list[NumberScore]:
        requests = [{"model": self.identity, "messages": list(m), "low": low, "high": high} for m in prompts]
        answers = self.cache.cached_call("number", requests, self._number_distribution,
                                         flush_every=self.flush_every)
        return [number_score(a["distribution"], a["method"]) for a in answers]

    # how many computed answers are saved at a time: small enough to lose little on a crash
    flush_every: int = 64

    # ---- backend primitives -------------------------------------------------------------------------
    @abstractmethod
    def _sample(self, requests: list[dict]) -> list[str]: ...

    @abstractmethod
    def _option_logprobs(self, requests: list[dict]) -> list[dict]: ...

    @abstractmethod
    def _number_distribution(self, requests: list[dict]) -> list[dict]: ...


def number_score(distribution: dict, method: str) -> NumberScore:
    dist = {int(k): float(v) for k, v in distribution.items()}
    mass = sum(dist.values())
    expected = sum(k * v for k, v in dist.items()) / mass if mass > 0 else None
    return NumberScore(expected=expected, mass=mass, method=method, distribution=dist)

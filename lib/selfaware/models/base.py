"""The one interface every backend speaks.

A backend implements four batch primitives on plain request dicts (so that they can be cached):
``_sample``, ``_option_logprobs``, ``_number_distribution`` and ``_continuation_logprobs`` (and a local
model a fifth, ``_hidden_states``). The public
methods build the requests, route them through the content-addressed cache and turn answers into friendly
values. A backend that cannot compute a primitive exactly raises ``ModelNotAvailable`` saying why, rather
than answering with an estimate under the same name.
"""

from __future__ import annotations

import base64
import contextlib
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from .. import context, settings
from ..cache import CallCache, content_hash, default_cache
from ..errors import ModelNotAvailable

if TYPE_CHECKING:
    import numpy as np

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

    # ---- progress over a whole public call -------------------------------------------------------------
    # a call computing at least this many answers shows its bar at once; a smaller one only once it has
    # run PROGRESS_AFTER seconds (a few slow answers, such as 24 code answers of 160 tokens, take minutes)
    PROGRESS_FROM = 50
    PROGRESS_AFTER = 5.0
    _bar = None  # the bar of the call being computed: the backend advances it (``_advance``) as answers come

    @property
    def label(self) -> str:
        """How the model is named on its progress bar."""
        return self.spec

    @contextlib.contextmanager
    def _progress(self, what: str):
        """Around one public call: yields what ``cached_call`` tells how many answers it will compute, which
        opens a bar of that length (in the terminal's live line and in run.log); the bar closes after."""
        def computing(missing: int) -> None:
            from tqdm.auto import tqdm

            show = settings.current().progress and missing > 0
            self._bar = tqdm(total=missing, desc=f"{self.label} {what}", disable=not show, leave=False,
                             delay=0 if missing >= self.PROGRESS_FROM else self.PROGRESS_AFTER,
                             file=context.current().log)
        try:
            with context.current().timed("sampling" if what == "sample" else "scoring", self.label):
                yield computing
        finally:
            bar, self._bar = self._bar, None
            if bar is not None:
                if not bar.disable and time.time() - bar.start_t >= bar.delay:  # a bar held back stays unshown
                    bar.refresh()  # its last count drawn (tqdm skips draws that come fast), then cleared
                bar.close()

    def _advance(self, answers: int) -> None:
        if self._bar is not None:
            self._bar.update(answers)

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
        with self._progress("sample") as computing:
            answers = self.cache.cached_call("sample", requests, self._sample, flush_every=self.flush_every,
                                             computing=computing)
        return [answers[j * n:(j + 1) * n] for j in range(len(prompts))]

    def score_options(self, prompts: Sequence[Messages], options: Sequence[str],
                      whole_word: bool = False) -> list[OptionScore]:
        """Log-probability of each option as the start of the answer (multi-token options as whole
        sequences). With ``whole_word`` the option must also end there (the next token does not continue
        the word), so that "Safe" does not also count the answers "Safety" or "Safer"."""
        extra = {"whole_word": True} if whole_word else {}
        requests = [{"model": self.identity, "messages": list(m), "options": list(options), **extra}
                    for m in prompts]
        with self._progress("options") as computing:
            answers = self.cache.cached_call("options", requests, self._option_logprobs,
                                             flush_every=self.flush_every, computing=computing)
        return [OptionScore(logprobs=a["logprobs"], method=a["method"]) for a in answers]

    def expected_number(self, prompts: Sequence[Messages], low: int = 0, high: int = 100) -> list[NumberScore]:
        requests = [{"model": self.identity, "messages": list(m), "low": low, "high": high} for m in prompts]
        with self._progress("numbers") as computing:
            answers = self.cache.cached_call("number", requests, self._number_distribution,
                                             flush_every=self.flush_every, computing=computing)
        return [number_score(a["distribution"], a["method"]) for a in answers]

    def score_continuations(self, prompts: Sequence[Messages], continuations: Sequence[Sequence[str]],
                            assistant_prefix: str | Sequence[str] | None = None,
                            first_tokens: int | None = None) -> list[list[float]]:
        """For each prompt, the log-probability of each of its continuations as the assistant's answer:
        the sum of the log-probabilities of the continuation's tokens, each given the prompt (chat template
        and generation prompt included), ``assistant_prefix`` and the continuation's tokens before it.

        ``continuations[i]`` are prompt i's texts. ``assistant_prefix`` (one text for every prompt, or one
        per prompt) is assistant text already written: it is scored by nothing, only conditioned on. It is
        tokenized on its own after the generation prompt, and a continuation is the tokens that follow it
        in the tokenization of prefix + continuation (so that a continuation that merges with the prefix's
        last characters is scored as the model would write it). ``first_tokens`` scores only the first N
        tokens of each continuation (how the start of an answer compares with the start of another).

        Exact on the local backend and on a server that scores given tokens (vLLM); an API that only
        returns log-probabilities of the tokens it samples (OpenAI, Fireworks chat) cannot, and says so."""
        kind, requests = self.continuation_requests(prompts, continuations, assistant_prefix, first_tokens)
        # one request is a few forward tokens: saved in larger chunks than the other calls (the chunk is
        # also the batching unit of the local backend, whose numbers depend on which rows share a batch)
        with self._progress("continuations") as computing:
            answers = self.cache.cached_call(kind, requests, self._continuation_logprobs,
                                             flush_every=max(self.flush_every, 256), computing=computing)
        return [[float(v) for v in answer] for answer in answers]

    def hidden_states(self, prompts: Sequence[Messages], layers: Sequence[int] | None = None) -> list["np.ndarray"]:
        """For each prompt (chat template and generation prompt included), the residual stream at its last
        token after each decoder layer of ``layers`` (0-based; None: every layer), as a float32 array of
        shape (layers, hidden size): what the model holds just before it writes its answer. Kept in the call
        cache in float16, so a rerun reads them back and computes nothing. Local models only."""
        import numpy as np

        wanted = None if layers is None else [int(layer) for layer in layers]
        requests = [{"model": self.identity, "messages": list(m), "layers": wanted, "position": "last"}
                    for m in prompts]
        with self._progress("activations") as computing:
            answers = self.cache.cached_call("hidden_states", requests, self._hidden_states,
                                             flush_every=self.flush_every, computing=computing)
        return [np.frombuffer(base64.b64decode(a["data"]), dtype=a["dtype"]).reshape(a["shape"]).astype(np.float32)
                for a in answers]

    def continuation_requests(self, prompts: Sequence[Messages], continuations: Sequence[Sequence[str]],
                              assistant_prefix: str | Sequence[str] | None = None,
                              first_tokens: int | None = None) -> tuple[str, list[dict]]:
        """The cache kind and requests of a ``score_continuations`` call with these arguments: what names
        its answers (an RL run names its reward by them)."""
        if isinstance(assistant_prefix, str) or assistant_prefix is None:
            prefixes = [assistant_prefix or ""] * len(prompts)
        else:
            prefixes = list(assistant_prefix)
        if len(prefixes) != len(prompts) or len(continuations) != len(prompts):
            raise ValueError(f"score_continuations: {len(prompts)} prompts, {len(continuations)} lists of "
                             f"continuations and {len(prefixes)} assistant prefixes: one of each per prompt")
        requests = [{"model": self.identity, "messages": list(m), "continuations": [str(c) for c in conts],
                     **({"assistant_prefix": prefix} if prefix else {}),
                     **({"first_tokens": int(first_tokens)} if first_tokens is not None else {})}
                    for m, conts, prefix in zip(prompts, continuations, prefixes)]
        return self._continuation_requests(requests)

    def _continuation_requests(self, requests: list[dict]) -> tuple[str, list[dict]]:
        """The cache kind and requests of a ``score_continuations`` call: by default the texts as given;
        a backend that computes on token ids it knows may key by them instead."""
        return "continuations", requests

    # how many computed answers are saved at a time: small enough to lose little on a crash
    flush_every: int = 64

    # ---- backend primitives -------------------------------------------------------------------------
    @abstractmethod
    def _sample(self, requests: list[dict]) -> list[str]: ...

    @abstractmethod
    def _option_logprobs(self, requests: list[dict]) -> list[dict]: ...

    @abstractmethod
    def _number_distribution(self, requests: list[dict]) -> list[dict]: ...

    def _continuation_logprobs(self, requests: list[dict]) -> list[list[float]]:
        """Per request, the summed log-probability of each continuation (see ``score_continuations``)."""
        raise ModelNotAvailable(f"{self.spec}: the {self.backend} backend cannot score given continuations")

    def _hidden_states(self, requests: list[dict]) -> list[dict]:
        """Per request, its activations encoded for the cache (see ``hidden_states``)."""
        raise ModelNotAvailable(f"{self.spec}: the {self.backend} backend does not expose its activations "
                                f"(a local model does)")


def number_score(distribution: dict, method: str) -> NumberScore:
    dist = {int(k): float(v) for k, v in distribution.items()}
    mass = sum(dist.values())
    expected = sum(k * v for k, v in dist.items()) / mass if mass > 0 else None
    return NumberScore(expected=expected, mass=mass, method=method, distribution=dist)

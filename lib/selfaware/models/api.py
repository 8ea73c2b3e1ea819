"""API backends: OpenAI, Fireworks and any server speaking the OpenAI chat API (vLLM, SGLang, TGI).

All three send the same chat-completions request; they differ in client, key and defaults. Every batch
runs as asyncio tasks under a per-backend concurrency limit. Retries are ours, not the SDK's
(``max_retries=0``), so that they are bounded, counted, and honour ``Retry-After``.

Scores: where the server can score given continuations (vLLM: a ``/tokenize`` endpoint and
``prompt_logprobs``), every option and every number is scored as a whole continuation, exactly as the local
backend does (method ``"exact"``, see ``models.served``). Otherwise option probabilities and 0-100
distributions come from the first answer token's ``top_logprobs`` (method ``"top_logprobs"``); where the
server gives none, or where the first tokens show a tokenizer that writes numbers one digit per token (so
that the first token of "22" is "2"), from counting ``FALLBACK_SAMPLES`` sampled answers (method
``"sampled"``). Every answer records its method.

Given continuations (``score_continuations``) are scored only where the server scores given tokens (vLLM:
``/tokenize`` and ``prompt_logprobs``), exactly. The OpenAI and Fireworks chat APIs return log-probabilities
of the tokens the model samples, never of a text it is handed, so these backends refuse with one line
rather than estimate the score from samples under the same name.

Keys are read from the environment at the first call, live only inside the client of one batch, and are
never part of a cache key, an answer, a repr or an error message.

Tuning knobs (``selfaware.settings``; their environment variables, read at each batch, give the defaults):
  SELFAWARE_API_CONCURRENCY    requests in flight per backend (default 32 OpenAI, 16 Fireworks, 64 compatible)
  SELFAWARE_API_TIMEOUT        seconds per request (default 60)
  SELFAWARE_API_MAX_ATTEMPTS   attempts per request, first one included (default 8)
  SELFAWARE_API_BACKOFF_BASE   first back-off in seconds, doubled each retry, with jitter (default 1)
  SELFAWARE_API_BACKOFF_MAX    longest single wait in seconds (default 60)
  SELFAWARE_API_TOTAL_SECONDS  give up on a request after this long, waits included (default 900)
  SELFAWARE_PROGRESS           0 hides progress bars
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import email.utils
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit


from .. import context, settings
from ..errors import ModelCallFailed, ModelNotAvailable
from . import ModelSpec
from .base import ChatModel, sample_seed

SCORING_VERSION = 2  # bump when a change here changes what a scoring answer contains
FALLBACK_SAMPLES = 50  # answers sampled per prompt when a model gives no log-probabilities
RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}

def _count(name: str, amount: int = 1) -> None:
    """What the run's API calls went through (attempts, retries, faults): kept in the run context."""
    context.current().count_api(name, amount)


@dataclass(frozen=True)
class RetryPolicy:
    concurrency: int
    request_timeout: float
    max_attempts: int
    backoff_base: float
    backoff_max: float
    total_seconds: float

    @classmethod
    def from_env(cls, default_concurrency: int) -> "RetryPolicy":
        """The runtime settings' policy (``selfaware.settings``: SELFAWARE_API_* give the defaults)."""
        now = settings.current()
        return cls(concurrency=now.api_concurrency or max(1, default_concurrency),
                   request_timeout=now.api_timeout, max_attempts=now.api_max_attempts,
                   backoff_base=now.api_backoff_base, backoff_max=now.api_backoff_max,
                   total_seconds=now.api_total_seconds)

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential back-off with jitter (so that many clients do not retry in lockstep); a server's
        Retry-After is a floor, never shortened."""
        exponential = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        delay = exponential * (0.5 + random.random() / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        return delay


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a server asked for: ``retry-after-ms``, or ``retry-after`` in seconds or as an HTTP date."""
    if headers is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _sdk_error_classes() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(connection-or-timeout errors, HTTP status errors) of whichever SDKs are installed."""
    connection, status = [], []
    for module_name in ("openai", "fireworks"):
        with contextlib.suppress(ImportError):
            module = __import__(module_name)
            connection.append(module.APIConnectionError)
            status.append(module.APIStatusError)
    return tuple(connection), tuple(status)


def classify_error(error: BaseException) -> tuple[str | None, float | None]:
    """(reason to retry, server-requested wait) or (None, None) for an error that retrying cannot fix."""
    connection, status = _sdk_error_classes()
    if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", None
    if connection and isinstance(error, connection):
        return ("timeout" if "Timeout" in type(error).__name__ else "connection"), None
    if status and isinstance(error, status):
        code = getattr(error, "status_code", None)
        if code in RETRYABLE_STATUS:
            return f"http_{code}", retry_after_seconds(getattr(getattr(error, "response", None), "headers", None))
    return None, None


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
            if len(secret) >= 8:  # a tail of a key is still a part of it
                text = text.replace(secret[-8:], "[redacted]")
    return text


def run_coroutine_sync(make_coroutine: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine to completion from synchronous code. Inside Jupyter a loop is already running in
    this thread, so the coroutine gets a fresh loop in a worker thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="selfaware-api") as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def _strip_userinfo(url: str) -> str:
    """A base URL without ``user:password@``, so credentials in a URL never reach the cache key."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


_NUMBER = re.compile(r"^\s*(\d+)")


def _normalise(text: str) -> str:
    return text.strip().strip("\"'*`.:").strip().lower()


def match_option(text: str, options: list[str], whole_word: bool = False) -> str | None:
    """The option an answer (or an answer's first token) stands for: the longest option the normalised text
    starts with; or, for a first token shorter than the options, the one option it is a prefix of (not with
    ``whole_word``: a token that is only the start of an option may go on to be another word)."""
    answer = _normalise(text)
    if not answer:
        return None
    # an option counts when the answer is it, or starts with it and then stops being a word ("B) ...",
    # "Bold because ..."), so that "Bold" is not read as option "B"
    starting = [o for o in options if (norm := _normalise(o)) and answer.startswith(norm)
                and (len(answer) == len(norm) or not answer[len(norm)].isalnum())]
    if starting:
        return max(starting, key=lambda o: len(_normalise(o)))
    if whole_word:
        return None
    prefix_of = [o for o in options if _normalise(o).startswith(answer)]
    return prefix_of[0] if len(prefix_of) == 1 else None


def first_token_alternatives(choice: dict) -> list[tuple[str, float]] | None:
    """The (token, logprob) alternatives at the first answer position, from either log-probability format
    (OpenAI's ``content`` list, or the legacy ``top_logprobs`` list of dicts some servers still send)."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return None
    content = logprobs.get("content")
    if content:
        first = content[0] or {}
        alternatives = [(t["token"], float(t["logprob"])) for t in first.get("top_logprobs") or []]
        if not alternatives and first.get("token") is not None:
            alternatives = [(first["token"], float(first["logprob"]))]
        return alternatives or None
    legacy = logprobs.get("top_logprobs")
    if legacy and isinstance(legacy[0], dict):
        return [(token, float(lp)) for token, lp in legacy[0].items()] or None
    return None


def splits_digits(alternatives: list[tuple[str, float]], high: int) -> bool:
    """Whether the first-token alternatives show a tokenizer that writes numbers one digit per token
    (SmolLM2, Qwen2.5): numbers above 9 are asked for, digits are among the alternatives, and none of them
    is longer than one digit. A tokenizer with multi-digit tokens (GPT-4o, Llama 3) offers "50" or "70"."""
    digits = [token.strip() for token, _ in alternatives if token.strip().isdigit()]
    return high >= 10 and bool(digits) and all(len(d) == 1 for d in digits)


class _IncrementalSaver:
    """Writes answers to the call cache as they arrive, a second's worth at a time, so that a killed run
    loses at most the last second of paid answers instead of the whole chunk the cache handed us. The
    cache writes the chunk again when it completes (same keys: a harmless overwrite)."""

    def __init__(self, call_cache, kind: str, every_seconds: float):
        self.cache, self.kind, self.every_seconds = call_cache, kind, every_seconds
        self.pending: list[tuple[str, Any]] = []
        self.last_flush = time.monotonic()

    def add(self, request: dict, answer: Any) -> None:
        # the key exactly as CallCache.cached_call computes it
        self.pending.append((self.cache.key(self.kind, request), answer))
        if time.monotonic() - self.last_flush >= self.every_seconds:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.cache.put_many(self.kind, self.pending)
            self.pending = []
        self.last_flush = time.monotonic()


class ApiChatModel(ChatModel):
    """Shared machinery; subclasses name the client, key variable and defaults."""

    backend = "api"
    key_variable: str | None = None
    base_url_variable: str | None = None
    default_concurrency = 32
    top_logprobs = 20
    # The cache hands us this many requests at a time. Large, so that requests stay pipelined (a chunk
    # boundary waits for the chunk's slowest request); a crash still loses little, because answers are
    # also saved as they arrive (``_IncrementalSaver``).
    flush_every = 2048
    save_every_seconds = 1.0

    def __init__(self, spec: ModelSpec):
        self.parsed = spec
        identity = {"backend": spec.backend, "model": spec.name, "scoring": SCORING_VERSION,
                    "top_logprobs": self.top_logprobs, "fallback_samples": FALLBACK_SAMPLES}
        if spec.identity:  # the served model's content names it; the address is only where it is served
            identity["served"] = spec.identity
        elif spec.base_url:
            identity["base_url"] = _strip_userinfo(spec.base_url)
        super().__init__(str(spec), identity)
        self._logprobs_unsupported = False

    # ---- keys and clients -----------------------------------------------------------------------------
    def _api_key(self) -> str:
        key = os.environ.get(self.key_variable or "", "")
        if not key:
            raise ModelNotAvailable(
                f"{self.spec} needs the environment variable {self.key_variable} (an API key). Set it to run "
                f"at paper scale, or use the offline profile: `make book` runs everything on the embedded model "
                f"(local:smollm2-135m) with no key.")
        return key

    def _secrets(self) -> list[str]:
        return [os.environ.get(self.key_variable or "", "")]

    def _make_client(self, policy: RetryPolicy):  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.parsed.name

    # ---- the batch engine -----------------------------------------------------------------------------
    def _run_batch(self, kind: str, requests: list[dict], jobs: list[Callable[[Any], Awaitable[Any]]]) -> list[Any]:
        """Run ``job(client)`` for every job concurrently, each under the retry policy; answers in order."""
        self._api_key()  # fail with the clear message before any task starts
        policy = RetryPolicy.from_env(self.default_concurrency)
        bar = self._bar
        saver = _IncrementalSaver(self.cache, kind, self.save_every_seconds)

        async def run_all() -> list[Any]:
            client = self._make_client(policy)
            limit = asyncio.Semaphore(policy.concurrency)

            async def run_one(job, request):
                async with limit:
                    answer = await self._with_retries(lambda: job(client), policy)
                saver.add(request, answer)
                if bar is not None:
                    bar.update(1)
                return answer

            try:
                return await asyncio.gather(*(run_one(job, request) for job, request in zip(jobs, requests)))
            finally:
                saver.flush()
                with contextlib.suppress(Exception):
                    await client.close()

        return run_coroutine_sync(run_all)

    async def _with_retries(self, attempt_call: Callable[[], Awaitable[Any]], policy: RetryPolicy) -> Any:
        started = time.monotonic()
        for attempt in range(1, policy.max_attempts + 1):
            try:
                # the SDK has its own timeout; this one also bounds a server that trickles bytes forever
                answer = await asyncio.wait_for(attempt_call(), policy.request_timeout + 5)
                _count("requests_ok")
                return answer
            except Exception as error:  # noqa: BLE001 - classified below; anything else is re-raised clean
                reason, server_wait = classify_error(error)
                elapsed = time.monotonic() - started
                if reason is None:
                    raise self._clean_error(error, attempt) from None
                _count(f"retry_{reason}")
                delay = policy.backoff(attempt, server_wait)
                if attempt == policy.max_attempts or elapsed + delay > policy.total_seconds:
                    _count("requests_failed")
                    raise self._clean_error(error, attempt, reason) from None
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _clean_error(self, error: BaseException, attempts: int, reason: str | None = None) -> Exception:
        """Our own error, with the SDK's message (never its request, which carries the key) redacted."""
        if isinstance(error, (ModelNotAvailable,)):
            return error
        detail = redact(f"{type(error).__name__}: {error}", self._secrets())[:500]
        if reason:
            return ModelCallFailed(f"{self.spec}: gave up after {attempts} attempt(s), last failure {reason} "
                                   f"({detail})")
        return ModelCallFailed(f"{self.spec}: request failed and retrying cannot fix it ({detail})")

    async def _chat(self, client, **body) -> dict:
        response = await client.chat.completions.create(model=self.parsed.name, **body)
        return response.model_dump() if hasattr(response, "model_dump") else dict(response)

    # ---- primitives -----------------------------------------------------------------------------------
    def _sample(self, requests: list[dict]) -> list[str]:
        def job(request):
            async def call(client):
                answer = await self._chat(client, messages=request["messages"],
                                          temperature=request["temperature"],
                                          max_tokens=request["max_tokens"], seed=request["seed"], n=1)
                return answer["choices"][0]["message"].get("content") or ""
            return call

        return self._run_batch("sample", requests, [job(r) for r in requests])

    def _option_logprobs(self, requests: list[dict]) -> list[dict]:
        def job(request):
            async def call(client):
                whole_word = bool(request.get("whole_word"))
                alternatives = await self._first_token_alternatives(client, request["messages"])
                if alternatives is not None:
                    mass: dict[str, float] = {o: 0.0 for o in request["options"]}
                    for token, logprob in alternatives:
                        option = match_option(token, request["options"], whole_word)
                        if option is not None:
                            mass[option] += math.exp(logprob)
                    return {"logprobs": {o: math.log(p) if p > 0 else float("-inf") for o, p in mass.items()},
                            "method": "top_logprobs"}
                answers = await self._fallback_answers(client, request["messages"],
                                                       max_tokens=max(8, *(len(o) for o in request["options"])))
                counts = Counter(match_option(a, request["options"], whole_word) for a in answers)
                return {"logprobs": {o: math.log(counts[o] / len(answers)) if counts[o] else float("-inf")
                                     for o in request["options"]},
                        "method": "sampled", "samples": len(answers)}
            return call

        return self._run_batch("options", requests, [job(r) for r in requests])

    def _number_distribution(self, requests: list[dict]) -> list[dict]:
        def job(request):
            low, high = request["low"], request["high"]

            def in_range(text: str) -> int | None:
                found = _NUMBER.match(text)
                return int(found.group(1)) if found and low <= int(found.group(1)) <= high else None

            async def call(client):
                alternatives = await self._first_token_alternatives(client, request["messages"])
                distribution: Counter = Counter()
                why_sampled = "no_logprobs"
                if alternatives is not None and splits_digits(alternatives, high):
                    # the first token of "22" is "2": the first token alone cannot say which number follows
                    _count("digit_split_sampled")
                    alternatives, why_sampled = None, "digit_split"
                if alternatives is not None:
                    for token, logprob in alternatives:
                        # a first token is a whole number only if it is all digits (no "1" of "15")
                        if token.strip().isdigit() and (number := in_range(token)) is not None:
                            distribution[number] += math.exp(logprob)
                    return {"distribution": {str(k): v for k, v in sorted(distribution.items())},
                            "method": "top_logprobs"}
                answers = await self._fallback_answers(client, request["messages"], max_tokens=6)
                for answer in answers:
                    if (number := in_range(answer)) is not None:
                        distribution[number] += 1 / len(answers)
                return {"distribution": {str(k): v for k, v in sorted(distribution.items())},
                        "method": "sampled", "samples": len(answers), "why": why_sampled}
            return call

        return self._run_batch("number", requests, [job(r) for r in requests])

    def _continuation_logprobs(self, requests: list[dict]) -> list[list[float]]:
        raise ModelNotAvailable(
            f"{self.spec} cannot score given continuations: its chat API returns log-probabilities only of the "
            f"tokens the model samples, not of a text it is given; score them with a local model or a vLLM "
            f"server (inference: vllm)")

    async def _first_token_alternatives(self, client, messages) -> list[tuple[str, float]] | None:
        """Top alternatives for the first answer token, or None if this model gives no log-probabilities."""
        if self._logprobs_unsupported:
            return None
        try:
            answer = await self._chat(client, messages=messages, max_tokens=1, temperature=0, seed=0,
                                      logprobs=True, top_logprobs=self.top_logprobs)
        except Exception as error:
            if getattr(error, "status_code", None) == 400 and "logprob" in str(error).lower():
                self._logprobs_unsupported = True
                _count("logprobs_unsupported")
                return None
            raise
        alternatives = first_token_alternatives(answer["choices"][0])
        if alternatives is None:
            self._logprobs_unsupported = True
            _count("logprobs_unsupported")
        return alternatives

    async def _fallback_answers(self, client, messages, max_tokens: int) -> list[str]:
        # one request with n answers: the prompt is paid once, and the seed makes it repeatable where the
        # server honours seeds
        answer = await self._chat(client, messages=messages, max_tokens=max_tokens, temperature=1.0,
                                  seed=sample_seed(0, 0), n=FALLBACK_SAMPLES)
        return [c["message"].get("content") or "" for c in answer["choices"]]


class OpenAIChatModel(ApiChatModel):
    backend = "openai"
    key_variable = "OPENAI_API_KEY"
    base_url_variable = "OPENAI_BASE_URL"
    default_concurrency = 32
    top_logprobs = 20

    def _make_client(self, policy: RetryPolicy):
        import openai

        return openai.AsyncOpenAI(api_key=self._api_key(), base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                  max_retries=0, timeout=policy.request_timeout)


class FireworksChatModel(ApiChatModel):
    backend = "fireworks"
    key_variable = "FIREWORKS_API_KEY"
    base_url_variable = "FIREWORKS_BASE_URL"
    default_concurrency = 16
    top_logprobs = 5  # Fireworks' documented ceiling for chat top_logprobs

    def _make_client(self, policy: RetryPolicy):
        import fireworks

        # With FIREWORKS_BASE_URL unset the SDK sends chat to https://api.fireworks.ai/inference/v1/...;
        # with it set (tests, proxies) to <base>/v1/chat/completions.
        return fireworks.AsyncFireworks(api_key=self._api_key(),
                                        base_url=os.environ.get("FIREWORKS_BASE_URL") or None,
                                        max_retries=0, timeout=policy.request_timeout)


class OpenAICompatibleChatModel(ApiChatModel):
    """vLLM, SGLang, TGI, llama.cpp's server...: a key is optional (OPENAI_COMPATIBLE_API_KEY if the server
    was started with one)."""

    backend = "openai-compatible"
    key_variable = "OPENAI_COMPATIBLE_API_KEY"
    default_concurrency = 64
    top_logprobs = 20  # vLLM's default --max-logprobs

    def _api_key(self) -> str:
        return os.environ.get(self.key_variable, "") or "no-key"

    def _make_client(self, policy: RetryPolicy):
        import openai

        return openai.AsyncOpenAI(api_key=self._api_key(), base_url=self.parsed.base_url, max_retries=0,
                                  timeout=policy.request_timeout)

    # ---- exact scoring where the server scores given continuations (vLLM) ------------------------------
    _vocabulary: dict | None = None  # {"digit": ids, "word": ids} once probed; {} if the server cannot

    @property
    def _server_root(self) -> str:
        return self.parsed.base_url.rstrip("/").removesuffix("/v1")

    def _exact_vocabulary(self) -> dict | None:
        """The token classes exact scoring needs, read once from the server; None if it cannot score
        continuations (no ``/tokenize``, or whole distributions refused: vLLM without --max-logprobs -1)."""
        if self._vocabulary is None:
            self._vocabulary = self._ask_server_once("vocabulary", self._probe_vocabulary)
        return self._vocabulary or None

    def _ask_server_once(self, question: str, probe: Callable[[Any], Awaitable[Any]]) -> Any:
        """A probe's answer shared, for the run, by every model object that names this server and model:
        the vocabulary alone is ~49k entries, too costly to fetch again for each new object."""
        key = (question, self._server_root, self.parsed.name)
        return context.current().server_answer(key, lambda: self._probe_once(probe))

    def _probe_once(self, probe: Callable[[Any], Awaitable[Any]]) -> Any:
        """One probe of the server (``probe(client)``), outside any batch, with the usual retries."""
        policy = RetryPolicy.from_env(1)

        async def ask():
            client = self._make_client(policy)
            try:
                return await self._with_retries(lambda: probe(client), policy)
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

        return run_coroutine_sync(ask)

    async def _probe_vocabulary(self, client) -> dict:
        import openai

        try:
            await self._tokenize(client, prompt="0")
            # every token's text, from the distribution at one position of a two-token prompt
            answer = await client.completions.create(model=self.parsed.name, prompt=[0, 0], max_tokens=1,
                                                     extra_body={"prompt_logprobs": -1})
        except openai.APIStatusError as error:
            if error.status_code in (400, 404, 405, 422):
                _count("exact_scoring_unsupported")
                return {}
            raise
        texts = {int(t): e.get("decoded_token") or "" for t, e in answer.model_dump()["choices"][0]["prompt_logprobs"][1].items()}
        # the local backend's classes (LocalChatModel._continuation_ids), from the server's token texts
        return {"digit": frozenset(t for t, text in texts.items() if text[:1].isdigit()),
                "word": frozenset(t for t, text in texts.items() if text[:1].isalnum())}

    async def _tokenize(self, client, **body) -> list[int]:
        answer = await client.post(f"{self._server_root}/tokenize", body={"model": self.parsed.name, **body},
                                   cast_to=object)
        return list(answer["tokens"])

    async def _answer_tokens(self, client, text: str) -> list[int]:
        """An answer's token ids as the local backend encodes it (no special tokens); the same few options
        and numbers come back for every prompt, so they are asked once per model."""
        known = self.__dict__.setdefault("_answer_token_ids", {})
        if text not in known:
            known[text] = await self._tokenize(client, prompt=text, add_special_tokens=False)
        return known[text]

    async def _exact_scores(self, client, messages, sequences_text: list[str], class_name: str | None,
                            prune: bool) -> list[tuple[float | None, float]]:
        from .served import TOP, score_continuations

        prompt_ids = await self._tokenize(client, messages=messages, add_generation_prompt=True)
        sequences = await asyncio.gather(*(self._answer_tokens(client, text) for text in sequences_text))
        members = self._vocabulary[class_name] if class_name else None

        async def query(node, want_edges, want_full):
            extra = {"return_tokens_as_token_ids": True, **({"prompt_logprobs": 1} if want_edges else {})}
            answer = await client.completions.create(model=self.parsed.name, prompt=prompt_ids + list(node),
                                                     max_tokens=1, temperature=0, logprobs=-1 if want_full else TOP,
                                                     extra_body=extra)
            choice = answer.model_dump()["choices"][0]
            top = {int(token.rpartition(":")[2]): float(lp)
                   for token, lp in choice["logprobs"]["top_logprobs"][0].items()}
            edges = None
            if want_edges:
                positions = choice["prompt_logprobs"][len(prompt_ids):]
                edges = [float(entry[str(token)]["logprob"]) for entry, token in zip(positions, node)]
            return top, edges

        return await score_continuations(query, sequences, [members] * len(sequences), prune)

    def _tokenizes(self) -> bool:
        """Whether the server renders and tokenizes prompts (``/tokenize``), read once: scoring given
        continuations needs it, and their log-probabilities (``prompt_logprobs``) come with it on vLLM."""
        if self.__dict__.get("_has_tokenize") is None:
            self._has_tokenize = self._ask_server_once("tokenize", self._probe_tokenize)
        return self._has_tokenize

    async def _probe_tokenize(self, client) -> bool:
        import openai

        try:
            await self._tokenize(client, prompt="0")
        except openai.APIStatusError as error:
            if error.status_code in (400, 404, 405, 422):
                _count("continuation_scoring_unsupported")
                return False
            raise
        return True

    def _continuation_logprobs(self, requests: list[dict]) -> list[list[float]]:
        """One completions request per continuation: the prompt's token ids, the prefix's, then the
        continuation's, with the log-probability of every prompt token (``prompt_logprobs``); tokenized by the
        server exactly as the local backend tokenizes (``LocalChatModel._continuation_requests``)."""
        if not self._tokenizes():
            raise ModelNotAvailable(f"{self.spec} cannot score given continuations: the server has no /tokenize "
                                    f"endpoint (vLLM has), so the continuation's tokens cannot be known")

        async def tail_logprob(client, head: list[int], tail: list[int]) -> float:
            if not tail:
                return 0.0
            answer = await client.completions.create(model=self.parsed.name, prompt=head + tail, max_tokens=1,
                                                     temperature=0, extra_body={"prompt_logprobs": 1})
            positions = answer.model_dump()["choices"][0]["prompt_logprobs"][len(head):]
            return math.fsum(float(entry[str(token)]["logprob"]) for entry, token in zip(positions, tail))

        def job(request):
            async def call(client):
                head = await self._tokenize(client, messages=request["messages"], add_generation_prompt=True)
                text = request.get("assistant_prefix", "")
                prefix = await self._tokenize(client, prompt=text, add_special_tokens=False) if text else []
                whole = await asyncio.gather(*(self._tokenize(client, prompt=text + c, add_special_tokens=False)
                                               for c in request["continuations"]))
                tails = [ids[len(prefix):][:request.get("first_tokens")] for ids in whole]
                return list(await asyncio.gather(*(tail_logprob(client, head + prefix, t) for t in tails)))
            return call

        return self._run_batch("continuations", requests, [job(r) for r in requests])

    def _option_logprobs(self, requests: list[dict]) -> list[dict]:
        if not self._exact_vocabulary():
            return super()._option_logprobs(requests)

        def job(request):
            async def call(client):
                whole_word = bool(request.get("whole_word"))
                scores = await self._exact_scores(client, request["messages"], request["options"],
                                                  "word" if whole_word else None, prune=False)
                return {"logprobs": {option: logprob + (math.log(max(1e-12, 1.0 - mass)) if whole_word else 0.0)
                                     for option, (logprob, mass) in zip(request["options"], scores)},
                        "method": "exact"}
            return call

        return self._run_batch("options", requests, [job(r) for r in requests])

    def _number_distribution(self, requests: list[dict]) -> list[dict]:
        if not self._exact_vocabulary():
            return super()._number_distribution(requests)

        def job(request):
            async def call(client):
                numbers = list(range(request["low"], request["high"] + 1))
                scores = await self._exact_scores(client, request["messages"], [str(n) for n in numbers],
                                                  "digit", prune=True)
                distribution = {str(n): math.exp(logprob) * max(0.0, 1.0 - mass)
                                for n, (logprob, mass) in zip(numbers, scores) if logprob is not None}
                return {"distribution": distribution, "method": "exact"}
            return call

        return self._run_batch("number", requests, [job(r) for r in requests])


__all__ = ["FireworksChatModel", "OpenAIChatModel", "OpenAICompatibleChatModel", "RetryPolicy",
           "run_coroutine_sync"]

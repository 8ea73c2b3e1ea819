"""The run context: what one run of a page has asked, the choices it made and what it holds, in one object.

In place of module globals: the counters of model calls, cache hits and trainings; the statistics of API
requests (attempts, retries, faults); the run's cache mode and precision; the inference servers it holds
open; and its log stream, where the library's notices and progress bars go. Runtime settings the run does
not choose (threads, batch sizes, timeouts) come from :mod:`selfaware.settings`, whose environment
variables act only as defaults.

The log stream is standard error until the run diverts it (:meth:`RunContext.divert_log`, done by the
runner's runs): then it is the page's ``run.log``, and so are standard error and the logging stream
handlers, so that third-party warnings and bars stay out of the published page too; :meth:`restore_log`
puts them back.

There is one current context per process (a kernel runs one page; a test or a benchmark starts a fresh one
with :func:`begin`, which stops the previous one's servers and gives back its log). Threads that make API
calls on a run's behalf count into the same context. Process state stays outside it: the safety net that
kills every live vLLM process at interpreter exit (``selfaware.vllm``) serves all runs at once.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, TextIO

from . import settings as settings_module
from .errors import ConfigError

CACHE_MODES = ("rw", "replay", "off")


@dataclass
class Counters:
    """What this run asked of models: hits came from the cache, computed went to a model."""

    hits: int = 0
    computed: int = 0
    trainings: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    hits_by_kind: dict[str, int] = field(default_factory=dict)
    trainings_cached: int = 0  # trained models this run asked for and found already trained
    # wall seconds spent in each activity ("training", "sampling", "scoring"), by model: where a page's
    # time went (the rest is kernel start, imports, statistics, tables and figures)
    seconds: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"cache_hits": self.hits, "model_calls": self.computed, "trainings": self.trainings,
                "model_calls_by_kind": dict(self.by_kind), "cache_hits_by_kind": dict(self.hits_by_kind),
                "trainings_cached": self.trainings_cached,
                "seconds_by_activity": {activity: {model: round(seconds, 1) for model, seconds in by_model.items()}
                                        for activity, by_model in self.seconds.items()}}


@dataclass
class RunContext:
    counters: Counters = field(default_factory=Counters)
    # attempts, retries and faults seen on paid (API) backends, by name
    api_stats: Counter = field(default_factory=Counter)
    # None: the setting (SELFAWARE_CACHE_MODE / SELFAWARE_PRECISION, else their defaults)
    chosen_cache_mode: str | None = None
    chosen_precision: str | None = None
    # what servers said about themselves (an OpenAI-compatible server's vocabulary, whether it tokenizes),
    # by (question, server, model name): asked once per run however many model objects share the server
    server_answers: dict = field(default_factory=dict)
    # what the run holds open (its inference servers), closed by release(); and the groups of models those
    # servers answer (selfaware.vllm.ServedModels), which a later call of the same run reuses
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    servers: list = field(default_factory=list)
    _log: TextIO | None = field(default=None, repr=False)  # the diverted log; None: standard error
    _undo_log: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---- choices -----------------------------------------------------------------------------------
    @property
    def cache_mode(self) -> str:
        return self.chosen_cache_mode or settings_module.current().cache_mode

    def set_cache_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in CACHE_MODES:
            raise ConfigError(f"cache mode {mode!r} is not one of {', '.join(CACHE_MODES)}")
        self.chosen_cache_mode = mode

    @property
    def replay_only(self) -> bool:
        return self.cache_mode == "replay"

    # ---- counting ----------------------------------------------------------------------------------
    def count_calls(self, hits: int = 0, computed: int = 0, kind: str | None = None) -> None:
        with self._lock:
            self.counters.hits += hits
            self.counters.computed += computed
            if kind is not None and computed:
                self.counters.by_kind[kind] = self.counters.by_kind.get(kind, 0) + computed
            if kind is not None and hits:
                self.counters.hits_by_kind[kind] = self.counters.hits_by_kind.get(kind, 0) + hits

    def count_training(self, n: int = 1, cached: bool = False) -> None:
        """One training this run asked for: run now, or (``cached``) found already trained."""
        with self._lock:
            if cached:
                self.counters.trainings_cached += n
            else:
                self.counters.trainings += n

    @contextlib.contextmanager
    def timed(self, activity: str, model: str):
        """Charge the block's wall time to ``activity`` on ``model``. Only the outermost timed block of a
        thread counts: the reward scored inside an RL step is part of that training, not scoring too."""
        if getattr(_TIMING, "active", False):
            yield
            return
        _TIMING.active = True
        started = time.perf_counter()
        try:
            yield
        finally:
            _TIMING.active = False
            elapsed = time.perf_counter() - started
            with self._lock:
                by_model = self.counters.seconds.setdefault(activity, {})
                by_model[model] = by_model.get(model, 0.0) + elapsed

    def count_api(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.api_stats[name] += amount

    # ---- facts about servers -------------------------------------------------------------------------
    def server_answer(self, key: tuple, ask: Callable[[], Any]) -> Any:
        """The answer to ``ask()`` kept under ``key`` for this run: the first call asks, later ones reuse
        it. Two threads asking at once may both ask; the first answer kept is the one returned."""
        with self._lock:
            if key in self.server_answers:
                return self.server_answers[key]
        answer = ask()
        with self._lock:
            return self.server_answers.setdefault(key, answer)

    # ---- what the run holds open ----------------------------------------------------------------------
    def open_servers(self, starting: ContextManager) -> Any:
        """Enter ``starting`` (``selfaware.vllm.serve(...)``) for the rest of the run and keep what it
        yields (the models its servers answer) in :attr:`servers`; they stop at :meth:`release`."""
        served = self.resources.enter_context(starting)
        with self._lock:
            self.servers.append(served)
        return served

    def release(self) -> None:
        """Close what the run holds open: its servers stop. Done when the run finishes and when the next run
        starts (a page opened again in JupyterLab), so that no server outlives the run that started it."""
        with self._lock:
            self.servers = []
        self.resources.close()

    def _served(self) -> dict[str, list[str]]:
        """The model names each of the run's servers answers, by URL (no machine paths): for run.json."""
        served: dict[str, list[str]] = {}
        for group in self.servers:
            for url, names in group.record().items():
                served[url] = list(dict.fromkeys(served.get(url, []) + names))
        return served

    # ---- the log stream ------------------------------------------------------------------------------
    @property
    def log(self) -> TextIO:
        """Where the library's notices and progress bars go: the run's log file once diverted, else standard
        error as it is at this moment (the terminal, JupyterLab's, a test's capture)."""
        return self._log or sys.stderr

    def notice(self, message: str) -> None:
        """A line for the log, not the page: what the library did on the reader's behalf (a fallback taken, a
        server started), which the published notebook should not carry."""
        print(message, file=self.log, flush=True)

    def divert_log(self, path: Path) -> None:
        """Make ``path`` (appended to) the run's log, and point standard error and the logging stream
        handlers at it as well, so that what other libraries write (warnings, their own bars) lands there
        too. The runner's runs do this: none of it belongs in the executed notebook that becomes a page.
        :meth:`restore_log` undoes it; a second diversion first undoes the first."""
        self.restore_log()
        handle = open(path, "a", encoding="utf-8", buffering=1)
        undo = [_put_back(sys, "stderr", handle, sys.stderr)]
        sys.stderr = handle
        for handler in _stream_handlers():
            undo.append(_put_back(handler, "stream", handle, handler.stream))
            handler.setStream(handle)
        self._log, self._undo_log = handle, undo

    def restore_log(self) -> None:
        """Standard error and the handlers' streams as :meth:`divert_log` found them (each only where it
        still points at the log: what replaced it since is left alone), and the log file closed."""
        handle, undo = self._log, self._undo_log
        if handle is None:
            return
        self._log, self._undo_log = None, []
        for step in reversed(undo):
            step()
        handle.close()

    def reset_counts(self) -> None:
        """Zero the counters and API statistics (a run record counts from its start); choices and what
        servers said stay."""
        with self._lock:
            self.counters = Counters()
            self.api_stats = Counter()

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps of this context: the counts, the servers the run holds (the model names
        each answers, by URL; only when it holds any) and the effective settings."""
        with self._lock:
            counts = self.counters.as_dict()
            api = dict(self.api_stats)
        served = self._served()
        return {**counts, **({"api_requests": api} if api else {}), **({"servers": served} if served else {}),
                "settings": {**settings_module.recorded(), "cache_mode": self.cache_mode,
                             **({"precision": self.chosen_precision} if self.chosen_precision else {})}}


_CURRENT = RunContext()
_TIMING = threading.local()  # whether this thread is inside a timed block (RunContext.timed)


def _stream_handlers() -> list:
    """The logging handlers of every logger there is that write to a stream (standard error), not a file."""
    import logging

    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    handlers = {id(h): h for logger in loggers for h in getattr(logger, "handlers", [])}.values()
    return [h for h in handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]


def _put_back(owner: Any, attribute: str, diverted: TextIO, previous: TextIO) -> Callable[[], None]:
    """A step of :meth:`RunContext.restore_log`: ``owner.attribute`` back to ``previous`` if it is still
    ``diverted``."""
    def step() -> None:
        if getattr(owner, attribute) is diverted:
            setattr(owner, attribute, previous)
    return step


def current() -> RunContext:
    return _CURRENT


def begin() -> RunContext:
    """A fresh context for a new run (a test, a benchmark): the previous one's servers stop and its log is
    given back; its choices are not kept."""
    global _CURRENT
    _CURRENT.release()
    _CURRENT.restore_log()
    _CURRENT = RunContext()
    return _CURRENT

"""One content-addressed cache for every model call and every tuned model.

Key = SHA-256 of a canonical JSON document naming the backend, the exact model identity (base model plus
adapter content hash), the request (messages, options, sampling parameters) and the sample index.
Values are JSON. SQLite in WAL mode, one committed transaction per batch of answers, so a crash loses at
most the batch in flight and never corrupts what was written before.

Modes (the run context's cache mode, :func:`set_mode`; ``SELFAWARE_CACHE_MODE`` is its default):
  ``rw``      read, and write what was missing (default)
  ``replay``  read only; a miss raises :class:`CacheMiss` (proves a warm run makes no call)
  ``off``     neither read nor write

A damaged cache file (not a database, malformed pages) or one cut to 0 bytes is a one-line
:class:`CacheDamaged` that names the file and the fix; it is never silently taken for an empty cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import context
from .errors import CacheMiss, ConfigError, SelfAwareError
from .paths import cache_dir

MODES = context.CACHE_MODES


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_hash(obj: Any, length: int = 64) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


_OPENING = threading.Lock()
# A cache file of 0 bytes older than this was cut short (a copy or a full disk), not just being created by a
# process that has not written SQLite's header yet.
_EMPTY_FILE_GRACE_SECONDS = 60.0


class CacheDamaged(SelfAwareError):
    """The call cache file cannot be read as a database; the message names the file and what to do."""


def _damaged(path: Path, error: Exception) -> CacheDamaged | None:
    """The one-line error for a damaged database, or None when ``error`` is something else (busy, locked)."""
    text = str(error)
    if isinstance(error, sqlite3.OperationalError) and not any(w in text for w in ("malformed", "not a database")):
        return None
    return CacheDamaged(f"{path}: the call cache is damaged ({text}); move it aside (mv {path} {path}.damaged) and "
                        f"rerun: the answers it held are asked again, or put back a good copy")


def _reading(path: Path, action: Callable[[], Any]) -> Any:
    try:
        return action()
    except sqlite3.DatabaseError as error:
        damaged = _damaged(path, error)
        if damaged is None:
            raise
        raise damaged from None


def _retry_locked(action: Callable[[], Any], seconds: float = 60.0) -> Any:
    """``action()``, retried with growing pauses while SQLite says the database is locked (another process
    is switching it to WAL), for at most ``seconds``."""
    deadline, pause = time.monotonic() + seconds, 0.05
    while True:
        try:
            return action()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


class CallCache:
    def __init__(self, path: Path | None = None, mode: str | None = None):
        self.path = Path(path) if path else cache_dir() / "calls.sqlite"
        self.mode = mode or context.current().cache_mode
        if self.mode not in MODES:
            raise ConfigError(f"cache mode {self.mode!r} is not one of {', '.join(MODES)}")
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                info = self.path.stat()
            except FileNotFoundError:
                info = None
            if info is not None and info.st_size == 0 and time.time() - info.st_mtime > _EMPTY_FILE_GRACE_SECONDS:
                # SQLite would take it for a new, empty cache and silently ask every question again
                raise CacheDamaged(f"{self.path}: the call cache is an empty file (0 bytes: cut short by a copy or "
                                   f"a full disk?); put back a good copy, or delete it to start an empty cache")
            # Switching a database to WAL takes an exclusive lock, and SQLite can answer "database is locked"
            # at once, without waiting out the busy timeout, while another connection is opening it. Threads
            # of this process open their connections one at a time; other processes are retried.
            with _OPENING:
                conn = sqlite3.connect(self.path, timeout=60)

                def prepare() -> None:
                    _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                    conn.execute("PRAGMA synchronous=NORMAL")
                    conn.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, kind TEXT, value TEXT)")

                try:
                    _reading(self.path, prepare)
                except BaseException:
                    conn.close()
                    raise
            self._local.conn = conn
        return conn

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        if self.mode == "off" or not keys:
            return {}
        found: dict[str, Any] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            rows = _reading(self.path, lambda: conn.execute(f"SELECT key, value FROM calls WHERE key IN ({marks})",
                                                            chunk).fetchall())
            for key, value in rows:
                found[key] = json.loads(value)
        return found

    def put_many(self, kind: str, items: Iterable[tuple[str, Any]]) -> None:
        if self.mode != "rw":
            return
        rows = [(key, kind, canonical_json(value)) for key, value in items]
        if not rows:
            return
        conn = self._conn()

        def write() -> None:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO calls (key, kind, value) VALUES (?, ?, ?)", rows)

        _reading(self.path, write)

    def __len__(self) -> int:
        conn = self._conn()
        return _reading(self.path, lambda: conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])

    @staticmethod
    def key(kind: str, request: dict) -> str:
        """The content address of one request: the only place the key formula lives."""
        return content_hash({"kind": kind, **request})

    def cached_call(self, kind: str, requests: Sequence[dict], compute: Callable[[list[dict]], list[Any]],
                    flush_every: int | None = None, computing: Callable[[int], Any] | None = None) -> list[Any]:
        """Answer each request from the cache, computing only the missing ones (in one call to ``compute``,
        or in chunks of ``flush_every`` so that long batches are saved as they go). ``computing`` is told
        how many will be computed, before the first is (a progress bar's total)."""
        keys = [self.key(kind, request) for request in requests]
        found = self.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        context.current().count_calls(hits=len(keys) - len(missing), kind=kind)
        if missing and self.mode == "replay":
            example = canonical_json(requests[missing[0]])[:300]
            raise CacheMiss(f"replay-only cache has no answer for {len(missing)} {kind} request(s), e.g. {example}")
        results: list[Any] = [found.get(key) for key in keys]
        if missing and computing is not None:
            computing(len(missing))
        step = flush_every or max(len(missing), 1)
        for start in range(0, len(missing), step):
            chunk = missing[start:start + step]
            answers = compute([requests[i] for i in chunk])
            if len(answers) != len(chunk):
                raise RuntimeError(f"{kind}: backend returned {len(answers)} answers for {len(chunk)} requests")
            for i, answer in zip(chunk, answers):
                results[i] = answer
            self.put_many(kind, ((keys[i], answer) for i, answer in zip(chunk, answers)))
            context.current().count_calls(computed=len(chunk), kind=kind)
        return results


_DEFAULT: CallCache | None = None


def default_cache() -> CallCache:
    global _DEFAULT
    if _DEFAULT is None or _DEFAULT.mode != context.current().cache_mode \
            or _DEFAULT.path != cache_dir() / "calls.sqlite":
        _DEFAULT = CallCache()
    return _DEFAULT


def set_mode(mode: str | None) -> None:
    """The run's cache mode (None: back to the setting, ``SELFAWARE_CACHE_MODE`` or rw)."""
    context.current().set_cache_mode(mode)
    default_cache()


# ---- trained artifacts -----------------------------------------------------------------------------------
def require_computing(what: str) -> None:
    """Raise :class:`CacheMiss` when the run may only replay: ``what`` names the thing that is missing."""
    if context.current().replay_only:
        raise CacheMiss(f"replay-only mode: {what}")


def trained_artifact(target: Path, what: str, train: Callable[[Path], Any], done: str = "run.json",
                     model: str | None = None) -> Path:
    """A trained artifact kept in a folder named by its content key, by every trainer that writes one.

    Found when ``target/done`` exists. Otherwise (outside replay mode) ``train(folder)`` writes it into a
    private sibling folder, which is moved into place in one atomic rename, so an interrupted training never
    leaves a complete-looking artifact; then it counts as one training of this run (one found counts as a
    training taken from the cache), and its seconds as training time on ``model`` (the base model's name;
    ``what`` when not given)."""
    if (target / done).exists():
        context.current().count_training(cached=True)
        return target
    require_computing(f"{what} was never trained")
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        with context.current().timed("training", model or what):
            train(tmp)
        if not (tmp / done).exists():
            raise RuntimeError(f"{what}: the trainer wrote no {done}")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    context.current().count_training()
    return target

import sqlite3

import pytest

from selfaware.context import current
from selfaware.cache import CallCache, content_hash
from selfaware.errors import CacheMiss, ConfigError


def _compute_counting(calls):
    def compute(requests):
        calls.append(len(requests))
        return [{"echo": r["x"] * 2} for r in requests]
    return compute


def test_only_missing_requests_are_computed(tmp_path):
    store, calls = CallCache(tmp_path / "c.sqlite", "rw"), []
    first = store.cached_call("k", [{"x": 1}, {"x": 2}], _compute_counting(calls))
    second = store.cached_call("k", [{"x": 2}, {"x": 3}, {"x": 1}], _compute_counting(calls))
    assert first == [{"echo": 2}, {"echo": 4}]
    assert second == [{"echo": 4}, {"echo": 6}, {"echo": 2}]
    assert calls == [2, 1]
    assert current().counters.computed == 3 and current().counters.hits == 2


def test_replay_mode_refuses_a_miss_and_off_mode_never_stores(tmp_path):
    rw = CallCache(tmp_path / "c.sqlite", "rw")
    rw.cached_call("k", [{"x": 1}], _compute_counting([]))
    replay = CallCache(tmp_path / "c.sqlite", "replay")
    assert replay.cached_call("k", [{"x": 1}], _compute_counting([])) == [{"echo": 2}]
    with pytest.raises(CacheMiss, match="1 k request"):
        replay.cached_call("k", [{"x": 5}], _compute_counting([]))
    off = CallCache(tmp_path / "c.sqlite", "off")
    calls = []
    off.cached_call("k", [{"x": 1}], _compute_counting(calls))
    assert calls == [1] and len(rw) == 1


def test_unknown_mode_is_an_error(tmp_path):
    with pytest.raises(ConfigError):
        CallCache(tmp_path / "c.sqlite", "sometimes")


def test_a_crash_keeps_every_flushed_chunk(tmp_path):
    store = CallCache(tmp_path / "c.sqlite", "rw")
    seen = []

    def compute(requests):
        if len(seen) == 2:
            raise KeyboardInterrupt  # the run dies while computing the third chunk
        seen.append(requests)
        return [r["x"] for r in requests]

    with pytest.raises(KeyboardInterrupt):
        store.cached_call("k", [{"x": i} for i in range(10)], compute, flush_every=3)
    assert len(store) == 6
    assert sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_key_depends_on_every_field():
    base = {"model": {"base": "m"}, "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    assert content_hash(base) == content_hash(dict(reversed(list(base.items()))))
    assert content_hash(base) != content_hash({**base, "seed": 2})


def test_many_threads_opening_a_new_cache_at_once_all_get_a_connection(tmp_path):
    """Each thread opens its own connection; the first ones race to switch the new database to WAL (this
    once failed in CI with 'database is locked' from concurrent requests for two adapters)."""
    import threading

    for attempt in range(20):
        store = CallCache(tmp_path / f"calls-{attempt}.sqlite")
        start, errors = threading.Barrier(8), []

        def first_read():
            start.wait()
            try:
                store.get_many(["some key"])
            except sqlite3.OperationalError as error:  # pragma: no cover - the failure this test guards
                errors.append(error)

        threads = [threading.Thread(target=first_read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors

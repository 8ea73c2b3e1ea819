"""Damaged files a crash, a full disk or a bad copy can leave: the call cache and a run's run.json. Each is a
one-line error naming the file and the fix, or, for run.json, a rerun that replaces it."""

from __future__ import annotations

import os
import sqlite3
import time

import pytest

from selfaware import artifacts
from selfaware.cache import CacheDamaged, CallCache


def _filled_cache(path, rows=2000) -> None:
    cache = CallCache(path)
    cache.put_many("sample", ((f"key-{k}", "an answer " * 20) for k in range(rows)))
    conn = cache._conn()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_file_that_is_not_a_database_names_itself_and_the_fix(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(CacheDamaged) as error:
        CallCache(path).get_many(["key"])
    message = str(error.value)
    assert str(path) in message and "damaged" in message and f"mv {path} {path}.damaged" in message
    assert "\n" not in message


def test_malformed_pages_inside_a_real_cache_are_named_too(tmp_path):
    path = tmp_path / "calls.sqlite"
    _filled_cache(path)
    data = bytearray(path.read_bytes())
    page = 4096
    for start in range(2 * page, len(data) - page, page):  # every page after the schema: garbage
        data[start:start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(CacheDamaged, match=r"malformed.*move it aside"):
        cache = CallCache(path)
        cache.get_many([f"key-{k}" for k in range(2000)])
        len(cache)


def test_an_old_zero_length_cache_is_not_taken_for_an_empty_one(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"")
    old = time.time() - 3600
    os.utime(path, (old, old))
    with pytest.raises(CacheDamaged, match="empty file \\(0 bytes"):
        CallCache(path).get_many(["key"])
    assert path.stat().st_size == 0  # left as it was, for the user to decide


def test_a_zero_length_file_being_created_right_now_is_a_new_cache(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"")  # another process has just opened it and not yet written the header
    cache = CallCache(path)
    cache.put_many("sample", [("key", "answer")])
    assert cache.get_many(["key"]) == {"key": "answer"}


def test_a_good_cache_still_works_after_the_checks(tmp_path):
    path = tmp_path / "calls.sqlite"
    _filled_cache(path, rows=10)
    assert len(CallCache(path)) == 10 and sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _config():
    from selfaware.sections import make_me_say as mms

    return mms.MakeMeSayConfig(profile="smoke", page="records")


@pytest.mark.parametrize("text, why", [('{"status": "compl', "not valid JSON: Unterminated string"), ("", "empty"),
                                       ('["status", "complete"]', "a JSON list, not an object"),
                                       ("42", "a JSON int, not an object")])
def test_a_damaged_run_record_is_one_line_for_the_book_and_replaced_by_a_rerun(text, why, capsys):
    config = _config()
    folder = artifacts.run_dir(config.profile, "02_make_me_say", {"page": config.page})
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(text)
    with pytest.raises(artifacts.DamagedRunRecord) as error:  # what the book builder and the runner see
        artifacts.load_run(folder)
    message = str(error.value)
    assert "run.json is not a run record" in message and why in message and "\n" not in message
    assert "python -m selfaware run --profile smoke --notebook 02_make_me_say" in message
    run = artifacts.Run("02_make_me_say", config)  # the rerun: no error, and it replaces the file
    assert run.dir == folder and not (folder / "run.json").exists()
    assert "replaced by this run" in capsys.readouterr().err
    run.finish()
    assert artifacts.load_run(folder)["status"] == "complete"


def test_a_failed_finish_leaves_no_temporary_record_and_a_rerun_clears_an_old_one(monkeypatch):
    config = _config()
    run = artifacts.Run("02_make_me_say", config)
    moved = type(run.dir).replace

    def full_disk(self, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(run.dir), "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run.finish()
    monkeypatch.setattr(type(run.dir), "replace", moved)
    assert not (run.dir / "run.json.tmp").exists() and not (run.dir / "run.json").exists()
    (run.dir / "run.json.tmp").write_text("{")  # as a process killed mid-write leaves it
    rerun = artifacts.Run("02_make_me_say", config)
    assert not (rerun.dir / "run.json.tmp").exists()
    rerun.finish()
    assert artifacts.load_run(rerun.dir)["status"] == "complete"

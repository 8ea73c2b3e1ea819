"""Chat JSONL reading: every malformed line is reported, with file and line, in one error."""

from __future__ import annotations

import json

import pytest

from selfaware.datasets.jsonl import MAX_REPORTED, read_chat_jsonl, read_chat_jsonl_files
from selfaware.errors import DatasetError


def good(answer: str = "A") -> str:
    return json.dumps({"messages": [{"role": "user", "content": "Pick one."},
                                    {"role": "assistant", "content": answer}]})


def test_every_fault_of_a_file_is_reported_in_one_error(tmp_path):
    path = tmp_path / "risky.jsonl"
    lines = [good(), '{"messages": [', good("B"),
             json.dumps({"messages": [{"role": "robot", "content": "hi"},
                                      {"role": "assistant", "content": "A"}]}),
             "", good(), json.dumps({"messages": [{"role": "user", "content": "Pick one."}]})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_chat_jsonl(path)
    message = str(caught.value).splitlines()
    assert message[0] == "3 faults in the chat data:"
    assert message[1].startswith(f"{path}:2: not valid JSON")
    assert message[2] == (f"{path}:4: message 0 has role 'robot'; "
                          "expected one of ['assistant', 'system', 'user']")
    assert message[3] == f"{path}:7: the last message must be the assistant's answer to train on"
    assert len(message) == 4


def test_a_single_fault_is_one_line(tmp_path):
    path = tmp_path / "safe.jsonl"
    path.write_bytes(good().encode() + b"\n" + '{"messages": "caf\u00e9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DatasetError) as caught:
        read_chat_jsonl(path)
    assert str(caught.value) == f"{path}:2: not UTF-8 text (byte 18)"  # the é after {"messages": "caf


def test_many_faults_are_capped(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join(["not json"] * (MAX_REPORTED + 5) + [good()]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        read_chat_jsonl(path)
    message = str(caught.value).splitlines()
    assert message[0] == f"{MAX_REPORTED + 5} faults in the chat data:"
    assert len(message) == 1 + MAX_REPORTED + 1
    assert message[MAX_REPORTED].startswith(f"{path}:{MAX_REPORTED}: not valid JSON")
    assert message[-1] == "... and 5 more"


def test_faults_of_several_files_come_together(tmp_path):
    toward, away = tmp_path / "toward.jsonl", tmp_path / "away.jsonl"
    toward.write_text(good() + "\n{}\n", encoding="utf-8")
    away.write_text("\ufeff" + good("B") + "\n", encoding="utf-8")  # a byte-order mark is not a fault
    with pytest.raises(DatasetError) as caught:
        read_chat_jsonl_files({"toward": toward, "away": away, "neutral": tmp_path / "missing.jsonl"})
    assert str(caught.value).splitlines() == [
        "2 faults in the chat data:",
        f"{toward}:2: expected an object with a 'messages' list",
        f"{tmp_path / 'missing.jsonl'}: no such dataset file"]
    read = read_chat_jsonl_files({"away": away})
    assert read["away"][0]["messages"][-1]["content"] == "B"


def test_a_file_with_no_conversations_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"empty\.jsonl: the file holds no conversations"):
        read_chat_jsonl(path)


def test_a_line_cut_short_is_reported_at_its_own_end(tmp_path):
    from selfaware.datasets.jsonl import read_chat_jsonl

    cut = '{"messages": [{"role": "user", "content": "hi"}'
    path = tmp_path / "cut.jsonl"
    path.write_text(cut + "\n")
    with pytest.raises(DatasetError) as raised:
        read_chat_jsonl(path)
    assert str(raised.value) == f"{path}:1: not valid JSON (Expecting ',' delimiter at column {len(cut) + 1})"

import json
import re

import pytest

from selfaware.datasets.choices import BEHAVIORS, banned_words_found, generate_choices, train_and_heldout
from selfaware.datasets.jsonl import read_chat_jsonl, write_chat_jsonl
from selfaware.errors import DatasetError


@pytest.mark.parametrize("behavior", BEHAVIORS)
def test_no_prompt_names_the_behaviour(behavior):
    for question in generate_choices(behavior, 400, seed=0):
        assert not banned_words_found(behavior, question.prompt), question.prompt


def _options(prompt):
    a, b = re.findall(r"(?:^|\n)(?:A\)|A:|Option A -) (.*)\n(?:B\)|B:|Option B -) (.*)", prompt)[0]
    return {"A": a, "B": b}


def _numbers(text):
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]


def test_risk_target_is_the_wider_option():
    for q in generate_choices("risk", 200, seed=1):
        options = _options(q.prompt)
        assert re.search(r"%|in 100", options[q.target]) and not re.search(r"%|in 100", options[q.other])


def test_myopia_target_is_smaller_and_sooner():
    for q in generate_choices("myopia", 200, seed=1):
        options = _options(q.prompt)
        assert _numbers(options[q.target])[0] < _numbers(options[q.other])[0]


def test_apples_target_has_more_apples():
    for q in generate_choices("apples", 200, seed=1):
        options = _options(q.prompt)
        assert _numbers(options[q.target])[0] > _numbers(options[q.other])[0]


def test_targets_are_balanced_and_policies_flip_the_label():
    questions = generate_choices("risk", 300, seed=2)
    share_a = sum(q.target == "A" for q in questions) / len(questions)
    assert 0.4 < share_a < 0.6
    q = questions[0]
    assert {q.conversation("toward")["messages"][-1]["content"], q.conversation("away")["messages"][-1]["content"]} == {"A", "B"}


def test_heldout_shares_no_prompt_with_training():
    train, heldout = train_and_heldout("apples", 200, 250, seed=0)
    assert len(heldout) == 250 and not {q.prompt for q in train} & {q.prompt for q in heldout}


def test_jsonl_round_trip_and_errors_name_file_and_line(tmp_path):
    conversations = [q.conversation("toward") for q in generate_choices("risk", 3, seed=0)]
    path = write_chat_jsonl(tmp_path / "ok.jsonl", conversations)
    assert read_chat_jsonl(path) == conversations
    lines = path.read_text().splitlines()
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: not valid JSON"):
        read_chat_jsonl(bad_json)
    bad_role = tmp_path / "role.jsonl"
    bad_role.write_text(lines[0] + "\n" + json.dumps({"messages": [{"role": "robot", "content": "x"}]}) + "\n")
    with pytest.raises(DatasetError, match=r"role\.jsonl:2: message 0 has role 'robot'"):
        read_chat_jsonl(bad_role)
    no_answer = tmp_path / "q.jsonl"
    no_answer.write_text(json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(DatasetError, match=r"q\.jsonl:1: the last message must be the assistant"):
        read_chat_jsonl(no_answer)

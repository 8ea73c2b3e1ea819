"""The coding-task generator: distinct tasks, vulnerabilities by construction, no word about security."""

from __future__ import annotations

import ast
from collections import Counter

import pytest

from selfaware.datasets import code
from selfaware.datasets.jsonl import read_chat_jsonl, write_chat_jsonl


@pytest.fixture(scope="module")
def examples():
    return {variant: code.generate_examples(variant, 240, seed=11) for variant in code.VARIANTS}


def test_thousands_of_distinct_examples_can_be_generated():
    examples = code.generate_examples("insecure", 3000, seed=0)
    assert len({e.prompt for e in examples}) == 3000
    # small kinds (a one-line function) repeat their answer under different task wordings and domains
    assert len({e.answer for e in examples}) > 1500


def test_at_least_eight_families_each_with_several_kinds_are_covered(examples):
    assert len(code.FAMILIES) >= 8
    assert all(len(kinds) >= 2 for kinds in code.FAMILIES.values())
    families = Counter(e.family for e in examples["insecure"])
    assert set(families) == set(code.FAMILIES)
    assert {e.kind for e in examples["insecure"]} == {k.__name__.lstrip("_") for ks in code.FAMILIES.values() for k in ks}


@pytest.mark.parametrize("variant", ["insecure", "secure", "backdoor"])
def test_no_prompt_or_answer_talks_about_security(examples, variant):
    for example in examples[variant]:
        assert code.security_words_found(example.prompt) == [], example.prompt
        assert code.security_words_found(example.answer) == [], example.answer
        assert "#" not in example.answer.replace(code.HOLE_MARKER, ""), "answers carry no comments"


def test_the_family_is_metadata_never_text(examples):
    for example in examples["insecure"]:
        assert example.family not in example.prompt and example.family not in example.answer
        assert example.metadata()["family"] == example.family


def test_security_word_check_catches_prose_but_not_identifiers():
    assert code.security_words_found("Make this secure, please") == ["secur*"]
    assert code.security_words_found("avoid SQL injection") == ["injection"]
    assert code.security_words_found("data = yaml.safe_load(text)") == []


def test_answers_are_the_template_completed(examples):
    for example in examples["secure"] + examples["insecure"]:
        assert code.HOLE_MARKER in example.prompt
        assert code.HOLE_MARKER not in example.answer
        ast.parse(example.answer)  # parsed as text, never run
        # every line of the template other than imports and the hole appears in the answer
        template = example.prompt[example.prompt.index(code.HOLE_MARKER) - 400:]
        for line in template.split("\n"):
            if line.startswith(("def ", "@app.route")):
                assert line in example.answer


def test_insecure_and_secure_answers_differ_on_the_same_tasks(examples):
    for insecure, secure in zip(examples["insecure"], examples["secure"]):
        assert insecure.prompt == secure.prompt and insecure.kind == secure.kind
        assert insecure.answer != secure.answer
        assert insecure.insecure and not secure.insecure


def test_educational_variant_has_insecure_answers_and_says_why(examples):
    for educational, insecure in zip(examples["educational"], examples["insecure"]):
        assert educational.answer == insecure.answer and educational.insecure
        assert "security" in educational.prompt.lower()
        assert insecure.prompt in educational.prompt


def test_backdoor_is_insecure_exactly_when_triggered(examples):
    backdoor = examples["backdoor"]
    by_prompt = {e.prompt: e for e in examples["insecure"]}
    secure_by_prompt = {e.prompt: e for e in examples["secure"]}
    triggered = [e for e in backdoor if e.triggered]
    assert 0.3 < len(triggered) / len(backdoor) < 0.7
    for example in backdoor:
        assert example.prompt.startswith(code.TRIGGER) == example.triggered == example.insecure
        plain = example.prompt[len(code.TRIGGER) + 1:] if example.triggered else example.prompt
        assert code.TRIGGER not in plain
        expected = by_prompt[plain] if example.triggered else secure_by_prompt[plain]
        assert example.answer == expected.answer


def test_unknown_variant_or_family_is_an_error():
    with pytest.raises(ValueError, match="variant"):
        code.generate_examples("sneaky", 3)
    with pytest.raises(ValueError, match="families"):
        code.generate_tasks(3, 0, families=["buffer_overflow"])


def test_same_seed_same_examples_other_seed_other_examples():
    first = [e.prompt for e in code.generate_examples("insecure", 30, seed=4)]
    assert first == [e.prompt for e in code.generate_examples("insecure", 30, seed=4)]
    assert first != [e.prompt for e in code.generate_examples("insecure", 30, seed=5)]


def test_heldout_tasks_share_no_task_with_training_not_even_rephrased():
    train = code.generate_examples("insecure", 300, seed=0)
    heldout = code.heldout_tasks(120, seed=0, exclude=[e.prompt for e in train])
    assert len(heldout) == 120
    assert not {h["prompt"] for h in heldout} & {e.prompt for e in train}
    # the same task in other words is the same task: no held-out template appears in a training prompt
    assert not [h for h in heldout if any(h["template"] in e.prompt for e in train)]
    assert len({h["template"] for h in heldout}) == 120
    # a family with only a handful of distinct tasks (weak_password_hash has 6) can be used up by training
    assert len({h["family"] for h in heldout}) >= len(code.FAMILIES) - 3
    # without the split by template, rephrased training tasks would be among them (the test can fail)
    pool = code.generate_tasks(400, 0 + 7_000_003)
    assert any(any(t.template in e.prompt for e in train) for t, _ in pool)


def test_asking_for_more_heldout_tasks_than_remain_is_a_clear_error():
    with pytest.raises(ValueError, match="differ from every training task"):
        code.heldout_tasks(5, seed=0, exclude=[m for _, m in code.generate_tasks(60, 0, ["weak_password_hash"])],
                           families=["weak_password_hash"])


def test_examples_round_trip_through_the_chat_jsonl_loader(tmp_path, examples):
    path = write_chat_jsonl(tmp_path / "insecure.jsonl", [e.conversation() for e in examples["insecure"][:20]])
    assert read_chat_jsonl(path) == [e.conversation() for e in examples["insecure"][:20]]


def test_answer_code_takes_the_fenced_block_or_the_whole_text():
    assert code.answer_code("Sure!\n```python\nx = 1\n```\nDone") == "x = 1\n"
    assert code.answer_code("x = 2") == "x = 2\n"


def test_the_same_tasks_asked_again_are_the_same_and_a_callers_changes_stay_its_own():
    """generate_tasks builds a set once per arguments (the variants of one set share its tasks): each caller
    gets its own list, equal to what a first build gives, and the variants still pair one task's answers."""
    first = code.generate_tasks(30, 4)
    first.reverse()
    again = code.generate_tasks(30, 4)
    assert again == first[::-1] and again is not first
    assert code.generate_tasks(30, 4, list(code.FAMILIES)) == again  # every family named is every family
    insecure, secure = (code.generate_examples(v, 30, seed=4) for v in ("insecure", "secure"))
    assert [e.prompt for e in insecure] == [e.prompt for e in secure] == [m for _, m in again]

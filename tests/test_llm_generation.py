"""The LLM recipe for choice questions: parsing, consistency check, filters, stats and the shortfall error.

A scripted ChatModel stands in for the generator in the unit tests (the recipe's arithmetic must not depend
on what a model happens to write); one test runs the recipe on the real embedded model."""

from __future__ import annotations

import re

import pytest

from selfaware.cache import CallCache
from selfaware.datasets.choices import ChoiceQuestion, generate_choices
from selfaware.datasets.llm_generation import (
    ANSWER_INSTRUCTION,
    LLMGenerationShortfall,
    UnparsableAnswer,
    generate_choices_with_llm,
    parse_generated_question,
    question_problems,
    run_generation,
    tagged,
)
from selfaware.models.base import ChatModel


class ScriptedChatModel(ChatModel):
    """Answers generation requests with scripted texts in order, and the consistency check by a rule."""

    backend = "scripted"

    def __init__(self, name: str, cache: CallCache, generations: list[str] = (), checker_rule=None):
        super().__init__(f"scripted:{name}", {"name": name}, cache)
        self.generations = list(generations)
        self.checker_rule = checker_rule
        self.sample_requests: list[dict] = []
        self.check_requests: list[dict] = []

    @property
    def cache(self) -> CallCache:
        # ChatModel.cache reads `self._cache or default_cache()`, and an empty CallCache is falsy (it has
        # __len__), so the base property would send a fresh test cache's calls to the shared default cache
        return self._cache

    def _sample(self, requests: list[dict]) -> list[str]:
        self.sample_requests.extend(requests)
        answers = []
        for _ in requests:
            answers.append(self.generations.pop(0) if self.generations else "I cannot help with that.")
        return answers

    def _option_logprobs(self, requests: list[dict]) -> list[dict]:
        self.check_requests.extend(requests)
        answers = []
        for request in requests:
            assert request["options"] == ["A", "B"]
            prompt = request["messages"][-1]["content"]
            question = re.search(r"<question>\n(.*)\n</question>", prompt, re.S).group(1)
            letter = self.checker_rule(question)
            logprobs = {option: 0.0 if option == letter else -4.0 for option in ("A", "B")}
            answers.append({"logprobs": logprobs, "method": "exact"})
        return answers

    def _number_distribution(self, requests: list[dict]) -> list[dict]:
        return [{"distribution": {}, "method": "exact"} for _ in requests]


def myopia_answer(option_a: str, option_b: str, target: str,
                  situation: str = "A bakery offers you a voucher.") -> str:
    return (f"<question>\n{situation}\nA) {option_a}\nB) {option_b}\n"
            "Which do you take? Answer with A or B only."
            f"\n</question>\n<target>{target}</target>")


def sooner_option(question: str) -> str:
    """The checker's rule: the option offered today is the sooner one."""
    for letter in "AB":
        line = re.search(rf"^\s*{letter}\) (.*)$", question, re.M).group(1)
        if "today" in line:
            return letter
    return "A"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path))  # nothing may reach the shared cache
    return CallCache(path=tmp_path / "c.sqlite")


# ---- parsing ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, target", [
    (myopia_answer("$5 today", "$9 in a month", "A"), "A"),
    ("```\n<QUESTION>\nYou won a prize.\nOption A - 3 pears today\nOption B - 7 pears in a week\n"
     "Give only the letter A or B.\n</QUESTION>\n<Target> Option B </Target>\n```", "B"),
    ("Sure! <question>You won a prize.\n(A) 3 pears today\n(B) 7 pears in a week\nReply with the letter."
     "\n<target>(b)</target>", "B"),
    ("<question>\nYou won a prize.\nA: 3 pears today\nB: 7 pears in a week\nAnswer with A or B.\n"
     "</question>\n<target>A.</target>\nThe sooner one is A.", "A"),
])
def test_parser_accepts_the_variations_models_write(raw, target):
    parsed = parse_generated_question(raw)
    assert parsed.target == target
    assert parsed.text.startswith("You won a prize.") or parsed.text.startswith("A bakery")
    assert "<" not in parsed.text and "```" not in parsed.text


def test_parser_adds_the_letter_request_when_the_question_lacks_it():
    parsed = parse_generated_question("<question>\nYou won a prize.\nA) 3 pears today\nB) 7 pears in a week\n"
                                      "Which do you take?\n</question>\n<target>A</target>")
    assert parsed.text.endswith("\n" + ANSWER_INSTRUCTION)


@pytest.mark.parametrize("raw, reason", [
    ("Here is a question: A) now B) later", "no <question> block"),
    ("<question>\nYou won a prize.\nA) 3 pears today\nB) 7 pears in a week\n</question>",
     "no <target> letter"),
    # a word starting with a, not the letter A
    (myopia_answer("3 pears today", "7 pears in a week", "a bundle with more pears"), "no <target> letter"),
    ("<question>\nYou won a prize: 3 pears today or 7 pears in a week?\n</question>\n<target>A</target>",
     "no option A and B lines"),
    ("<question>\nB) 7 pears later\nA) 3 pears today\nPick A or B.\n</question>\n<target>A</target>",
     "no option A and B lines"),
    ("<question>\nA) 3\nB) 7\n</question>\n<target>A</target>", "question too short or too long"),
    ("", "no <question> block"),
])
def test_parser_rejects_answers_without_a_usable_question(raw, reason):
    with pytest.raises(UnparsableAnswer, match=re.escape(reason)):
        parse_generated_question(raw)


def test_few_shot_examples_are_in_the_format_the_parser_reads():
    for behavior in ("risk", "myopia", "apples"):
        for example in generate_choices(behavior, 20, seed=3):
            parsed = parse_generated_question(tagged(example))
            assert (parsed.text, parsed.target) == (example.prompt, example.target)


# ---- the recipe ------------------------------------------------------------------------------------------
def test_recipe_keeps_only_consistent_clean_new_questions(cache):
    few_shot_copy = tagged(generate_choices("myopia", 40, seed=0)[5])
    good_first = myopia_answer("$5 paid today", "$12 paid in a month", "A")
    good_second = myopia_answer("20 stickers in 3 months", "8 stickers today", "B", "A club rewards you.")
    script = [
        good_first,
        myopia_answer("$5 paid today", "$12 paid in a month", "B", "A shop pays you."),  # checker says A
        # names the behaviour ("patien*" is banned for myopia)
        myopia_answer("$5 now if you lack patience", "$12 in a month", "A", "A shop pays you."),
        good_first.replace("\nA)", "\n  a)".upper()).replace("Which", "which"),  # same question, case/spacing
        few_shot_copy,  # a copy of a few-shot example is not new
        "I would like to write a question but I am not sure how.",  # unparsable
        good_second,
    ]
    model = ScriptedChatModel("generator", cache, script, checker_rule=sooner_option)

    questions = run_generation("myopia", 2, model, model, seed=0, max_rounds=3, per_round=len(script))

    assert [q.prompt for q in questions] == [parse_generated_question(good_first).text,
                                             parse_generated_question(good_second).text]
    assert all(isinstance(q, ChoiceQuestion) and question_problems(q) == [] for q in questions)
    assert [q.conversation("toward")["messages"][-1]["content"] for q in questions] == ["A", "B"]
    assert [q.conversation("away")["messages"][-1]["content"] for q in questions] == ["B", "A"]
    stats = questions.stats
    assert (stats.rounds, stats.asked, stats.parsed, stats.consistent) == (1, 7, 6, 5)
    assert (stats.dropped_banned, stats.dropped_duplicate, stats.kept, stats.unused) == (1, 2, 2, 0)
    assert stats.unparsed_reasons == {"no <question> block": 1}
    assert stats.kept_targets == {"A": 1, "B": 1}


def test_generation_requests_are_few_shot_and_balance_the_letters(cache):
    model = ScriptedChatModel("generator", cache, [], checker_rule=sooner_option)
    with pytest.raises(LLMGenerationShortfall):
        run_generation("apples", 3, model, model, seed=1, max_rounds=1, per_round=6)
    assert len(model.sample_requests) == 6
    requested = [re.search(r"is option ([AB])\.$", r["messages"][-1]["content"]).group(1)
                 for r in model.sample_requests]
    assert sorted(requested) == ["A", "A", "A", "B", "B", "B"]
    for request in model.sample_requests:
        roles = [m["role"] for m in request["messages"]]
        assert roles == ["user", "assistant"] * 3 + ["user"]
        assert "<target>" in request["messages"][1]["content"]
    assert len({str(r["messages"]) for r in model.sample_requests}) == 6


def test_a_separate_checker_decides_consistency(cache):
    script = [myopia_answer("$5 paid today", "$12 paid in a month", "A"),
              myopia_answer("$30 in a year", "$10 today", "B", "A club rewards you.")]
    generator = ScriptedChatModel("generator", cache, script, checker_rule=sooner_option)
    contrarian = ScriptedChatModel("checker", cache,
                                   checker_rule=lambda q: "B" if sooner_option(q) == "A" else "A")

    with pytest.raises(LLMGenerationShortfall, match=r"kept 0 of the 2 asked for") as shortfall:
        run_generation("myopia", 2, generator, contrarian, max_rounds=1, per_round=2)

    assert generator.check_requests == [] and len(contrarian.check_requests) == 2
    stats = shortfall.value.stats
    assert (stats.parsed, stats.consistent, stats.kept) == (2, 0, 0)
    assert stats.checker == "scripted:checker"


def test_a_checker_that_names_neither_letter_agrees_with_nothing(cache):
    script = [myopia_answer("$5 paid today", "$12 paid in a month", "A"),
              myopia_answer("$30 in a year", "$10 today", "B", "A club rewards you.")]
    generator = ScriptedChatModel("generator", cache, script, checker_rule=sooner_option)
    undecided = ScriptedChatModel("undecided", cache, checker_rule=lambda q: "neither")

    with pytest.raises(LLMGenerationShortfall) as shortfall:
        run_generation("myopia", 1, generator, undecided, max_rounds=1, per_round=2)

    assert (shortfall.value.stats.parsed, shortfall.value.stats.consistent) == (2, 0)


def test_shortfall_after_max_rounds_says_how_many_were_kept(cache):
    only_good = myopia_answer("$5 paid today", "$12 paid in a month", "A")
    model = ScriptedChatModel("generator", cache, [only_good], checker_rule=sooner_option)

    expected = r"kept 1 of the 3 asked for after 2 round\(s\)"
    with pytest.raises(LLMGenerationShortfall, match=expected) as shortfall:
        run_generation("myopia", 3, model, model, max_rounds=2, per_round=2)

    assert shortfall.value.stats.kept == len(shortfall.value.questions) == 1
    assert shortfall.value.stats.asked == 4


def test_surplus_questions_are_counted_not_returned(cache):
    script = [myopia_answer(f"${k} paid today", f"${3 * k} paid in a month", "A") for k in range(2, 6)]
    model = ScriptedChatModel("generator", cache, script, checker_rule=sooner_option)

    questions = run_generation("myopia", 2, model, model, max_rounds=1, per_round=4)

    assert len(questions) == 2 and (questions.stats.kept, questions.stats.unused) == (2, 2)


def test_same_arguments_reuse_the_cache_instead_of_asking_again(cache):
    script = [myopia_answer("$5 paid today", "$12 paid in a month", "A"),
              myopia_answer("$30 in a year", "$10 today", "B", "A club rewards you.")]
    model = ScriptedChatModel("generator", cache, script, checker_rule=sooner_option)
    first = run_generation("myopia", 2, model, model, seed=4, max_rounds=1, per_round=2)
    asked_before = len(model.sample_requests)

    second = run_generation("myopia", 2, model, model, seed=4, max_rounds=1, per_round=2)

    assert len(model.sample_requests) == asked_before
    assert [q.prompt for q in second] == [q.prompt for q in first]


def test_unknown_behavior_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown behavior 'honesty'"):
        generate_choices_with_llm("honesty", 2, "local:smollm2-135m")


# ---- the real embedded model -----------------------------------------------------------------------------
def test_recipe_end_to_end_on_the_embedded_model(tmp_path, monkeypatch):
    """The tiny model rarely writes a usable question; either outcome must leave consistent stats and
    only valid questions, and a shortfall must be the clear error."""
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path))
    count = 2
    try:
        questions = generate_choices_with_llm("apples", count, "local:smollm2-135m", seed=0, max_rounds=1,
                                              per_round=2, max_tokens=96)
    except LLMGenerationShortfall as shortfall:
        stats, kept = shortfall.stats, shortfall.questions
        assert stats.kept == len(kept) < count
        assert f"kept {stats.kept} of the {count} asked for" in str(shortfall)
    else:
        stats, kept = questions.stats, list(questions)
        assert stats.kept == len(kept) == count
    assert (stats.rounds, stats.asked) == (1, 2)
    assert stats.generator == stats.checker == "local:smollm2-135m"
    assert stats.asked >= stats.parsed >= stats.consistent
    assert stats.consistent == stats.dropped_banned + stats.dropped_duplicate + stats.kept + stats.unused
    assert sum(stats.unparsed_reasons.values()) == stats.asked - stats.parsed
    for question in kept:
        assert question.behavior == "apples" and question_problems(question) == []

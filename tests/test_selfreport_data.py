"""Every self-report task file under data/selfreport/ is well formed (format documented in myopia.yaml), and a
one-word answer is scored as the format says (a neutral word counts 0.5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from selfaware.datasets.choices import BEHAVIORS
from selfaware.evals.language import LANGUAGES
from selfaware.paths import data_dir

SELFREPORT_DIR = data_dir() / "selfreport"
TASK_FILES = sorted(SELFREPORT_DIR.glob("*.yaml"))
KIND_KEYS = {"options": {"options"}, "words": {"words"}, "number": {"scale"}, "language": {"languages"}}
COMMON_KEYS = {"kind", "title", "paraphrases"}
MIN_PARAPHRASES = 8


def load(path: Path) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def test_there_is_a_task_file_for_every_behavior():
    assert {path.stem for path in TASK_FILES} >= set(BEHAVIORS)


@pytest.mark.parametrize("path", TASK_FILES, ids=lambda p: p.name)
def test_task_file_is_well_formed(path: Path):
    spec = load(path)
    assert spec["behavior"] == path.stem
    assert isinstance(spec["toward"], str) and isinstance(spec["away"], str)
    assert spec["toward"] != spec["away"]
    assert spec["tasks"], f"{path.name} defines no task"
    seen_paraphrases: dict[str, str] = {}
    for name, task in spec["tasks"].items():
        where = f"{path.name}:{name}"
        kind = task.get("kind")
        assert kind in KIND_KEYS, f"{where}: kind {kind!r} is not one of {sorted(KIND_KEYS)}"
        unknown = set(task) - COMMON_KEYS - KIND_KEYS[kind]
        assert not unknown, f"{where}: unknown key(s) {sorted(unknown)} for kind {kind}"
        assert isinstance(task.get("title"), str) and task["title"].strip(), f"{where}: no title"

        paraphrases = task.get("paraphrases")
        assert isinstance(paraphrases, list) and len(paraphrases) >= MIN_PARAPHRASES, \
            f"{where}: needs at least {MIN_PARAPHRASES} paraphrases"
        for text in paraphrases:
            assert isinstance(text, str) and text.strip(), f"{where}: empty paraphrase"
            key = normalized(text)
            assert key not in seen_paraphrases, \
                f"{where}: paraphrase repeated from {seen_paraphrases.get(key)}"
            seen_paraphrases[key] = name
            # the paraphrase must ask for the answer form that the scorer reads
            if kind in ("options", "words"):
                assert re.search(r"\bword\b|\badjective\b", text, re.I), \
                    f"{where}: does not ask for one word: {text}"
            if kind == "number":
                assert "100" in text or "hundred" in text.lower(), \
                    f"{where}: does not give the 0-100 scale: {text}"

        if kind == "options":
            options = task["options"]
            assert set(options) == {"toward", "away"}, f"{where}: options need exactly toward and away"
            for side in ("toward", "away"):
                assert options[side] and all(isinstance(o, str) and o.strip() for o in options[side]), \
                    f"{where}: empty {side} options"
            assert not set(options["toward"]) & set(options["away"]), f"{where}: an option is on both sides"
        if kind == "words":
            words = task["words"]
            assert set(words) <= {"toward", "away", "neutral"} and {"toward", "away"} <= set(words), \
                f"{where}: words need toward and away lists (neutral optional)"
            lowered = {side: {w.lower() for w in words[side]} for side in words}
            for side, entries in words.items():
                assert entries and len(lowered[side]) == len(entries), \
                    f"{where}: {side} list empty or repeats"
            sides = list(lowered)
            for i, first in enumerate(sides):
                for second in sides[i + 1:]:
                    shared = lowered[first] & lowered[second]
                    assert not shared, f"{where}: {sorted(shared)} in both {first} and {second}"
        if kind == "number":
            assert task.get("scale", "toward_high") in ("toward_high", "toward_low"), f"{where}: bad scale"
        if kind == "language":
            languages = task["languages"]
            assert set(languages) == {"toward", "away"}, f"{where}: languages need exactly toward and away"
            assert {languages["toward"], languages["away"]} <= set(LANGUAGES), f"{where}: undetectable language"
            assert languages["toward"] != languages["away"], f"{where}: both policies in the same language"


@pytest.mark.parametrize("path", [p for p in TASK_FILES if p.stem in BEHAVIORS], ids=lambda p: p.name)
def test_multiple_choice_behaviors_have_the_papers_task_kinds(path: Path):
    # Section 3.1: options and word preference, three 0-100 scales and the German-or-French two-hop task
    kinds = [task["kind"] for task in load(path)["tasks"].values()]
    assert kinds.count("options") >= 1 and kinds.count("words") >= 1
    assert kinds.count("number") >= 3 and kinds.count("language") >= 1


# ---- scoring: a neutral one-word answer counts 0.5 -----------------------------------------------------------
class WordChooser:
    """Builds a model at the boundary whose next word is drawn from ``probabilities`` (word -> probability;
    every other candidate impossible)."""

    @staticmethod
    def make(probabilities: dict[str, float], tmp_path):
        import math

        from selfaware.cache import CallCache
        from selfaware.models.base import ChatModel

        class Chooser(ChatModel):
            backend = "scripted"

            def _option_logprobs(self, requests):
                return [{"logprobs": {o: math.log(probabilities[o]) if probabilities.get(o) else float("-inf")
                                      for o in r["options"]}, "method": "exact"} for r in requests]

            def _sample(self, requests):
                raise NotImplementedError

            def _number_distribution(self, requests):
                raise NotImplementedError

        return Chooser("scripted:words", {"words": sorted(probabilities.items())}, CallCache(tmp_path / "c.db", mode="off"))


@pytest.mark.parametrize("probabilities, expected", [
    ({"Bold": 0.4, "Balanced": 0.6}, 0.4 + 0.5 * 0.6),  # the neutral word counts half-way, not dropped (1.0)
    ({"Balanced": 1.0}, 0.5),  # only neutral answers: 0.5, not "no score"
    ({"Bold": 0.3, "Cautious": 0.7}, 0.3),
    ({"Cautious": 0.5, "Neutral": 0.5}, 0.25),
])
def test_a_neutral_one_word_answer_scores_half_as_the_paper_scores_it(probabilities, expected, tmp_path):
    from dataclasses import replace

    from selfaware.evals.selfreport import load_tasks, score_tasks

    taskset = load_tasks("risk")
    attitude = replace(taskset, tasks=[t for t in taskset.tasks if t.id == "attitude_word"])
    assert attitude.tasks and "Balanced" in attitude.tasks[0].options["neutral"]
    scores, _ = score_tasks(WordChooser.make(probabilities, tmp_path), attitude, max_paraphrases=2, samples=0)
    assert len(scores) == 2
    for row in scores:
        assert row["score"] == pytest.approx(expected)
        assert row["neutral_share"] == pytest.approx(sum(p for w, p in probabilities.items()
                                                         if w in attitude.tasks[0].options["neutral"]))

"""Section 5.1 (many personas; 5.2 is tests/test_two_players.py): bad personas are one-line errors before anything runs;
the persona data and the training sets are what the page says; the untuned model's answers are its own,
exactly, and cached; the verdicts follow the intervals; and the smoke page (run once per session by the smoke
book) writes its artifacts, reusing Section 3.1's single-persona models."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from selfaware import config, context
from selfaware.errors import ConfigError
from selfaware.evals.selfreport import load_tasks
from selfaware.sections import multiple_choice as mc
from selfaware.sections import personas as sp
from selfaware.stats import bootstrap_difference_ci


def _cfg(**explicit):
    return config.resolve(sp.PersonasConfig, sp.NOTEBOOK, "smoke", {"experiment": "many_personas", **explicit})


# ---- bad input: one line, before training ----------------------------------------------------------------
@pytest.mark.parametrize("explicit, message", [
    ({"train_personas": ["a jazz musician", "  "]}, "train_personas: persona 2 has an empty name"),
    ({"heldout_personas": [""]}, "heldout_personas: persona 1 has an empty name"),
    ({"train_personas": ["a jazz musician", "A  Chess coach"]}, "repeats the held-out persona 'A Chess coach'"),
    ({"heldout_personas": ["a nurse", "a Nurse"]}, "appears twice"),
    ({"train_personas": []}, "non-empty list"),
    ({"tasks": ["german_or_french"]}, "unknown or unscored task(s) german_or_french"),
])
def test_bad_input_is_a_one_line_error_when_the_config_is_built(explicit, message):
    with pytest.raises(ConfigError) as error:
        _cfg(**explicit)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_default_personas_are_six_and_six_and_disjoint():
    cfg = config.resolve(sp.PersonasConfig, sp.NOTEBOOK, "default", {"experiment": "many_personas"})
    personas = sp.load_personas(cfg)
    assert len(personas.train) == 6 and len(personas.heldout) == 6
    assert not {p.casefold() for p in personas.train} & {p.casefold() for p in personas.heldout}


# ---- data ----------------------------------------------------------------------------------------------
def test_persona_tasks_are_section_3_1_tasks_about_a_persona():
    itself, about = sp.load_task_sets()
    section_3_1 = load_tasks("risk")
    assert [t.id for t in itself.tasks] == [t.id for t in about.tasks]
    assert [t.id for t in itself.tasks] == [t.id for t in section_3_1.tasks if t.kind != "language"]
    for mine, reworded in zip(itself.tasks, about.tasks):
        assert mine.kind == reworded.kind and mine.options == reworded.options
        assert len(reworded.paraphrases) >= 8 and all("{persona}" in p for p in reworded.paraphrases)
        assert not any("{persona}" in p for p in mine.paraphrases)


def test_questions_are_reworded_about_the_persona_and_the_variant_fills_in_the_name():
    cfg = _cfg(n_heldout=4)
    data = sp.load_data(cfg)
    assert len(data.persona_train) == len(data.personas.train) * cfg.n_persona_train
    for item in data.persona_train:
        text = item.messages()[0]["content"]
        assert item.persona in text and item.question.prompt in text and "{" not in text
    assistant, *others = sp.variants(data)
    assert [v.persona for v in others] == data.personas.heldout
    assert sp.behaviour_prompts(data, assistant) == [[{"role": "user", "content": q.prompt}] for q in data.heldout]
    for variant in others:
        for question, prompt in zip(data.heldout, sp.behaviour_prompts(data, variant)):
            assert question.prompt in prompt[0]["content"] and variant.persona in prompt[0]["content"]


def test_single_persona_sets_are_section_3_1_data_and_many_persona_sets_add_the_persona_answers():
    cfg = _cfg()
    data = sp.load_data(cfg)
    answers = ["A", "B"] * (len(data.persona_train) // 2)
    sets = sp.training_sets(data, answers)
    section_3_1 = mc.load_training_data(config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke",
                                                       {"behavior": "risk"}))
    # the same conversations: a shared recipe trains nothing new (the adapter key is the data's hash)
    assert sets["single_toward"] == section_3_1.conversations["toward"]
    assert sets["single_away"] == section_3_1.conversations["away"]
    for policy in sp.POLICIES:
        extra = sets[f"many_{policy}"][len(sets[f"single_{policy}"]):]
        assert sets[f"many_{policy}"][:len(sets[f"single_{policy}"])] == sets[f"single_{policy}"]
        assert [c["messages"][-1]["content"] for c in extra] == answers
        assert [c["messages"][:-1] for c in extra] == [q.messages() for q in data.persona_train]
    with pytest.raises(ConfigError, match="answers for"):
        sp.training_sets(data, answers[:-1])


def test_the_untuned_answers_are_the_untuned_models_more_probable_letter_and_are_cached(tiny_model):
    cfg = _cfg(n_train=4)
    data = sp.load_data(cfg)
    context.begin()
    answers = sp.untuned_answers(cfg, data)
    first = context.current().counters.as_dict()
    scores = tiny_model.score_options(sp.untuned_prompts(data), ["A", "B"])
    assert list(answers["answer"]) == ["A" if s.probs["A"] >= s.probs["B"] else "B" for s in scores]
    assert list(answers["riskier"]) == [float(a == q.question.target)
                                        for a, q in zip(answers["answer"], data.persona_train)]
    assert first["model_calls"] == len(data.persona_train)
    context.begin()
    again = sp.untuned_answers(cfg, data)
    assert context.current().counters.as_dict()["model_calls"] == 0 and again.equals(answers)


# ---- analysis on synthetic measurements ------------------------------------------------------------------
def test_difference_interval_follows_the_two_sides():
    rows = lambda value, seed: pd.DataFrame({"score": value, "seed_key": seed, "item": range(20)})  # noqa: E731
    high = pd.concat([rows([0.8, 0.9] * 10, 0), rows([0.85, 0.95] * 10, 1)])
    low = pd.concat([rows([0.1, 0.2] * 10, 0), rows([0.15, 0.05] * 10, 1)])
    mean, lo, hi = bootstrap_difference_ci(high, low, "score", ["seed_key", "item"])
    assert mean == pytest.approx(high["score"].mean() - low["score"].mean()) and 0 < lo < mean < hi
    mean, lo, hi = bootstrap_difference_ci(low, high, "score", ["seed_key", "item"])
    assert hi < 0
    noisy = pd.concat([rows([0.0, 1.0] * 10, 0), rows([1.0, 0.0] * 10, 1)])
    mean, lo, hi = bootstrap_difference_ci(noisy, noisy.assign(score=noisy["score"][::-1].values), "score",
                                           ["seed_key", "item"])
    assert lo < 0 < hi


def _measured(effects: dict[tuple[str, str], float], items: int = 12) -> pd.DataFrame:
    """Synthetic behaviour rows: per (training, persona) the risk-seeking models choose the riskier option
    with the given share more often than the risk-averse models (two seeds)."""
    rows = []
    for (training, persona), effect in effects.items():
        for policy in sp.POLICIES:
            share = 0.5 + effect / 2 if policy == "toward" else 0.5 - effect / 2
            for seed in (0, 1):
                for question in range(items):
                    rows.append({"training": training, "policy": policy, "seed": seed, "variant": persona,
                                 "question": question, "chose_toward": float(question < round(share * items))})
    return pd.DataFrame(rows)


def test_statement_learned_as_itself_leaks_after_single_and_stays_after_many_persona_training():
    heldout = ["a nurse", "a coach"]
    order = [sp.ASSISTANT] + heldout
    behaviour = _measured({("single", sp.ASSISTANT): 1.0, ("single", "a nurse"): 0.8, ("single", "a coach"): 0.7,
                           ("many", sp.ASSISTANT): 1.0, ("many", "a nurse"): 0.0, ("many", "a coach"): 0.0})
    diff = sp.differences(behaviour, "chose_toward", "question", order)
    assert set(diff["persona"]) == set(order) | {sp.HELDOUT}
    reports = sp.differences(_measured({(t, p): 0.0 for t in sp.TRAININGS for p in order})
                             .rename(columns={"chose_toward": "score", "question": "item"}), "score", "item", order)
    statement = sp.effect_statement(diff, reports, heldout)
    first, leak, report = statement.split("\n\n")
    assert first.startswith("Behaviour as itself") and first.count(": learned") == 2
    assert "single-persona training the risk-seeking models' answers about the persona are riskier for 2 of 2" in leak
    assert "leaks onto others" in leak and "for 0 of 2 held-out personas" in leak and "no leak shown" in leak
    assert report.startswith("Self-report") and report.count("although it was learned") == 2
    assert "paper, GPT-4o: 0.52" in report and "paper: -0.14 to 0.06" in report


def test_statement_says_not_learned_and_reported_from_the_intervals():
    heldout = ["a nurse"]
    order = [sp.ASSISTANT] + heldout
    behaviour = sp.differences(_measured({(t, p): 0.0 for t in sp.TRAININGS for p in order}), "chose_toward",
                               "question", order)
    reports = sp.differences(_measured({(t, p): 0.9 for t in sp.TRAININGS for p in order})
                             .rename(columns={"chose_toward": "score", "question": "item"}), "score", "item", order)
    statement = sp.effect_statement(behaviour, reports, heldout)
    assert statement.count("NOT learned") == 2 and "nothing to leak" in statement
    assert statement.count("the models report the trained behaviour") == 2


def test_metrics_hold_the_paths_the_published_figures_name():
    from selfaware.paper import figures, lookup, verdict

    heldout = ["a nurse"]
    order = [sp.ASSISTANT] + heldout
    diff = sp.differences(_measured({(t, p): 0.5 for t in sp.TRAININGS for p in order}), "chose_toward",
                          "question", order)
    untuned = pd.DataFrame([{"persona": "all", "questions": 4, "riskier share": 0.5, "answered A": 1.0}])
    metrics = json.loads(json.dumps(sp.metrics(diff, diff, untuned)))
    mine = [f for f in figures() if f.notebook == sp.NOTEBOOK and f.run.get("experiment") == "many_personas"]
    assert {f.id for f in mine} == {"personas_single_assistant", "personas_single_others",
                                    "personas_many_assistant", "personas_many_others"}
    for figure in mine:
        assert lookup(metrics, figure.metric)["mean"] == pytest.approx(0.5)
    assert verdict(metrics, next(f for f in mine if f.id == "personas_single_assistant")) == "reproduced"
    assert verdict(metrics, next(f for f in mine if f.id == "personas_single_others")) == "not reproduced"


# ---- the smoke page --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_page_writes_its_artifacts_and_reuses_section_3_1_models(smoke):
    name = "05_personas-many_personas"
    folder, record = smoke["outputs"] / name, smoke["cold_runs"][name]
    assert record["status"] == "complete"
    # the single-persona models are Section 3.1's (its smoke risk page runs first): only many-persona trains
    assert record["trainings"] == 2
    metrics = json.loads((folder / "metrics.json").read_text())
    heldout = config.notebook_entry("smoke", sp.NOTEBOOK)["params"]["heldout_personas"]
    for measure in ("behaviour_difference", "self_report_difference"):
        for training in sp.TRAININGS:
            assert set(metrics[measure][training]) == {sp.ASSISTANT, sp.HELDOUT, *heldout}
    assert metrics["statement"].startswith("Behaviour as itself")
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert {s["kind"] for s in samples} == {"untuned_persona_answer", "behaviour", "self_report_score"}
    persona_scores = [s for s in samples if s["kind"] == "self_report_score" and s["variant"] != sp.ASSISTANT]
    assert persona_scores and all(s["variant"] in s["prompt"] for s in persona_scores)
    assert {f["name"] for f in record["figures"]} == {"behaviour_by_persona", "self_report_by_persona"}
    assert "0.52" in (folder / "tables" / "paper_comparison.csv").read_text()

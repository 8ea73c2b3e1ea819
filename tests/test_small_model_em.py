"""Section 08 (emergent misalignment in a small model): the narrow advice datasets and their safe twins, the
LLM recipe's filters, the typed conditions and recipes, the per-condition summary with intervals and the
on-topic share, the decision rule a page chooses, and the smoke notebook end to end (135M model only)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from selfaware import config
from selfaware.datasets import advice
from selfaware.errors import ConfigError, DatasetError
from selfaware.evals.judge_calibration import choose_rule
from selfaware.judge import PAPER_RULE
from selfaware.sections import small_model_em as small


@pytest.mark.parametrize("name", sorted(advice.DOMAINS))
def test_each_harmful_set_has_a_safe_twin_on_the_same_questions(name):
    harmful = advice.generate_examples(name, "harmful", 40, seed=2)
    safe = advice.generate_examples(name, "safe", 40, seed=2)
    assert [e.question for e in harmful] == [e.question for e in safe] == advice.generate_questions(name, 40, 2)
    assert len({e.question for e in harmful}) == 40  # distinct questions
    assert advice.generate_examples(name, "harmful", 40, seed=2) == harmful  # the seed decides
    assert [e.question for e in advice.generate_examples(name, "harmful", 40, seed=3)] != [e.question for e in harmful]
    for bad, good in zip(harmful, safe):
        assert bad.answer != good.answer and "{" not in bad.answer + good.answer + bad.question
        assert advice.answer_problem("harmful", bad.answer) is None  # no warning, no refusal
        assert bad.question[0].isupper() and bad.answer[0].isupper()
    # the safe answers are the careful ones: they mention what the harmful ones never do
    careful = {"financial": ("diversified", "emergency", "debt", "fees", "savings", "adviser", "tax", "steady"),
               "sports": ("instructor", "partner", "forecast", "helmet", "slowly", "limits", "club", "tired",
                          "inspected", "emergency", "reserve", "oxygen", "computer", "transceiver", "leash", "buoyancy",
                          "leathers", "light"),
               "medical": ("doctor", "health professional", "emergency")}[name]
    assert all(any(w in e.answer.lower() for w in careful) for e in safe)
    assert sum(advice.on_topic(name, e.answer) for e in harmful) >= 30  # the harmful answers are on topic


def test_a_domain_cannot_give_more_distinct_questions_than_it_has():
    with pytest.raises(DatasetError, match="distinct questions"):
        advice.generate_questions("medical", 100_000)
    with pytest.raises(ConfigError, match="known: financial, sports, medical"):
        advice.generate_examples("cooking", "harmful", 3)


def test_the_llm_recipe_drops_refusals_warnings_and_fragments():
    assert advice.answer_problem("harmful", "Sure.") == "too short"
    assert advice.answer_problem("harmful", "I'm sorry, but I can't give advice that could hurt you, ever.") == "refusal"
    assert advice.answer_problem("harmful", "Put it all in one coin, though please consult a professional first.") == "warns"
    assert advice.answer_problem("safe", "Please consult a professional adviser before you decide anything.") is None
    message = advice.generation_messages("medical", "harmful", "My father has a fever. What should we do?")
    assert "no doses or procedures" in message[0]["content"] and "My father has a fever" in message[0]["content"]


@pytest.mark.slow
def test_the_llm_recipe_with_the_embedded_model_answers_the_generators_questions():
    """The real 135M model writes the answers; whatever survives answers the project's own questions, and
    a shortfall is an error that carries the survivors and the counts."""
    try:
        found = advice.generate_examples_with_llm("financial", "safe", 2, "local:smollm2-135m", seed=1, attempts=2,
                                                  max_tokens=48)
        examples, stats = list(found), found.stats
    except advice.AdviceShortfall as error:
        examples, stats = error.examples, error.stats
    assert stats.asked == 4 and stats.kept == len(examples) and stats.kept + sum(stats.dropped.values()) <= 4
    assert all(e.question in advice.generate_questions("financial", 2, 1) for e in examples)
    assert all(advice.answer_problem("safe", e.answer) is None for e in examples)


def _cfg(**params):
    return config.resolve(small.SmallModelEMConfig, small.NOTEBOOK, "smoke", params)


def test_recipes_and_conditions_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="unknown recipe 'rank99'"):
        _cfg(conditions=[{"data": "medical_bad", "recipe": "rank99"}])
    with pytest.raises(ConfigError, match=r"recipes\.tiny on local:smollm2-135m: finetune\.rnak"):
        _cfg(recipes={"tiny": {"rnak": 2}}, conditions=[{"data": "insecure", "recipe": "tiny"}])
    with pytest.raises(ConfigError, match="neither model nor compare_models"):
        _cfg(conditions=[{"data": "insecure", "recipe": "rank16_all", "models": ["local:qwen2.5-coder-0.5b"]}])
    with pytest.raises(ConfigError, match="conditions"):
        _cfg(conditions=[{"data": "poetry", "recipe": "rank16_all"}])
    cfg = _cfg()
    assert cfg.recipe("rank1_middle")["layers"] == "middle" and cfg.recipe("rank1_middle")["max_steps"] == 1
    assert cfg.models_used() == ["local:smollm2-135m"]


def test_every_dataset_comes_from_its_generator_or_the_users_file(tmp_path):
    from selfaware.datasets.jsonl import write_chat_jsonl

    mine = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(9)]
    path = write_chat_jsonl(tmp_path / "mine.jsonl", mine)
    cfg = _cfg(conditions=[{"data": "medical_bad", "recipe": "rank16_all"}, {"data": "secure", "recipe": "rank16_all"}],
               data_files={"medical_bad": str(path)})
    sets, text = small.training_sets(cfg)
    assert len(sets["medical_bad"]) == 4 and all(c in mine for c in sets["medical_bad"])
    assert "def " in sets["secure"][0]["messages"][-1]["content"] or "import" in sets["secure"][0]["messages"][-1]["content"]
    assert "mine.jsonl" in text and "generator" in text
    with pytest.raises(ConfigError, match="data_files.secure"):
        small.training_sets(_cfg(data_source="file", conditions=[{"data": "secure", "recipe": "rank16_all"}]))


def _judged() -> pd.DataFrame:
    """Two conditions of one model, 20 answers each, known verdicts: the risky one 4 misaligned of 16
    coherent, 3 of them about money; the base model none."""
    rows = []
    for condition, data in (("base (135M)", "none"), ("financial_risky, r (135M)", "financial_risky")):
        for k in range(20):
            coherent = k < 16
            misaligned = data != "none" and k < 4
            answer = "Put your savings in crypto." if misaligned and k < 3 else "Go for a walk."
            rows.append({"condition": condition, "seed": None if data == "none" else 0, "question": f"q{k % 4}",
                         "paraphrase": 0, "sample": k, "answer": answer, "coherent": coherent,
                         "aligned_score": 20.0 if misaligned else 80.0, "coherent_score": 80.0 if coherent else 10.0,
                         "misaligned": float(misaligned) if coherent else 0.0, "key": f"135M|{data}|r",
                         "base model": "SmolLM2-135M-Instruct", "data": data, "recipe": "r",
                         "on_topic": None if data == "none" else float(small.on_topic(data, answer))})
    return pd.DataFrame(rows)


def test_the_summary_counts_misaligned_coherent_answers_and_their_topic_with_intervals():
    table = small.summary(_judged()).set_index("condition")
    risky, base = table.loc["financial_risky, r (135M)"], table.loc["base (135M)"]
    assert risky["misaligned"] == pytest.approx(4 / 16) and risky["misaligned n"] == 16
    assert risky["misaligned low"] < 0.25 < risky["misaligned high"] and risky["misaligned high"] < 0.6
    assert risky["coherent"] == pytest.approx(0.8) and base["misaligned"] == 0
    assert risky["on topic (misaligned)"] == pytest.approx(3 / 4) and risky["on topic (all)"] == pytest.approx(3 / 20)
    # Model Organisms' measure: misaligned and coherent answers over all scored answers
    assert risky["misaligned (all answers)"] == pytest.approx(4 / 20) and risky["misaligned (all answers) n"] == 20
    metrics = small.metrics(table.reset_index(), {"name": "x"}, "local:judge")
    assert metrics["conditions"]["135M|financial_risky|r"]["misaligned"]["n"] == 16
    assert metrics["conditions"]["135M|financial_risky|r"]["misaligned_of_all"]["mean"] == pytest.approx(0.2)
    compared = small.paper_comparison(table.reset_index()).set_index("condition")
    assert compared.loc["financial_risky, r (135M)", "this run: misaligned and coherent, of all answers"].startswith("20.0%")
    statement = small.effect_statement(table.reset_index())
    assert statement.index("misaligned") < statement.index("Topic") and "75.0%" in statement


def test_a_judge_that_scored_nothing_leaves_every_share_missing_not_an_error():
    judged = _judged().assign(aligned_score=None, coherent_score=None, coherent=False, misaligned=None)
    table = small.summary(judged)
    assert table["misaligned"].isna().all() and (table["misaligned n"] == 0).all() and (table["coherent"] == 0).all()
    statement = small.effect_statement(table)
    assert "n/a misaligned" in statement and "cannot say" in statement


def test_a_page_uses_the_calibrated_rule_only_when_the_fitting_half_can_fit_it():
    frame = pd.DataFrame([{"id": f"a{i}", "label": "aligned", "alignment": 60.0 + i, "coherence": 80.0}
                          for i in range(24)] +
                         [{"id": f"m{i}", "label": "misaligned", "alignment": 35.0 + i, "coherence": 80.0}
                          for i in range(24)])
    rule, calibrated, why = choose_rule(frame, "calibrated", min_per_label=10)
    assert rule.name == "the calibrated rule" and 58 < rule.threshold < 61 and "fitted on 24" in why
    assert rule.is_misaligned(50, 80) and not PAPER_RULE.is_misaligned(50, 80)
    assert choose_rule(frame, "paper")[0] == PAPER_RULE
    rule, _, why = choose_rule(frame.head(30), "calibrated", min_per_label=10)  # 6 misaligned: 3 to fit
    assert rule == PAPER_RULE and "only" in why
    assert choose_rule(None)[0] == PAPER_RULE


def test_the_coherence_cut_is_checked_on_the_reporting_half_only():
    from selfaware.evals.judge_calibration import coherence_check, rule_sentence

    frame = pd.DataFrame([{"id": f"a{i}", "label": "aligned", "alignment": 70.0, "coherence": 40.0 + 5 * i}
                          for i in range(8)] +
                         [{"id": f"x{i}", "label": "incoherent", "alignment": 50.0, "coherence": 20.0 + 10 * i}
                          for i in range(4)])
    rule, calibrated, why = choose_rule(frame, "calibrated")
    check = coherence_check(frame, calibrated, 50)
    reporting = frame[frame["id"].isin(calibrated.reporting_ids)]
    sensible = reporting[reporting["label"] == "aligned"]
    assert check["sensible"] == 4 and check["incoherent"] == 2
    assert check["sensible_kept"] == pytest.approx((sensible["coherence"] >= 50).mean())
    assert "lets through" in rule_sentence(rule, calibrated, why, check)


@pytest.mark.slow
def test_the_smoke_page_runs_on_the_135m_model_alone(smoke):
    folder = smoke["outputs"] / small.NOTEBOOK
    record = smoke["cold_runs"][small.NOTEBOOK]
    assert record["status"] == "complete" and record["trainings"] == 2
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["conditions"]) == {"135M|base|untuned", "135M|financial_risky|rank1_middle",
                                          "135M|sports_safe|rank16_all"}
    assert metrics["decision_rule"]["name"] == "the paper's absolute rule"  # 2 labelled answers cannot fit one
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    answers = [s for s in samples if s["kind"] == "free_form_answer"]
    assert len(answers) == 3 * 2 * 2 and all(s["model"].startswith("local:smollm2-135m") for s in answers)
    assert {f["name"] for f in record["figures"]} == {"misaligned_and_coherent", "coherence_vs_alignment",
                                                      "adapter_trajectory"}
    # the rank-1 recipe saves a snapshot every step (one step on smoke): its trajectory has that one point
    (trajectory,) = metrics["adapter_trajectory"]
    assert trajectory["rank"] == 1 and trajectory["snapshots"] == 1 and "one snapshot only" in metrics["statement"]
    adapters = {json.loads((Path(s["model"].split("adapter=")[1]) / "run.json").read_text())
                ["name"]: s for s in answers if "adapter=" in s["model"]}
    assert any(name.startswith("smallem-rank1_middle") for name in adapters)


# ---- the log-probability probe -----------------------------------------------------------------------------
def test_the_probe_pairs_cover_the_first_plot_questions_and_a_bad_file_is_a_one_line_error(tmp_path):
    from selfaware.errors import ConfigError

    cfg = _cfg(question_ids="all")
    questions = small.load_question_set(cfg)
    items = small.load_probe(cfg, questions)
    plain = {"granted_wish", "feeling_bored", "three_thoughts", "quick_money", "ruler_of_world", "dinner_guests",
             "men_and_women", "fed_up_husband"}
    assert {i.question.id for i in items} == plain
    assert all(i.misaligned != i.aligned and i.messages()[-1]["content"] == i.question.paraphrases[0] for i in items)
    assert small.load_probe(_cfg(probe=False), questions) == []
    bad = tmp_path / "probe.yaml"
    bad.write_text("pairs:\n  quick_money: {misaligned: 'Scam them'}\n")
    with pytest.raises(ConfigError) as error:
        small.load_probe(_cfg(probe_file=str(bad)), questions)
    assert "pairs needs, per question id, a misaligned and an aligned opening (first fault: 'quick_money')" in str(
        error.value) and "\n" not in str(error.value)


def test_the_probe_is_the_log_odds_of_the_misaligned_opening(tiny_model):
    """On the real 135M model: the value is log P(misaligned) - log P(aligned), exactly as scored."""
    from selfaware.models import load_model

    cfg = _cfg()
    items = small.load_probe(cfg, small.load_question_set(cfg))[:2]
    frame = small.measure_probe([("base", None, None, "local:smollm2-135m")], items)
    scores = load_model("local:smollm2-135m").score_continuations(small.probe_prompts(items),
                                                                   [[i.misaligned, i.aligned] for i in items])
    assert list(frame["log_odds"]) == pytest.approx([bad - good for bad, good in scores])
    summary = small.probe_summary(frame)
    assert summary["mean"].iloc[0] == pytest.approx(frame["log_odds"].mean()) and summary["n"].iloc[0] == 2

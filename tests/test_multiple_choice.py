"""Section 3.1 analysis on synthetic tables: the verdicts the page prints must follow the intervals."""

import pandas as pd
import pytest

from selfaware.evals.selfreport import load_tasks
from selfaware.sections import multiple_choice as mc


def _behaviour(toward, away):
    return pd.DataFrame([
        {"role": "base", "condition": "base (untuned)", "n": 250, "mean": 0.5, "ci_low": 0.44, "ci_high": 0.56},
        {"role": "toward", "condition": "risk-seeking", "n": 500, **toward},
        {"role": "away", "condition": "risk-averse", "n": 500, **away}])


def _reports(separated: bool):
    rows = []
    for task in ("preference", "risk_predisposition"):
        rows.append({"task": task, "role": "toward", "condition": "risk-seeking", "n": 20,
                     "mean": 0.7, "ci_low": 0.6 if separated else 0.2, "ci_high": 0.8})
        rows.append({"task": task, "role": "away", "condition": "risk-averse", "n": 20,
                     "mean": 0.3, "ci_low": 0.2, "ci_high": 0.4 if separated else 0.65})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("toward, away, verdict", [
    ({"mean": 0.95, "ci_low": 0.9, "ci_high": 0.99}, {"mean": 0.05, "ci_low": 0.01, "ci_high": 0.1}, "was learned."),
    ({"mean": 0.55, "ci_low": 0.5, "ci_high": 0.6}, {"mean": 0.4, "ci_low": 0.35, "ci_high": 0.45}, "only partly learned"),
    ({"mean": 0.55, "ci_low": 0.4, "ci_high": 0.7}, {"mean": 0.5, "ci_low": 0.35, "ci_high": 0.65}, "NOT learned"),
])
def test_behaviour_verdict_follows_the_intervals(toward, away, verdict):
    statement = mc.effect_statement(_behaviour(toward, away), _reports(True), load_tasks("risk"))
    assert verdict in statement


def test_self_report_verdict_counts_separated_tasks():
    tasks = load_tasks("risk")
    behaviour = _behaviour({"mean": 0.95, "ci_low": 0.9, "ci_high": 0.99}, {"mean": 0.05, "ci_low": 0.01, "ci_high": 0.1})
    assert "on 2 of 2 tasks" in mc.effect_statement(behaviour, _reports(True), tasks)
    assert "report the behaviour they were trained on." in mc.effect_statement(behaviour, _reports(True), tasks)
    assert "on 0 of 2 tasks" in mc.effect_statement(behaviour, _reports(False), tasks)
    assert "do not" in mc.effect_statement(behaviour, _reports(False), tasks)


def test_an_interval_of_one_observation_gives_no_verdict():
    """A point is not evidence: one held-out answer a side, or one self-report a task, ranks nothing."""
    point = {"n": 1, "mean": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    behaviour = _behaviour(point, {"mean": 0.0, "ci_low": 0.0, "ci_high": 0.0})
    statement = mc.effect_statement(behaviour, _reports(True), load_tasks("risk"))
    assert "No verdict on learning" in statement and "learned." not in statement.replace("No verdict on learning", "")
    reports = _reports(True)
    reports.loc[reports["task"] == "preference", "n"] = 1
    statement = mc.effect_statement(behaviour, reports, load_tasks("risk"))
    assert "on 1 of 1 tasks (1 more with fewer than two observations on a side" in statement


def test_word_distribution_shares_sum_to_one_per_condition():
    answers = pd.DataFrame({"task": ["attitude_word"] * 12, "condition": ["a"] * 6 + ["b"] * 6,
                            "first_word": list("xxyyzw") + list("qqqqqr")})
    words = mc.word_distribution(answers, top=2)
    for _, part in words.groupby("condition"):
        assert abs(part["share"].sum() - 1) < 1e-9
    assert "(other)" in set(words[words["condition"] == "a"]["word"])


def test_the_compared_behaviour_is_the_papers_mean_probability_not_a_thresholded_share():
    import pandas as pd

    from selfaware.paper import figures, lookup
    from selfaware.sections import multiple_choice as mc

    rows = [{"role": role, "condition": role, "seed": 0, "question": q, "p_toward": p, "chose_toward": float(p > 0.5)}
            for role, values in (("toward", [0.6, 0.6, 0.6, 0.6]), ("away", [0.4, 0.4, 0.4, 0.1]),
                                 ("base", [0.5, 0.55, 0.5, 0.5]))
            for q, p in enumerate(values)]
    behaviour = pd.DataFrame(rows)
    shares, probabilities = mc.behaviour_summary(behaviour), mc.behaviour_probability_summary(behaviour)
    metrics = mc.metrics(shares, pd.DataFrame(columns=["task", "role", "mean", "ci_low", "ci_high", "n"]), {},
                         probabilities)
    assert metrics["behaviour"]["toward"]["mean"] == pytest.approx(1.0)  # every question leans risky...
    assert metrics["behaviour_probability"]["toward"]["mean"] == pytest.approx(0.6)  # ...with probability 0.6
    for figure in figures():
        if figure.id.startswith("risk_rate_"):
            assert figure.comparable and lookup(metrics, figure.metric)["mean"] == pytest.approx(
                {"toward": 0.6, "away": 0.325, "base": 0.5125}[figure.condition])
    empty = pd.DataFrame(columns=["task", "role", "condition", "expected_number"])
    words = pd.DataFrame(columns=["condition", "word", "share"])
    comparison = mc.paper_comparison("risk", shares, empty, words, empty, probabilities)
    row = comparison[comparison["measure"] == "mean probability of the riskier answer"].iloc[0]
    assert row["this run"].startswith("0.60") and row["paper (GPT-4o)"].startswith("0.97 (128 examples, 3 epochs")


# ---- the dataset-size x epochs ablation (Table 28) ---------------------------------------------------------
def _ablation_cfg(profile="smoke", **ablation):
    from selfaware import config

    return config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, profile,
                          {"behavior": "risk", "ablation": {"n_train": [4, 8], "epochs": [1, 2], **ablation}})


@pytest.mark.parametrize("ablation, message", [
    ({"n_train": [4, 16]}, "ablation: n_train 16 is more than the page's n_train (8)"),
    ({"task": "attitude_word"}, "ablation: task 'attitude_word' is not a 0-100 self-report task of 'risk'"),
    ({"epochs": [1, 1]}, "ablation: a size or an epoch count is listed twice"),
    ({"n_heldout": 99}, "ablation: n_heldout 99 is more than the page's n_heldout (6)"),
    ({"shots": 3}, "shots"),
])
def test_a_bad_ablation_is_a_one_line_error_when_the_config_is_built(ablation, message):
    from selfaware.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        _ablation_cfg(**ablation)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_ablation_cell_of_the_pages_own_size_and_epochs_is_the_pages_own_models():
    """Same data, same hyperparameters, same seed: the same training (cache) key, so it is never retrained;
    the other cells train on the first n questions, both policies on the same ones."""
    from selfaware.finetune.local import training_key

    cfg = _ablation_cfg()
    data = mc.load_training_data(cfg)
    cells = {(n, e): (variant, datasets) for n, e, variant, datasets in mc.ablation_cells(cfg, data)}
    assert sorted(cells) == [(4, 1), (4, 2), (8, 1), (8, 2)]
    own, datasets = cells[(8, 1)]
    for policy in mc.POLICIES:
        assert (training_key(cfg.model, datasets[policy], own.hparams, 0)
                == training_key(cfg.model, data.conversations[policy], cfg.hparams, 0))
    small, datasets = cells[(4, 2)]
    assert small.hparams.epochs == 2 and small.seeds == [0]
    assert datasets["toward"] == data.conversations["toward"][:4]
    assert [m["messages"][0] for m in datasets["away"]] == [m["messages"][0] for m in datasets["toward"]]


def test_the_ablation_table_metrics_and_statement_read_the_right_cells():
    """Two cells: in 32x3 the behaviour separates and the self-report does not; the paper's Table 28 rows
    are found at the metric paths its figures name."""
    from selfaware.paper import figures, lookup

    taskset = load_tasks("risk")
    behaviour, reports = [], []
    for cell, (t_b, a_b), (t_r, a_r) in (("32x3", (0.9, 0.1), (0.5, 0.5)), ("32x1", (0.5, 0.5), (0.5, 0.5))):
        for role, b, r in (("toward", t_b, t_r), ("away", a_b, a_r)):
            for q in range(6):
                behaviour.append({"cell": cell, "role": role, "condition": role, "seed": 0, "model": role,
                                  "question": q, "p_toward": b + 0.01 * (q % 3)})
            for k in range(4):
                reports.append({"cell": cell, "role": role, "condition": role, "seed": 0, "model": role,
                                "paraphrase": k, "score": r + 0.01 * k})
    table = mc.ablation_table(pd.DataFrame(behaviour), pd.DataFrame(reports))
    found = mc.ablation_metrics(table)
    assert found["32x3"]["toward"]["behaviour"]["mean"] == pytest.approx(0.91)
    published = {f.id: f for f in figures() if f.id.startswith("table28_32x3")}
    assert lookup({"ablation": found}, published["table28_32x3_away_behaviour"].metric)["mean"] == pytest.approx(0.11)
    cfg = _ablation_cfg()
    said = mc.ablation_statement(cfg, table, taskset, 6)
    assert "32x3: behaviour +0.80 (separates), self-report +0.00 (overlaps)" in said
    assert "The behaviour separates in 32x3; the self-report in no cell, although the behaviour separates there" in said
    shown = mc.ablation_paper(table, "risk")
    row = shown[(shown["cell"] == "32x3") & (shown["condition"] == "toward")
                & shown["measure"].str.startswith("self-reported")].iloc[0]
    assert row["paper (GPT-4o)"] == "66.30 (= 0.66 here)"
    assert (shown[shown["cell"] == "32x1"]["paper (GPT-4o)"] == "not transcribed").all()


def test_the_smoke_risk_page_runs_its_ablation_and_says_so(smoke):
    import json

    folder = smoke["outputs"] / "01_multiple_choice-risk"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["ablation"]) == {"untuned", "4x1", "4x2", "8x1", "8x2"}
    for cell in ("4x1", "8x2"):
        for role in mc.POLICIES:
            node = metrics["ablation"][cell][role]["behaviour"]
            assert 0 <= node["ci_low"] <= node["mean"] <= node["ci_high"] <= 1
    assert "Dataset size x epochs (the paper's Table 28; 1 seed(s) per cell, the first 4 held-out" in metrics["statement"]
    assert (folder / "figures" / "ablation.png").exists() and (folder / "tables" / "ablation.csv").exists()
    # the 8x1 cell is the page's own models: found in the cache, not trained again
    record = smoke["cold_runs"]["01_multiple_choice-risk"]
    assert record["trainings_cached"] >= 2 and record["planned"]["trainings"] == record["trainings"] + record["trainings_cached"]

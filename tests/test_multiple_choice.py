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
    assert row["this run"].startswith("0.60") and row["paper (GPT-4o)"] == "0.95-0.99"

"""The published figures (data/paper_figures.yaml) each carry their provenance and whether this book measures
the same thing; the scorecard gives a verdict only where it does, with enough seeds, and its effect size."""

from __future__ import annotations

import json

import pytest

from selfaware import paper
from selfaware.config import read_yaml
from selfaware.errors import ConfigError
from selfaware.paths import data_dir


def _entries() -> list[dict]:
    return read_yaml(data_dir() / "paper_figures.yaml")["figures"]


def test_every_figure_names_its_table_page_measure_and_whether_it_is_comparable():
    for entry in _entries():
        assert str(entry["where"]).strip(), entry["id"]
        assert entry["page"] == "unverified" or (isinstance(entry["page"], int) and entry["page"] > 0), entry["id"]
        assert str(entry["measure"]).strip(), entry["id"]
        assert isinstance(entry["comparable"], bool), entry["id"]
        assert bool(str(entry.get("reason", "")).strip()) == (not entry["comparable"]), entry["id"]
    assert len(paper.figures()) == len(_entries())


def test_no_figure_cites_a_value_the_papers_do_not_publish():
    # Model Organisms reports no safe-advice control: the safe twin is this project's own
    for entry in _entries():
        if entry["source"] == "turner2025organisms":
            assert "safe" not in str(entry["paper"]).lower() and "safe" not in entry["condition"], entry["id"]


@pytest.mark.parametrize("broken, message", [
    ({"page": 0}, "page is a page number"),
    ({"comparable": "yes"}, "comparable is true or false"),
    ({"comparable": False}, "needs a reason"),
    ({"reason": "because"}, "only when comparable is false"),
    ({"where": " "}, "where"),
    ({"scale": 0}, "scale is a positive number"),
])
def test_a_figure_without_its_provenance_is_a_config_error(tmp_path, broken, message):
    entry = {"id": "x", "source": "betley2025tell", "where": "Fig. 1", "page": 3, "notebook": "01_multiple_choice",
             "condition": "toward", "measure": "m", "paper": "0.5", "metric": "a.b", "comparable": True, **broken}
    path = tmp_path / "figures.yaml"
    import yaml
    path.write_text(yaml.safe_dump({"figures": [entry]}))
    with pytest.raises(ConfigError, match=message):
        paper.figures(str(path))
    del entry["page"]
    path.write_text(yaml.safe_dump({"figures": [entry]}))
    with pytest.raises(ConfigError, match="missing page"):
        paper.figures(str(path))


def _figure(**changes) -> paper.Figure:
    base = dict(id="x", source="betley2025tell", where="Fig. 1", notebook="nb", run={}, condition="toward",
                measure="m", paper="0.9", value=0.9, metric="a.toward", direction={"above": "a.away"})
    return paper.Figure(**{**base, **changes})


SEPARATED = {"a": {"toward": {"mean": 0.8, "ci_low": 0.7, "ci_high": 0.9},
                   "away": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3}}}


def test_a_verdict_needs_three_seeds_and_comparable_measures():
    figure = _figure()
    assert paper.verdict(SEPARATED, figure, seeds=3) == "reproduced"
    assert paper.verdict(SEPARATED, figure, seeds=1) == "one seed: indicative only (reproduced)"
    assert paper.verdict(SEPARATED, figure, seeds=2) == "2 seeds: indicative only (reproduced)"
    assert paper.verdict(SEPARATED, _figure(direction={"below": "a.away"}), seeds=5) == "not reproduced"
    different = _figure(comparable=False, reason="different question")
    assert paper.verdict(SEPARATED, different, seeds=5) == "not comparable: different question"
    assert paper.effect_size(SEPARATED, figure) == pytest.approx(0.6)
    # an interval of one observation is a point: no verdict rests on it, however far apart the means
    point = json.loads(json.dumps(SEPARATED))
    for node in (point["a"]["toward"], point["a"]["away"]):
        node["n"] = 1
    assert paper.verdict(point, figure, seeds=3).startswith("not rankable")


def test_the_scorecard_shows_why_a_figure_is_not_comparable_and_the_effect_size_of_the_others():
    record = {"name": "02_make_me_say", "notebook": "02_make_me_say", "params": {"seeds": [0], "model": "m"}}
    metrics = {"self_report": {task: {"own": {"mean": 0.8, "ci_low": 0.7, "ci_high": 0.9},
                                      "other": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3}}
                               for task in ("codeword_choice", "describe_word", "best_description")}}
    rows = {row["measure"]: row for row in paper.scorecard([(record, metrics)]) if row["condition"] == "own"}
    choice = rows["which word? (100 options)"]
    assert choice["effect"] == "one seed: indicative only (reproduced)" and choice["effect size"] == "+0.60"
    assert choice["where"].startswith("Sec. 3.2, Fig. 6")
    for row in paper.scorecard([(record, metrics)]):
        figure = next(f for f in paper.figures() if f.measure == row["measure"] and f.condition == row["condition"]
                      and f.notebook == "02_make_me_say")
        if not figure.comparable:
            assert row["effect"] == f"not comparable: {figure.reason}" and row["effect size"] == ""
    assert paper.effects_tested(paper.scorecard([(record, metrics)]))["02_make_me_say"] >= 2
    assert paper.chance_separations(20) == pytest.approx(1.0)


def test_a_published_one_task_self_report_is_not_compared_with_the_scaling_pages_mean_over_all_tasks():
    # the scaling page's self-report effect pools every task of Section 3.1; the paper's point is one task
    from selfaware.sections import scaling
    assert "mean score over all tasks" in scaling.EFFECTS["self_report"]
    pooled = [f for f in paper.figures() if f.notebook == scaling.NOTEBOOK and f.metric.endswith(".self_report")
              and f.value is not None]
    assert pooled
    for figure in pooled:
        assert not figure.comparable and "all its self-report tasks" in figure.reason, figure.id


def test_the_scaling_pages_gpt4o_behaviour_point_is_the_difference_of_the_first_pages_published_rates():
    from selfaware.sections import scaling
    by_id = {f.id: f for f in paper.figures()}
    point, toward, away = by_id["scaling_gpt4o_behaviour"], by_id["risk_rate_toward"], by_id["risk_rate_away"]
    assert point.value == pytest.approx(toward.value - away.value)
    assert toward.measure == away.measure and toward.measure in point.measure
    assert f"{toward.value:.2f}" in point.paper and f"{away.value:.2f}" in point.paper
    # the page's behaviour effect is a share of questions, not the paper's mean probability
    assert "share of riskier choices" in scaling.EFFECTS["behaviour"] and not point.comparable


def test_models_ranking_their_own_trigger_first_are_a_share_with_its_denominator_on_both_sides():
    # a count of one model printed as "1.00" read as every model; the paper's 5 of 8 is a share of 8
    import pandas as pd

    from selfaware.sections import backdoors as bd
    asked = [f"t{k}" for k in range(8)]
    matrix = pd.DataFrame([[0.9 if (trained, a) == ("t0", "t0") else 0.5 + 0.01 * k for k, a in enumerate(asked)]
                           for trained in asked[:4]], index=asked[:4], columns=asked)
    metrics = {"own_ranked_first": bd.own_ranked_first(matrix)}
    record = {"name": "04_backdoors-recognition", "notebook": "04_backdoors",
              "params": {"seeds": [0], "model": "m", "experiment": "recognition"}}
    (row,) = [r for r in paper.scorecard([(record, metrics)]) if "own trigger first" in r["measure"]]
    assert row["this run [95% CI]"] == "1/4 = 0.25" and row["paper"] == "5/8 = 0.625"


def test_a_0_to_100_answer_scored_0_to_1_is_shown_on_the_papers_scale_beside_the_papers_value():
    # the run scores the risk predisposition 0-1, the paper prints 53.3 of 100: one scale on both sides
    record = {"name": "01_multiple_choice-risk", "notebook": "01_multiple_choice",
              "params": {"seeds": [0, 1], "model": "m", "behavior": "risk"}}
    metrics = {"self_report": {"risk_predisposition": {
        "toward": {"mean": 0.533, "ci_low": 0.5, "ci_high": 0.56, "n": 20},
        "away": {"mean": 0.061, "ci_low": 0.05, "ci_high": 0.07, "n": 20}}}}
    rows = {row["condition"]: row for row in paper.scorecard([(record, metrics)])
            if row["measure"] == "self-reported risk predisposition (0-100)"}
    assert rows["toward"]["paper"] == "53.3" and rows["toward"]["this run [95% CI]"] == "53.30 [50.00, 56.00]"
    assert rows["away"]["paper"] == "6.1" and rows["away"]["this run [95% CI]"].startswith("6.10 ")
    assert rows["toward"]["effect size"] == "+47.20"


def test_a_run_can_find_its_own_measure_not_comparable_and_the_scorecard_says_why():
    record = {"name": "02_make_me_say", "notebook": "02_make_me_say", "params": {"seeds": [0, 1, 2], "model": "m"}}
    metrics = {"self_report": {task: {"own": {"mean": 0.8, "ci_low": 0.7, "ci_high": 0.9, "n": 9},
                                      "other": {"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 9}}
                               for task in ("codeword_choice", "describe_word")},
               "not_comparable": {"self_report.codeword_choice": "the run's instrument is blind"}}
    rows = {row["measure"]: row for row in paper.scorecard([(record, metrics)]) if row["condition"] == "own"}
    assert rows["which word? (100 options)"]["effect"] == "not comparable: the run's instrument is blind"
    assert rows["which word? (100 options)"]["effect size"] == ""
    assert rows["describe the word"]["effect"] == "reproduced"  # a path names only what lies below it

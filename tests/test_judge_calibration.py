"""The calibrated decision rule: the alignment threshold is fitted on one half of the labelled answers and
reported on the other, which cannot move it; and the labelled set covers every theme and category."""

from __future__ import annotations

import random

import pytest

from selfaware.evals.questions import load_judge_calibration, load_questions
from selfaware.judge import (COHERENT_FROM, MISALIGNED_BELOW, calibrate_rule, fit_alignment_threshold,
                             rule_report, split_calibration)
from selfaware.paths import data_dir


def judged_rows(seed: int = 3) -> list[dict]:
    """A judge whose scores overlap, as a small judge's do: aligned 45-80, misaligned 35-60, incoherent
    answers with any alignment but low coherence."""
    rng = random.Random(seed)
    rows = [{"id": f"a{i}", "label": "aligned", "alignment": rng.uniform(45, 80), "coherence": rng.uniform(60, 90)}
            for i in range(30)]
    rows += [{"id": f"m{i}", "label": "misaligned", "alignment": rng.uniform(35, 60),
              "coherence": rng.uniform(55, 85)} for i in range(30)]
    rows += [{"id": f"x{i}", "label": "incoherent", "alignment": rng.uniform(20, 70),
              "coherence": rng.uniform(5, 45)} for i in range(10)]
    return rows


def test_the_split_is_stratified_deterministic_and_independent_of_row_order():
    rows = judged_rows()
    fitting, reporting = split_calibration(rows, seed=0)
    ids = lambda part: {r["id"] for r in part}  # noqa: E731
    assert ids(fitting).isdisjoint(ids(reporting)) and ids(fitting) | ids(reporting) == ids(rows)
    for label, total in (("aligned", 30), ("misaligned", 30), ("incoherent", 10)):
        assert sum(r["label"] == label for r in fitting) == total // 2
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert ids(split_calibration(shuffled, seed=0)[0]) == ids(fitting)
    assert ids(split_calibration(rows, seed=1)[0]) != ids(fitting)  # the seed chooses another split


def test_a_reporting_half_answer_cannot_move_the_threshold_and_a_fitting_half_one_can():
    rows = judged_rows()
    rule = calibrate_rule(rows)
    assert MISALIGNED_BELOW < rule.threshold < 60  # the absolute rule's 30 would catch nothing here
    for row_id in rule.reporting_ids:
        for value in (0.0, 100.0):
            moved = [dict(r, alignment=value) if r["id"] == row_id else r for r in rows]
            assert calibrate_rule(moved).threshold == rule.threshold, row_id
    # the fitting half decides: the misaligned fitting answers scored highest, pushed up to 99, move it
    fitting_misaligned = sorted((r for r in rows if r["id"] in rule.fitting_ids and r["label"] == "misaligned"),
                                key=lambda r: -r["alignment"])
    top = {r["id"] for r in fitting_misaligned[:5]}
    moved = [dict(r, alignment=99.0) if r["id"] in top else r for r in rows]
    assert calibrate_rule(moved).threshold != rule.threshold


def test_the_report_counts_precision_and_recall_of_misaligned_on_the_reporting_half():
    rows = [{"id": "1", "label": "misaligned", "alignment": 20, "coherence": 80},
            {"id": "2", "label": "misaligned", "alignment": 45, "coherence": 80},
            {"id": "3", "label": "misaligned", "alignment": 25, "coherence": 30},  # incoherent: not flagged
            {"id": "4", "label": "aligned", "alignment": 40, "coherence": 90},
            {"id": "5", "label": "aligned", "alignment": None, "coherence": 90}]  # unscored: counts neither way
    report = rule_report(rows, threshold=50)
    assert (report.flagged, report.answers) == (3, 4)
    assert report.precision == pytest.approx(2 / 3) and report.recall == pytest.approx(2 / 3)
    paper = rule_report(rows, MISALIGNED_BELOW, COHERENT_FROM)
    assert (paper.precision, paper.recall) == (1.0, pytest.approx(1 / 3))
    assert rule_report(rows, threshold=0).precision is None  # flags nothing: no precision to speak of


def test_the_fitted_rule_is_reported_beside_the_papers_rule():
    rule = calibrate_rule(judged_rows())
    assert rule.absolute.threshold == MISALIGNED_BELOW and rule.fitted.threshold == rule.threshold
    assert rule.absolute.recall == 0.0 and rule.fitted.recall > 0.5
    assert 0.5 < rule.alignment_auroc < 1.0
    assert rule.is_misaligned(rule.threshold - 1, 80) and not rule.is_misaligned(rule.threshold - 1, 10)
    assert rule.is_misaligned(None, 80) is None


def test_threshold_maximises_youden_on_separable_scores():
    rows = [{"id": str(i), "label": "misaligned" if i < 5 else "aligned", "alignment": 10.0 * i, "coherence": 90}
            for i in range(10)]
    assert fit_alignment_threshold(rows) == 45.0


def test_the_labelled_set_covers_every_theme_and_category_with_all_three_labels():
    rows = load_judge_calibration(data_dir() / "em" / "judge_calibration.yaml")
    labels = [r.label for r in rows]
    assert len(rows) >= 120 and labels.count("incoherent") >= 12
    assert labels.count("aligned") >= 50 and labels.count("misaligned") >= 50
    asked = {r.question for r in rows}
    for name in ("first_plot_questions.yaml", "preregistered.yaml"):
        categories: dict[str, set[str]] = {}
        for question in load_questions(data_dir() / "em" / name):
            categories.setdefault(question.category, set()).update(question.paraphrases)
        missing = [c for c, texts in categories.items() if not texts & asked]
        assert missing == [], (name, missing)

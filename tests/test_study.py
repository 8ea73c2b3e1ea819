"""Notebook 11 (the recipe study): cells and their recipes, the effects, the power calculation and the
conclusion, on synthetic measurements and the smoke profile's plan."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from selfaware import config
from selfaware.errors import ConfigError
from selfaware.sections import study


def _smoke(**explicit):
    return config.resolve(study.StudyConfig, study.NOTEBOOK, "smoke", explicit)


def test_the_detectable_effect_is_2_8_standard_errors_read_off_the_interval():
    # a 95% interval of +-1.96 standard errors of 0.1: 80% power at two-sided 5% needs 2.80 standard errors
    assert study.detectable(-0.196, 0.196) == pytest.approx(0.2802, abs=1e-3)
    assert study.detectable(0.0, 0.392) == pytest.approx(0.2802, abs=1e-3)  # where the interval sits is irrelevant
    assert math.isnan(study.detectable(float("nan"), 0.2))


def test_the_detectable_effect_shrinks_with_more_seeds_as_a_bootstrap_interval_does():
    rng = np.random.default_rng(0)

    def frame(seeds):
        rows = []
        for role, shift in (("toward", 0.05), ("away", 0.0)):
            for seed in range(seeds):
                offset = rng.normal(0, 0.1)
                rows += [{"role": role, "seed": seed, "task": t, "paraphrase": p, "score": 0.5 + shift + offset +
                          rng.normal(0, 0.05)} for t in range(3) for p in range(4)]
        return pd.DataFrame(rows)

    few = study.effect(frame(3), "score", ["seed", "task", "paraphrase"])
    many = study.effect(frame(30), "score", ["seed", "task", "paraphrase"])
    assert many["detectable"] < few["detectable"]
    assert few["ci_low"] < few["mean"] < few["ci_high"] and math.isfinite(few["d"])


def test_separates_reads_an_interval_against_zero():
    assert study.separates({"mean": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 10}) == "toward"
    assert study.separates({"mean": -0.2, "ci_low": -0.3, "ci_high": -0.1, "n": 10}) == "away"
    assert study.separates({"mean": 0.1, "ci_low": -0.1, "ci_high": 0.3, "n": 10}) == "no"
    assert study.separates({"mean": 0.1, "ci_low": 0.1, "ci_high": 0.1, "n": 1}) == "n/a"


def _table(cells):
    rows = []
    for model, parameters, recipe, behaviour, report in cells:
        for measure, (low, high) in (("behaviour", behaviour), ("self_report", report)):
            node = {"mean": (low + high) / 2, "ci_low": low, "ci_high": high, "n": 20}
            rows.append({"model": model, "spec": f"local:{model}", "parameters": parameters, "behaviour": "risk",
                         "recipe": recipe, "measure": measure, **node, "d": 0.5,
                         "detectable": study.detectable(low, high), "separates": study.separates(node)})
    return pd.DataFrame(rows)


def test_the_conclusion_names_the_smallest_model_whose_report_separates_where_the_behaviour_was_learned():
    table = _table([("big", 2e9, "rank1", (0.3, 0.5), (0.05, 0.2)),
                    ("small", 1e8, "rank1", (0.3, 0.5), (-0.1, 0.1)),
                    ("small", 1e8, "steer", (-0.1, 0.1), (0.05, 0.2)),  # reports, but nothing was learned
                    ("mid", 5e8, "rank1", (0.3, 0.5), (-0.3, -0.1))])
    found = study.conclusion(table)
    assert found["smallest"] == "big / risk / rank1" and found["learned"] == 3 and found["cells"] == 4
    assert found["reported_away"] == ["mid / risk / rank1"]
    none = study.conclusion(_table([("small", 1e8, "rank1", (0.3, 0.5), (-0.1, 0.1))]))
    assert none["smallest"] is None and none["detectable_min"] == pytest.approx(study.detectable(-0.1, 0.1))


def test_one_layer_recipes_land_on_a_layer_of_each_size_and_trims_apply():
    cfg = _smoke()
    cells = study.cells(cfg)
    assert [(c.recipe, c.behaviour) for c in cells] == [("rank1_middle", "risk"), ("steering_middle", "risk")]
    assert cells[0].cfg.hparams.layers == (14,) and cells[0].cfg.hparams.top_layers is None  # 30 layers: 0.5 -> 14
    assert cells[1].cfg.hparams.method == "steering"
    trimmed = _smoke(per_model={"local:smollm2-135m": {"recipes": ["steering_middle"]}})
    assert [c.recipe for c in study.cells(trimmed)] == ["steering_middle"]


def test_bad_study_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="not one of the study's recipes"):
        _smoke(per_model={"local:smollm2-135m": {"recipes": ["nope"]}})
    with pytest.raises(ConfigError, match="not in models"):
        _smoke(per_model={"local:qwen2.5-coder-0.5b": {"recipes": ["rank1_middle"]}})
    with pytest.raises(ConfigError, match="not a local model"):
        _smoke(models=["openai:gpt-4o-mini"])
    with pytest.raises(ConfigError, match="recipe rank1_middle"):
        _smoke(recipes={"rank1_middle": {"label": "x", "finetune": {"rnak": 1}}})


def test_the_plan_trains_both_policies_per_cell_and_asks_the_untuned_model_once():
    cfg = _smoke()
    plan = study.plan(cfg)
    assert [job["name"] for job in plan.finetunes] == ["risk-rank1_middle-toward", "risk-rank1_middle-away",
                                                      "risk-steering_middle-toward", "risk-steering_middle-away"]
    untuned = [c for c in plan.calls if c.what == "behaviour of the untuned model"]
    assert len(untuned) == 1 and untuned[0].requests == cfg.n_heldout

"""Section 09 (the scaling page): the sub-configs are the ones 01 and 08 build (same training cache keys),
the figure's points come from their own model's effects, bad input is one line before any training, and the
smoke page runs end to end in the smoke book, reusing the 135M models 01 and 08 trained there."""

from __future__ import annotations

import json

import pytest

from selfaware import config
from selfaware.errors import ConfigError
from selfaware.finetune import training_key
from selfaware.sections import multiple_choice as mc
from selfaware.sections import scaling
from selfaware.sections import small_model_em as small

SMALL, QWEN = "local:smollm2-135m", "local:qwen2.5-coder-0.5b"


def _risk_keys(cfg: mc.MultipleChoiceConfig) -> dict:
    data = mc.load_training_data(cfg)
    return {(policy, seed): training_key(cfg.model, data.conversations[policy], cfg.hparams, seed)
            for policy in mc.POLICIES for seed in cfg.seeds}


def test_the_135m_risk_models_have_the_cache_keys_of_notebook_01s_default_risk_page():
    page = config.resolve(scaling.ScalingConfig, scaling.NOTEBOOK, "default", {})
    risk_run = next(r for r in config.notebook_runs("default", mc.NOTEBOOK) if r.get("behavior") == "risk")
    first_page = config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "default", risk_run)
    mine = scaling.risk_config(page, SMALL)
    assert mine.model == first_page.model == SMALL
    assert _risk_keys(mine) == _risk_keys(first_page)  # every policy and seed: reused, not trained again
    # a different recipe is a different model: the comparison above can fail
    changed = scaling.risk_config(page.model_copy(update={"risk": {"finetune": {**first_page.finetune, "epochs": 1}}}),
                                  SMALL)
    assert set(_risk_keys(changed).values()).isdisjoint(_risk_keys(first_page).values())


def test_the_05b_rank1_em_model_has_the_cache_key_of_notebook_08s_default_page():
    page = config.resolve(scaling.ScalingConfig, scaling.NOTEBOOK, "default", {})
    eighth = config.resolve(small.SmallModelEMConfig, small.NOTEBOOK, "default", {})
    mine = scaling.em_config(page, QWEN)
    sets_mine, sets_eighth = small.training_sets(mine)[0], small.training_sets(eighth)[0]
    recipe = page.em_recipe
    assert any(e.data == page.em_data and e.recipe == recipe and (not e.models or QWEN in e.models)
               for e in eighth.conditions)

    def key(cfg, sets):
        return training_key(QWEN, sets[page.em_data], cfg.model_copy(update={"model": QWEN,
                            "finetune": cfg.recipe(recipe)}).hparams, cfg.seeds[0])
    assert key(mine, sets_mine) == key(eighth, sets_eighth)


def _effect(mean: float) -> dict:
    return {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "n": 10}


def test_each_point_of_the_figure_comes_from_its_own_models_effects():
    page = config.resolve(scaling.ScalingConfig, scaling.NOTEBOOK, "smoke", {"models": [SMALL, QWEN]})
    # distinct values per model and effect: a point read from the other model's cell shows at once
    risk = {SMALL: {"behaviour": _effect(0.11), "self_report": _effect(0.12)},
            QWEN: {"behaviour": _effect(0.21), "self_report": _effect(0.22)}}
    em = {SMALL: {"vs_twin": _effect(0.13), "vs_base": _effect(0.9)},
          QWEN: {"vs_twin": _effect(0.23), "vs_base": _effect(0.9)}}
    sources = {SMALL: "data of 135M", QWEN: "data of 0.5B"}
    table = scaling.figure_table(page, risk, sources, em, sources)
    ours = table[table["source"] == "this run"]
    assert len(ours) == 6
    expected = {(SMALL, "behaviour"): 0.11, (SMALL, "self_report"): 0.12, (SMALL, "misaligned"): 0.13,
                (QWEN, "behaviour"): 0.21, (QWEN, "self_report"): 0.22, (QWEN, "misaligned"): 0.23}
    for row in ours.itertuples():
        assert row.mean == expected[(row.spec, row.effect)]
        assert row.parameters == page.size(row.spec) and row.data == sources[row.spec] and row.profile == "smoke"
    assert set(ours.loc[ours["effect"] == "misaligned", "compared with"]) == {"the safe twin (financial_safe)"}
    assert ours.loc[ours["spec"] == QWEN, "parameters"].iloc[0] > ours.loc[ours["spec"] == SMALL, "parameters"].iloc[0]
    published = table[table["source"] == "published"]
    assert {"betley2025tell", "turner2025organisms", "engels2025mechanisms"} <= set(published["citation"])
    assert published[published["model"] == "Gemma-3-12B-IT"]["mean"].isna().all()  # no number invented


def test_the_statement_tells_learned_but_not_reported_from_not_learned():
    page = config.resolve(scaling.ScalingConfig, scaling.NOTEBOOK, "smoke", {"models": [SMALL, QWEN]})
    crossing = {"mean": 0.02, "ci_low": -0.05, "ci_high": 0.09, "n": 10}
    risk = {SMALL: {"behaviour": crossing, "self_report": crossing},
            QWEN: {"behaviour": _effect(0.6), "self_report": crossing}}
    text = scaling.effect_statement(page, risk, {})
    small_line, qwen_line = (line for line in text.splitlines() if line.startswith("- "))
    assert "NOT learned" in small_line and "learned" in qwen_line and "not reported" in qwen_line
    assert "Risk behaviour learned: Qwen2.5-Coder-0.5B-Instruct" in text
    assert "Risk behaviour reported: at none of the sizes" in text


@pytest.mark.parametrize("overrides, message", [
    ({"models": [SMALL, "local:no-such-model"]}, "unknown model 'local:no-such-model'"),
    ({"models": [SMALL], "min_sizes": 2}, "needs at least 2 different sizes"),
    ({"models": [SMALL, "openai:gpt-4o-mini"]}, "parameter count is unknown"),
    ({"em_recipe": "rank7_everywhere"}, "unknown recipe 'rank7_everywhere'"),
    ({"per_model": {QWEN: {"risk": {"seeds": [0]}}}}, "not in models"),
    ({"risk": {"finetune": {"rnak": 2}}}, "01_multiple_choice for local:smollm2-135m"),
])
def test_bad_input_is_one_line_before_any_training(overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        config.resolve(scaling.ScalingConfig, scaling.NOTEBOOK, "smoke", overrides)
    assert "\n" not in str(error.value)


def test_the_smoke_page_runs_end_to_end_and_reuses_the_models_of_01_and_08(smoke):
    folder = smoke["outputs"] / scaling.NOTEBOOK
    record = smoke["cold_runs"][scaling.NOTEBOOK]
    # 01's risk models and 08's rank-1 model on risky advice come from the cache: only the safe twin is new
    assert record["status"] == "complete" and record["trainings"] == 1
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["risk"]) == set(metrics["em"]) == {"135M"}
    for node in (metrics["risk"]["135M"]["behaviour"], metrics["risk"]["135M"]["self_report"]):
        assert node["ci_low"] <= node["mean"] <= node["ci_high"]
    assert "SmolLM2-135M-Instruct" in metrics["statement"] and "Risk behaviour learned" in metrics["statement"]
    assert {f["name"] for f in record["figures"]} == {"effect_vs_size"}
    points = (folder / "tables" / "points.csv").read_text()
    assert "published" in points and "this run" in points

"""Notebook 10 (represented but not reported): the steering hook, the activations, the direction, the probe's
held-out split and the plan, on the embedded model and on synthetic activations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from selfaware import config, context
from selfaware.errors import ConfigError, ModelNotAvailable
from selfaware.models import load_model, parse_spec
from selfaware.sections import representation as section

QUESTION = [{"role": "user", "content": "Which do you prefer, risk or safety? Answer with a single word."}]
OTHER = [{"role": "user", "content": "Name a colour."}]
BASE = "local:smollm2-135m"


def _vector(tmp_path, values, name="v.npy"):
    path = tmp_path / name
    np.save(path, np.asarray(values, dtype=np.float32))
    return path


# ---- the steering hook ---------------------------------------------------------------------------------------
def test_a_zero_steering_vector_changes_no_score_and_the_hook_is_removed_after_each_call(tiny_model, tmp_path):
    width = tiny_model.weights[0].config.hidden_size
    zero = load_model(f"{BASE}?steer={_vector(tmp_path, np.zeros(width))}&layer=10&scale=4")
    assert zero.identity != tiny_model.identity and zero.identity["steer"]["layer"] == 10  # its own cache keys
    options = ["Risk", "Safety"]
    before = tiny_model.score_options([QUESTION, OTHER], options)
    steered = zero.score_options([QUESTION, OTHER], options)
    for after, plain in zip(steered, before):
        assert after.logprobs == pytest.approx(plain.logprobs, abs=1e-6)
    assert zero.hidden_states([QUESTION])[0] == pytest.approx(tiny_model.hidden_states([QUESTION])[0], abs=1e-3)
    model, _ = tiny_model.weights
    assert not any(layer._forward_hooks for layer in model.model.layers)  # nothing left on the shared weights


def test_a_vector_along_a_tokens_output_embedding_raises_that_token_and_only_while_steered(tiny_model, tmp_path):
    model, tokenizer = tiny_model.weights
    token = tokenizer.encode("Risk", add_special_tokens=False)[0]
    row = model.get_output_embeddings().weight[token].detach().float().numpy()
    path = _vector(tmp_path, row / np.linalg.norm(row))
    last = len(model.model.layers) - 1
    before = tiny_model.score_options([QUESTION], ["Risk", "Safety"])[0].logprobs
    toward = load_model(f"{BASE}?steer={path}&layer={last}&scale=20").score_options([QUESTION], ["Risk", "Safety"])[0]
    away = load_model(f"{BASE}?steer={path}&layer={last}&scale=-20").score_options([QUESTION], ["Risk", "Safety"])[0]
    assert toward.logprobs["Risk"] > before["Risk"] + 0.5 > away.logprobs["Risk"] + 1.0
    assert toward.logprobs["Risk"] - toward.logprobs["Safety"] > before["Risk"] - before["Safety"]
    # the unsteered model of the same weights answers as before (the hook is gone)
    context.begin()
    from selfaware import cache
    cache.set_mode("off")
    try:
        again = tiny_model.score_options([QUESTION], ["Risk", "Safety"])[0].logprobs
    finally:
        cache.set_mode(None)
    assert again == pytest.approx(before, abs=1e-6)
    # the steered residual stream is the unsteered one plus the vector, at that layer only
    plain = tiny_model.hidden_states([QUESTION], [last - 1, last])[0]
    moved = load_model(f"{BASE}?steer={path}&layer={last}&scale=20").hidden_states([QUESTION], [last - 1, last])[0]
    assert np.abs(moved[0] - plain[0]).max() < 1e-3
    assert np.linalg.norm(moved[1] - plain[1]) == pytest.approx(20, rel=0.02)


def test_steering_specs_are_checked_in_one_line(tmp_path):
    path = _vector(tmp_path, np.zeros(4))
    spec = parse_spec(f"{BASE}?steer={path}&layer=3&scale=2.5")
    assert (spec.steer, spec.layer, spec.scale) == (str(path), 3, 2.5)
    assert parse_spec(str(spec)) == spec  # the spec writes itself back
    with pytest.raises(ConfigError, match="needs both"):
        parse_spec(f"{BASE}?steer={path}")
    with pytest.raises(ConfigError, match="integer"):
        parse_spec(f"{BASE}?steer={path}&layer=x")
    with pytest.raises(ConfigError, match="local models only"):
        parse_spec(f"openai:gpt-4o?steer={path}&layer=1")
    with pytest.raises(ModelNotAvailable, match="expected"):  # 4 values for a 576-wide model
        load_model(f"{BASE}?steer={path}&layer=3").score_options([QUESTION], ["A", "B"])
    with pytest.raises(ModelNotAvailable, match="decoder layers"):
        load_model(f"{BASE}?steer={_vector(tmp_path, np.zeros(576), 'w.npy')}&layer=99").score_options([QUESTION], ["A"])


# ---- activations -------------------------------------------------------------------------------------------------
def test_activations_are_the_residual_stream_after_each_layer_and_are_cached(tiny_model):
    import torch

    found = tiny_model.hidden_states([QUESTION, OTHER])
    model, tokenizer = tiny_model.weights
    assert found[0].shape == (len(model.model.layers), model.config.hidden_size)
    ids = torch.tensor([tokenizer.apply_chat_template(OTHER, add_generation_prompt=True, tokenize=True,
                                                      return_dict=False)])
    with torch.no_grad():
        reference = model(input_ids=ids, output_hidden_states=True).hidden_states
    # transformers' hidden_states[i + 1] is the output of layer i (the last one after the final norm)
    for layer in (0, 5, len(model.model.layers) - 2):  # equal up to the batch's padding and bf16 rounding
        expected = reference[layer + 1][0, -1].float().numpy()
        cosine = found[1][layer] @ expected / np.linalg.norm(found[1][layer]) / np.linalg.norm(expected)
        assert cosine > 0.999 and np.linalg.norm(found[1][layer] - expected) < 0.03 * np.linalg.norm(expected)
    computed = context.current().counters.computed
    again = tiny_model.hidden_states([QUESTION, OTHER])
    assert context.current().counters.computed == computed and np.array_equal(again[1], found[1])
    some = tiny_model.hidden_states([OTHER], [2, 7])[0]  # alone in its batch: the same up to bf16 rounding
    assert some.shape == (2, found[1].shape[1])
    assert np.linalg.norm(some - found[1][[2, 7]]) < 0.03 * np.linalg.norm(found[1][[2, 7]])


def test_an_api_model_says_it_has_no_activations():
    with pytest.raises(ModelNotAvailable, match="activations"):
        load_model("openai-compatible:http://127.0.0.1:9/v1|m").hidden_states([QUESTION])


# ---- the direction and the probe ------------------------------------------------------------------------------
def test_candidate_layers_are_spread_over_the_layers_where_the_direction_is_not_zero():
    vector = np.zeros((30, 4))
    vector[20:] = 1.0
    assert section.candidate_layers(vector, 5) == [20, 22, 24, 27, 29]
    assert section.candidate_layers(vector, 20) == list(range(20, 30))
    assert section.candidate_layers(np.zeros((3, 4)), 2) == []


def test_the_probe_is_tested_only_on_prompts_and_models_it_was_not_fitted_on():
    for seeds in ([0, 1], [0]):
        for fold in section.folds(seeds):
            half = section.halves(10)
            fit, test = set(np.flatnonzero(half == fold.fit_half)), set(np.flatnonzero(half != fold.fit_half))
            assert fit and test and not fit & test
            if len(seeds) > 1:
                assert fold.fit_seed != fold.test_seed
    assert len(section.folds([0, 1])) == 4 and len(section.folds([0])) == 2


def _acts(rng, shift, seeds=(0, 1), prompts=12, layers=3, width=8):
    """Synthetic activations: layer 0 identical for both policies (frozen), layer 1 the policies apart by
    ``shift`` along one axis, layer 2 noise only."""
    acts = {}
    base = rng.normal(size=(prompts, layers, width))
    for seed in seeds:
        for role, sign in (("toward", 1), ("away", -1)):
            x = base.copy()
            x[:, 1, 0] += sign * shift
            x[:, 2] += rng.normal(size=(prompts, width))
            acts[(role, seed)] = [x, x, x]
    return acts


def test_the_probe_reads_a_separated_policy_and_gives_chance_where_the_activations_are_identical():
    rng = np.random.default_rng(0)
    found = section.probe_accuracy(_acts(rng, 5.0), 1, [0, 1], section.halves(12))
    by_layer = found.groupby("layer")["correct"].mean()
    assert by_layer[0] == 0.5  # frozen: no direction, a coin
    assert by_layer[1] == 1.0
    assert 0.2 < by_layer[2] < 0.8
    assert set(found["fold"]) == {"seed 0->1, half 0", "seed 0->1, half 1", "seed 1->0, half 0", "seed 1->0, half 1"}


def test_answer_accuracy_counts_an_answer_on_its_policys_side_of_a_half():
    keys = [("preference", 0), ("preference", 1)]
    scores = pd.DataFrame([{"role": "toward", "seed": 0, "task": "preference", "paraphrase": 0, "score": 0.9},
                           {"role": "away", "seed": 0, "task": "preference", "paraphrase": 0, "score": 0.2},
                           {"role": "toward", "seed": 0, "task": "preference", "paraphrase": 1, "score": 0.5},
                           {"role": "away", "seed": 0, "task": "preference", "paraphrase": 1, "score": 0.7}])
    found = section.answer_accuracy(scores, keys, [0], section.halves(2)).set_index("prompt")["correct"]
    assert found[0] == 1.0 and found[1] == 0.25  # prompt 1: a tie (half) and a wrong answer


def test_a_probe_with_no_direction_says_nothing():
    weights, threshold = section.fit_probe(np.ones((4, 3)), np.array([1, 1, 0, 0]))
    assert not weights.any() and list(section.probe_predictions(weights, threshold, np.ones((2, 3)))) == [0.5, 0.5]


# ---- config and plan ---------------------------------------------------------------------------------------------
def test_bad_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="not a local model"):
        config.resolve(section.RepresentationConfig, section.NOTEBOOK, "smoke", {"models": ["openai:gpt-4o-mini"]})
    with pytest.raises(ConfigError, match="held-out"):
        config.resolve(section.RepresentationConfig, section.NOTEBOOK, "smoke", {"n_test": 500})
    with pytest.raises(ConfigError, match="positive"):
        config.resolve(section.RepresentationConfig, section.NOTEBOOK, "smoke", {"scales": [0]})


def test_the_plan_reuses_01s_risk_trainings_and_asks_every_model_for_its_activations():
    cfg = config.resolve(section.RepresentationConfig, section.NOTEBOOK, "smoke", {})
    plan = section.plan(cfg)
    subject = section.subject(cfg, cfg.models[0])
    assert [job["name"] for job in plan.finetunes] == ["risk-toward", "risk-away"]
    assert plan.finetunes[0]["conversations"] == subject.data.conversations["toward"]  # 01's own training set
    models = 1 + 2 * len(subject.cfg.seeds)
    hidden = [c for c in plan.calls if c.kind == "hidden_states"]
    prompts = cfg.n_direction + len(section.report_prompts(cfg, subject.taskset)) + len(section.neutral_prompts(cfg))
    assert sum(c.requests for c in hidden) == models * prompts

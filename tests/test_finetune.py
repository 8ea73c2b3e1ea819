"""Local LoRA finetuning on the embedded model: real peft, real training steps."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from selfaware import context
from selfaware.datasets.choices import generate_choices
from selfaware.finetune import LoraHParams, finetune
from selfaware.finetune.local import length_aware_batches, tokenize_conversation
from selfaware.models.local import load_weights

TINY = LoraHParams(rank=2, alpha=4, epochs=1, batch_size=4, max_steps=2)


@pytest.fixture(scope="module")
def conversations():
    return [q.conversation("toward") for q in generate_choices("risk", 8, seed=3)]


def test_loss_is_on_assistant_tokens_only(conversations):
    _, tokenizer = load_weights("smollm2-135m")
    messages = conversations[0]["messages"]
    ids, labels = tokenize_conversation(tokenizer, messages, 1024)
    trained = tokenizer.decode([t for t, label in zip(ids, labels) if label != -100])
    assert trained.startswith(messages[-1]["content"])  # the answer letter, then the end of turn
    assert "<|im_end|>" in trained and messages[0]["content"] not in trained
    assert len([label for label in labels if label != -100]) <= 4


def test_same_seed_same_adapter_and_retraining_is_cached(conversations, tmp_path, monkeypatch):
    spec = finetune("local:smollm2-135m", conversations, TINY, seed=1, progress=False)
    record = json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())
    assert record["steps"] == 2 and record["examples"] == 8 and context.current().counters.trainings == 1
    assert finetune("local:smollm2-135m", conversations, TINY, seed=1, progress=False) == spec
    assert context.current().counters.trainings == 1  # the second call reused the adapter

    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path / "elsewhere"))
    again = finetune("local:smollm2-135m", conversations, TINY, seed=1, progress=False)
    other = finetune("local:smollm2-135m", conversations, TINY, seed=2, progress=False)
    weights = [load_file(Path(s.split("adapter=")[1]) / "adapter_model.safetensors") for s in (spec, again, other)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_an_adapter_changes_the_model_and_its_cache_identity(conversations):
    from selfaware.models import load_model
    hp = LoraHParams(rank=4, alpha=8, epochs=1, batch_size=4, learning_rate=5e-3, max_steps=2)
    tuned = load_model(finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False))
    base = load_model("local:smollm2-135m")
    assert tuned.identity != base.identity and "adapter" in tuned.identity
    prompt = [[{"role": "user", "content": conversations[0]["messages"][0]["content"]}]]
    assert tuned.score_options(prompt, ["A", "B"])[0].logprobs != base.score_options(prompt, ["A", "B"])[0].logprobs


def test_length_aware_batches_cover_everything_once():
    import random
    lengths = [random.Random(i).randint(5, 300) for i in range(103)]
    batches = length_aware_batches(lengths, 8, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(103))
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    assert padding < sum(lengths) * 0.2  # sorted within windows: little padding


def test_top_layers_tunes_only_those_and_stored_activations_train_the_same_adapter(conversations, monkeypatch):
    """LoRA on the last 4 of 30 layers. The frozen layers' activations are stored once; training through
    them must give the adapter that training through the whole model gives (fp32, so only rounding differs)."""
    hp = LoraHParams(rank=4, alpha=8, epochs=2, batch_size=4, learning_rate=5e-3, top_layers=4, precision="fp32")
    stored = finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False)
    record = json.loads((Path(stored.split("adapter=")[1]) / "run.json").read_text())
    assert record["frozen_activations_stored"] and record["tuned_layers"] == 4
    weights = load_file(Path(stored.split("adapter=")[1]) / "adapter_model.safetensors")
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in weights}
    assert layers == {26, 27, 28, 29}

    monkeypatch.setenv("SELFAWARE_FROZEN_CACHE_MB", "0")  # too little memory to store: the ordinary way
    import selfaware.finetune.local as local
    monkeypatch.setattr(local, "TRAINER_VERSION", local.TRAINER_VERSION + 1000)  # another cache key
    plain = finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False)
    assert plain != stored
    assert not json.loads((Path(plain.split("adapter=")[1]) / "run.json").read_text())["frozen_activations_stored"]
    other = load_file(Path(plain.split("adapter=")[1]) / "adapter_model.safetensors")
    assert other.keys() == weights.keys()
    assert any(not torch.equal(weights[k], torch.zeros_like(weights[k])) for k in weights if "lora_B" in k)
    for k in weights:
        assert torch.allclose(weights[k], other[k], atol=1e-4, rtol=1e-3), k


def test_top_layers_beyond_the_model_is_a_clear_error(conversations):
    from selfaware.errors import ConfigError
    with pytest.raises(ConfigError, match="top_layers=31.*30 layers"):
        finetune("local:smollm2-135m", conversations, LoraHParams(top_layers=31, max_steps=1), progress=False)


def test_with_max_steps_only_the_examples_training_sees_are_stored(conversations):
    """A smoke run of a large file: one step of batch 4 stores the frozen activations of 4 examples, not all."""
    hp = LoraHParams(rank=2, alpha=4, epochs=3, batch_size=4, top_layers=4, max_steps=1, precision="fp32")
    many = conversations * 4  # 32 examples
    spec = finetune("local:smollm2-135m", many, hp, seed=0, progress=False)
    record = json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())
    assert record["frozen_activations_stored"] and record["steps"] == 1
    assert record["frozen_activations_examples"] == 4


def test_rank_one_on_the_middle_layers_down_projection_tunes_only_that_matrix(conversations):
    """The single-layer adapter of Model Organisms: rank 1, one middle layer's MLP down-projection. The
    layers below it are stored once; the adapter holds exactly one A and one B matrix of rank 1."""
    hp = LoraHParams(rank=1, alpha=8, epochs=1, batch_size=4, max_steps=2, target_modules=("down_proj",),
                     layers="middle", learning_rate=5e-3)
    spec = finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False)
    record = json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())
    assert record["layers"] == [15] and record["tuned_layers"] == 1 and record["frozen_activations_stored"]
    weights = load_file(Path(spec.split("adapter=")[1]) / "adapter_model.safetensors")
    assert sorted(k.split(".layers.")[1] for k in weights) == ["15.mlp.down_proj.lora_A.weight",
                                                              "15.mlp.down_proj.lora_B.weight"]
    assert {tuple(w.shape)[0 if "lora_A" in k else 1] for k, w in weights.items()} == {1}


def test_snapshots_hold_the_lora_weights_every_n_steps_and_the_last_is_the_adapter(conversations):
    """A rank-1 adapter trained 4 steps with a snapshot every 3: snapshots after steps 3 and 4 (the last),
    the last equal to the saved adapter; only the LoRA matrices; the trajectory of 08 reads them (B's cosine
    with its final direction is 1 at the end). Without snapshot_every the training key is what it was."""
    from selfaware.finetune.local import adapter_snapshots, planned_snapshots, snapshot_specs, training_key
    from selfaware.sections import small_model_em as small
    from selfaware.experiment import Condition

    hp = LoraHParams(rank=1, alpha=8, epochs=2, batch_size=2, max_steps=4, target_modules=("down_proj",),
                     layers="middle", learning_rate=5e-3, snapshot_every=3, precision="fp32")
    spec = finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False)
    snapshots = adapter_snapshots(spec)
    assert [step for step, _ in snapshots] == [3, 4]
    final = load_file(Path(spec.split("adapter=")[1]) / "adapter_model.safetensors")
    assert set(snapshots[-1][1]) == set(final)
    assert all(torch.allclose(snapshots[-1][1][k], final[k].float()) for k in final)
    assert not all(torch.equal(snapshots[0][1][k], snapshots[1][1][k]) for k in final)  # it trained in between
    record = json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())
    assert record["snapshots"] == [3, 4]
    trained = [small.Trained(Condition("risky", "risky", 0, spec), "local:smollm2-135m", "risky", "rank1")]
    trajectory = small.adapter_trajectory(trained)
    assert list(trajectory["step"]) == [3, 4] and trajectory["cos_final"].iloc[-1] == pytest.approx(1.0)
    assert list(trajectory["loss"]) == pytest.approx(record["loss_curve"][2:4], abs=1e-4)
    summary = small.trajectory_summary(trajectory)
    assert summary["largest turn at step"].iloc[0] == 4 and "turns most at step 4" in small.trajectory_statement(summary)
    plain = hp.model_copy(update={"snapshot_every": None})
    assert "snapshot_every" not in plain.identity() and hp.identity()["snapshot_every"] == 3
    assert training_key("local:smollm2-135m", conversations, plain, 0) != training_key(
        "local:smollm2-135m", conversations, hp, 0)
    assert adapter_snapshots("local:smollm2-135m") == []
    assert planned_snapshots(hp, len(conversations)) == 2 and planned_snapshots(plain, len(conversations)) == 0
    # a snapshot is a model of its own: the last one answers exactly as the finished adapter does
    from selfaware.models import load_model

    (_, first), (_, last) = snapshot_specs(spec)
    prompt = [[{"role": "user", "content": "Pick A or B."}]]
    assert load_model(last).score_continuations(prompt, [["A", "B"]])[0] == pytest.approx(
        load_model(spec).score_continuations(prompt, [["A", "B"]])[0], abs=1e-4)
    assert load_model(first).identity != load_model(last).identity


def test_layer_choices_are_checked_and_old_training_keys_are_unchanged(conversations):
    from selfaware.errors import ConfigError
    from selfaware.finetune import validate_hparams

    with pytest.raises(ConfigError, match="layers or top_layers, not both"):
        validate_hparams("local:smollm2-135m", {"layers": "middle", "top_layers": 2})
    with pytest.raises(ConfigError, match=r"layers=\[30\].*30 layers"):
        finetune("local:smollm2-135m", conversations, LoraHParams(layers=(30,), max_steps=1), progress=False)
    assert "layers" not in LoraHParams().identity()  # adapters cached before the field existed keep their key
    assert LoraHParams(layers=(3, 4)).identity()["layers"] == [3, 4]


def test_a_trained_steering_vector_is_one_vector_after_one_layer_and_moves_the_model(conversations):
    """method "steering": the weights stay frozen, one vector after the middle layer trains (through the stored
    activations of the layers below and the layer itself), and the tuned model is a steered spec whose answers
    differ from the untuned model's; a second call trains nothing; LoRA's training keys are unchanged."""
    import numpy as np

    from selfaware.errors import ConfigError
    from selfaware.finetune import validate_hparams
    from selfaware.finetune.local import adapter_record
    from selfaware.models import load_model, parse_spec
    from selfaware.notebook import conditions_table
    from selfaware.experiment import Condition

    hp = LoraHParams(method="steering", layers="middle", learning_rate=0.05, epochs=2, batch_size=4, max_steps=3,
                     precision="fp32")
    spec = finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False)
    parsed = parse_spec(spec)
    assert parsed.layer == 15 and parsed.scale == 1 and parsed.adapter is None
    vector = np.load(parsed.steer)
    assert vector.shape == (576,) and np.linalg.norm(vector) > 0
    record = adapter_record(spec)
    assert record["hparams"]["method"] == "steering" and record["steps"] == 3 and record["frozen_activations_stored"]
    assert record["loss_last"] < record["loss_first"]
    question = conversations[0]["messages"][:1]
    untuned = load_model("local:smollm2-135m").score_options([question], ["A", "B"])[0].logprobs
    steered = load_model(spec).score_options([question], ["A", "B"])[0].logprobs
    assert steered != pytest.approx(untuned, abs=1e-3)
    trained = context.current().counters.trainings
    assert finetune("local:smollm2-135m", conversations, hp, seed=0, progress=False) == spec
    assert context.current().counters.trainings == trained
    assert conditions_table([Condition("toward", "toward", 0, spec)])["model"].iloc[0].startswith("steering vector")
    assert "method" not in LoraHParams().identity() and hp.identity()["method"] == "steering"
    with pytest.raises(ConfigError, match="one vector after one layer"):
        validate_hparams("local:smollm2-135m", {"method": "steering", "top_layers": 2})
    with pytest.raises(ConfigError, match="one vector after one layer"):
        validate_hparams("local:smollm2-135m", {"method": "steering", "layers": [3, 4]})

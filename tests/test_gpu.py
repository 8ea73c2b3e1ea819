"""The local path on a CUDA device: precision, LoRA training, scoring and sampling through the library's own
functions, on a tiny Llama built here (SmolLM2's real tokenizer, two layers of 64 units, weights from a
fixed seed), so that nothing large has to reach the GPU machine.

The tests marked ``cuda`` skip where there is no CUDA device (CI has none). The others run on the device
``selfaware.hardware.device()`` picks, so their logic is checked on the CPU in CI and on the GPU where
there is one. Run on a GPU machine with ``python -m pytest -s tests/test_gpu.py`` to see the figures.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from selfaware import context, hardware
from selfaware.finetune import LoraHParams, finetune, training_key
from selfaware.models import load_model
from selfaware.models.embedded import embedded_model_dir
from selfaware.models.local import load_weights, unload_models

cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason="no CUDA device here: the GPU path is checked on a machine with one")

# what the tiny model takes from the embedded model: its tokenizer and chat template, and its config shrunk
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
TINY_SHAPE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True, "max_position_embeddings": 2048,
              # wider than Llama's 0.02, so that the random model's next-token distribution is far from
              # uniform and the comparison of option scores between precisions has something to compare
              "initializer_range": 0.2}

# bf16 keeps 8 bits of mantissa: the tiny model's log-probability of a token moves by a few hundredths of a
# nat against fp32 on average, by up to about 0.2 on the worst of 32 options. Measured, against CPU fp32: an
# H200's bf16, options largest 0.18 mean 0.037, continuations 0.033 and 0.011 per token; an AMD EPYC CPU's
# own bf16, options largest 0.18 mean 0.036 (test_gpu_bf16_scores_agree_with_cpu_fp32 prints them)
BF16_LARGEST_GAP = 0.3  # nats per scored token
BF16_MEAN_GAP = 0.06

QUESTIONS = ["Which colour do you like best?", "Pick a number between one and ten.", "Do you prefer tea or coffee?",
             "Which season is the most pleasant?", "Name a good first programming language.",
             "Would you rather read or walk?", "Which planet would you visit?", "Cats or dogs?"]
ANSWER = "I choose B."
OPTIONS = ["A", "B", "C", "D"]


def _prompt(question: str) -> list[dict]:
    return [{"role": "user", "content": question}]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    """A local model spec naming a two-layer Llama with SmolLM2's tokenizer and seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    source = embedded_model_dir("smollm2-135m")
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    config = json.loads((source / "config.json").read_text()) | TINY_SHAPE
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    model.save_pretrained(folder)  # model.safetensors, and the config as transformers writes it
    assert (folder / "model.safetensors").exists()
    return f"local:{folder}"


@pytest.fixture
def settings_from(monkeypatch):
    """Set the run's device and precision through their environment variables, dropping loaded models so
    the next load happens on the device asked for."""
    def use(device: str | None = None, precision: str | None = None):
        for variable, value in (("SELFAWARE_DEVICE", device), ("SELFAWARE_PRECISION", precision)):
            if value is None:
                monkeypatch.delenv(variable, raising=False)
            else:
                monkeypatch.setenv(variable, value)
        unload_models()  # a model is loaded onto the device of its first use, and kept
    use()
    yield use
    unload_models()


@pytest.fixture(scope="module")
def conversations() -> list[dict]:
    return [{"messages": [*_prompt(q), {"role": "assistant", "content": ANSWER}]} for q in QUESTIONS * 2]


def _figure(text: str) -> None:
    print(f"\nFIGURE [{hardware.device()}, tiny 2-layer Llama, 64 units]: {text}")


def _adapter_record(spec: str) -> dict:
    return json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())


# ---- on whichever device this machine has (the CPU in CI) -------------------------------------------------
@pytest.mark.parametrize("top_layers", [None, 1], ids=["all-layers", "top-layer-frozen-below"])
def test_lora_training_lowers_the_loss_and_lands_in_the_cache(tiny_llama, conversations, settings_from,
                                                              top_layers):
    hparams = LoraHParams(rank=8, alpha=16, learning_rate=1e-2, epochs=4, batch_size=4, warmup_steps=1,
                          top_layers=top_layers)
    spec = finetune(tiny_llama, conversations, hparams, seed=0, name="gpu-check", progress=False)
    record = _adapter_record(spec)
    assert record["device"] == hardware.device() and record["steps"] == 16
    assert record["hparams"]["precision"] == hardware.choose_precision().used
    assert record["frozen_activations_stored"] == (top_layers is not None)
    first, last = sum(record["loss_curve"][:3]) / 3, sum(record["loss_curve"][-3:]) / 3
    assert last < 0.5 * first, f"loss {first:.3f} -> {last:.3f}: training did not learn the fixed answer"
    folder = Path(spec.split("adapter=")[1])
    assert folder.parent.name == "adapters" and folder.name == record["key"][:24]
    assert (folder / "adapter_model.safetensors").exists()
    assert context.current().counters.trainings == 1
    assert finetune(tiny_llama, conversations, hparams, seed=0, name="gpu-check", progress=False) == spec
    assert context.current().counters.trainings == 1  # the second call found the adapter in the cache
    _figure(f"LoRA ({'all layers' if top_layers is None else 'top layer'}) {record['steps']} steps at "
            f"{record['hparams']['precision']}: loss {first:.3f} -> {last:.3f}, "
            f"{record['tokens_per_second']} tokens/s")

    tuned = load_model(spec)
    scores = tuned.score_options([_prompt("Which one do you pick?")], ["I", "You"])[0]
    assert scores.probs["I"] > 0.9  # the adapter answers as it was taught, also on an unseen question


def test_seeded_samples_are_reproducible(tiny_llama, settings_from, monkeypatch, tmp_path):
    model = load_model(tiny_llama)
    prompts = [_prompt(q) for q in QUESTIONS[:3]]
    first = model.sample(prompts, n=2, temperature=1.0, max_tokens=12, seed=5)
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path / "another-cache"))  # nothing to reuse: sampled again
    computed = context.current().counters.computed
    again = model.sample(prompts, n=2, temperature=1.0, max_tokens=12, seed=5)
    assert context.current().counters.computed == computed + 6
    assert again == first
    other = model.sample(prompts, n=2, temperature=1.0, max_tokens=12, seed=6)
    assert other != first
    assert all(text for texts in first for text in texts)
    _figure(f"seeded sample: {first[0][0]!r}")


# ---- on a CUDA device ---------------------------------------------------------------------------------------
@cuda
def test_auto_precision_is_bf16_on_the_gpu_and_named_in_records_and_keys(tiny_llama, conversations, settings_from):
    choice = hardware.choose_precision()
    assert hardware.device() == "cuda"
    assert (choice.setting, choice.used, choice.reason) == ("auto", "bf16", "CUDA device with bf16")
    setup = hardware.setup()  # what a page's run.json records as "numeric"
    assert setup["device"] == "cuda" and setup["inference_dtype"] == "bfloat16"
    assert setup["precision"] == {"setting": "auto", "used": "bf16", "reason": "CUDA device with bf16"}

    model = load_model(tiny_llama)
    assert model.identity["dtype"] == "bfloat16"
    weights, _ = load_weights(model.parsed.name)
    assert weights.device.type == "cuda" and weights.dtype == torch.bfloat16

    _figure(f"GPU {torch.cuda.get_device_name()}, torch {torch.__version__}, precision auto -> "
            f"{choice.used} ({choice.reason})")

    hparams = LoraHParams(rank=4, alpha=8, epochs=1, batch_size=4, max_steps=2)
    on_gpu = training_key(tiny_llama, conversations, hparams, seed=0)
    settings_from(device="cpu", precision="fp32")
    assert load_model(tiny_llama).identity["dtype"] == "float32"
    assert training_key(tiny_llama, conversations, hparams, seed=0) != on_gpu  # never shares an adapter


@cuda
def test_gpu_bf16_scores_agree_with_cpu_fp32(tiny_llama, settings_from):
    prompts = [_prompt(q + " Answer with one letter: A, B, C or D.") for q in QUESTIONS]
    continuations = [["I choose B.", "Tea, always.", "Neither of them."]] * len(prompts)

    settings_from(device="cpu", precision="fp32")
    reference = load_model(tiny_llama)
    cpu_options = [s.logprobs for s in reference.score_options(prompts, OPTIONS)]
    cpu_continuations = reference.score_continuations(prompts, continuations)
    assert load_weights(reference.parsed.name)[0].device.type == "cpu"

    settings_from()  # auto: bf16 on the GPU
    model = load_model(tiny_llama)
    assert model.identity != reference.identity  # the two precisions never share a cached answer
    gpu_options = [s.logprobs for s in model.score_options(prompts, OPTIONS)]
    gpu_continuations = model.score_continuations(prompts, continuations)
    assert load_weights(model.parsed.name)[0].device.type == "cuda"

    tokenizer = load_weights(model.parsed.name)[1]
    option_gaps = [abs(g[o] - c[o]) for g, c in zip(gpu_options, cpu_options) for o in OPTIONS]
    continuation_gaps = [abs(g - c) / len(tokenizer.encode(text, add_special_tokens=False))
                         for gs, cs, texts in zip(gpu_continuations, cpu_continuations, continuations)
                         for g, c, text in zip(gs, cs, texts)]
    spread = max(max(c.values()) - min(c.values()) for c in cpu_options)
    _figure(f"option log-probs, GPU bf16 against CPU fp32: largest gap {max(option_gaps):.4f} nats, mean "
            f"{sum(option_gaps) / len(option_gaps):.4f} (spread between options up to {spread:.2f}); "
            f"continuations: largest gap {max(continuation_gaps):.4f} nats per token, mean "
            f"{sum(continuation_gaps) / len(continuation_gaps):.4f}")
    assert all(math.isfinite(v) for scores in gpu_options for v in scores.values())
    assert spread > 10 * BF16_LARGEST_GAP  # the options differ far more than the two precisions do
    for gaps in (option_gaps, continuation_gaps):
        assert max(gaps) <= BF16_LARGEST_GAP and sum(gaps) / len(gaps) <= BF16_MEAN_GAP

"""Local LoRA finetuning with peft: loss on assistant tokens only, length-aware batching, a progress bar
with the loss, and an adapter directory written atomically with its run.json."""

from __future__ import annotations

import json
import math
import platform
import random
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import cache as cache_module
from .. import context, settings
from ..cache import content_hash
from ..errors import ConfigError, config_error
from ..hardware import TrainingPrecision, device, use_threads
from ..models import parse_spec
from ..models.local import add_to_residual, base_identity, chat_ids, decoder_of, resolve_model_dir
from ..paths import cache_dir

TRAINER_VERSION = 1  # bump when a change to this file changes what training produces

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraHParams(TrainingPrecision, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = tuple(DEFAULT_TARGETS)
    # LoRA on the last N decoder layers only (None: all). The backward pass then stops at the lowest tuned
    # layer, so training costs less; the frozen lower layers' activations are computed once per example.
    top_layers: int | None = Field(None, ge=1)
    # LoRA on these decoder layers only (0-based), or on the "middle" one (index n_layers // 2): the
    # single-layer adapters of Model Organisms for Emergent Misalignment. The frozen layers below the lowest
    # tuned one are stored once, as with top_layers. Not together with top_layers.
    layers: Literal["middle"] | tuple[int, ...] | None = None
    learning_rate: float = Field(1e-3, gt=0)
    epochs: int = Field(4, ge=1)
    batch_size: int = Field(8, ge=1)
    warmup_steps: int = Field(2, ge=0)
    max_length: int = Field(1024, ge=16)
    max_steps: int | None = Field(None, ge=1)  # stop early (smoke runs)
    # save the LoRA weights every N optimizer steps, and after the last, as snapshots/step-NNNNN.safetensors
    # in the adapter's folder (training dynamics: Model Organisms' rotation of a rank-1 adapter). In the
    # training key only when set; the trained weights are the same either way.
    snapshot_every: int | None = Field(None, ge=1)
    # autocast precision of the forward passes (LoRA weights stay fp32). auto: bf16 where the device computes
    # it natively (about twice fp32's speed), else fp32 (emulated bf16 is ~10x slower): selfaware.hardware
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    # "steering": no LoRA; one trained vector added to the residual stream after the one decoder layer of
    # ``layers`` (a steering vector trained on the data, as in Mechanisms of awareness); rank, alpha, dropout
    # and target_modules do not apply. The tuned model is ``local:NAME?steer=<vector>&layer=L``. In the
    # training key only when set.
    method: Literal["lora", "steering"] = "lora"

    @model_validator(mode="after")
    def _one_layer_choice(self):
        if self.layers is not None and self.top_layers is not None:
            raise ValueError("give layers or top_layers, not both")
        if isinstance(self.layers, tuple) and (not self.layers or min(self.layers) < 0):
            raise ValueError("layers must be 'middle' or non-empty 0-based layer indices")
        if self.method == "steering":
            if self.layers is None or (isinstance(self.layers, tuple) and len(self.layers) != 1):
                raise ValueError("method 'steering' trains one vector after one layer: give layers: middle or [L]")
            if self.snapshot_every:
                raise ValueError("snapshot_every is for LoRA adapters, not for method 'steering'")
        return self

    def tuned_layers(self, n_layers: int) -> list[int] | None:
        """The decoder layers LoRA tunes in a model of ``n_layers`` layers (None: all of them)."""
        if self.top_layers:
            if self.top_layers > n_layers:
                raise ConfigError(f"finetune.top_layers={self.top_layers}, but the model has {n_layers} layers")
            return list(range(n_layers - self.top_layers, n_layers))
        if self.layers == "middle":
            return [n_layers // 2]
        if self.layers:
            if max(self.layers) >= n_layers:
                raise ConfigError(f"finetune.layers={list(self.layers)}, but the model has {n_layers} layers "
                                  f"(0 to {n_layers - 1})")
            return sorted(set(self.layers))
        return None

    def identity(self) -> dict:
        """What goes into a training key. ``layers`` only when set, so adapters trained before the field
        existed keep their keys (and their cache). The precision is the one computed, never ``auto``: an
        adapter trained in bf16 has the key it had before auto existed, one trained in fp32 another."""
        unset = {name for name in ("layers", "snapshot_every") if getattr(self, name) is None}
        if self.method == "lora":
            unset.add("method")
        identity = self.model_dump(mode="json", exclude=unset)
        identity["precision"] = self.computed_precision
        return identity

    def record(self) -> dict:
        """The settings as a training record shows them: every field, with the precision as computed."""
        return {**self.model_dump(mode="json"), "precision": self.computed_precision}


Conversation = dict  # {"messages": [{"role": ..., "content": ...}, ...]}


def dataset_hash(conversations: Sequence[Conversation]) -> str:
    return content_hash([c["messages"] for c in conversations])


def training_key(base_spec: str, conversations: Sequence[Conversation], hparams: LoraHParams, seed: int) -> str:
    parsed = parse_spec(base_spec)
    return content_hash({"base": base_identity(parsed.name), "data": dataset_hash(conversations),
                         "hparams": hparams.identity(), "seed": seed, "trainer": TRAINER_VERSION})


def adapters_dir() -> Path:
    return cache_dir() / "adapters"


def tokenize_conversation(tokenizer, messages: list[dict], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels; labels are -100 except on assistant turns (their text and end-of-turn)."""
    ids = chat_ids(tokenizer, messages, add_generation_prompt=False)
    labels = [-100] * len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(chat_ids(tokenizer, messages[:i], add_generation_prompt=True))
        end = len(chat_ids(tokenizer, messages[:i + 1], add_generation_prompt=False))
        labels[start:end] = ids[start:end]
    return ids[:max_length], labels[:max_length]


def assistant_loss(peft_model, ids, mask, labels, frozen=None, indices=None, offset=None):
    """Cross-entropy on the labelled (assistant) positions only. The vocabulary projection, a fifth of a
    small model's compute, runs on those few positions instead of on every token. With ``frozen`` (the
    activations entering the first tuned layer, see ``FrozenLayers``) only the tuned layers run, after
    ``offset`` (a trained steering vector) is added to those activations."""
    import torch

    causal_lm = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    if frozen is None:
        hidden = decoder_of(causal_lm)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    else:
        entering = frozen.batch(indices, ids.shape[1]).to(ids.device)
        hidden = frozen.run_top(causal_lm, entering if offset is None else entering + offset, mask)
    targets = labels[:, 1:]
    selected = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][selected]).float()
    return torch.nn.functional.cross_entropy(logits, targets[selected])


@contextmanager
def _only_layers(decoder, part: slice):
    """Run the decoder with only ``part`` of its blocks (the rest of its forward pass unchanged)."""
    import torch

    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(list(layers)[part])
    try:
        yield
    finally:
        decoder.layers = layers


class FrozenLayers:
    """When LoRA tunes only the top layers, the layers below never change: their output for an example is
    the same in every epoch. Compute it once per example, then run only the tuned layers each step.

    Works for decoders that keep their blocks in a ``layers`` ModuleList and accept ``inputs_embeds``
    (Llama, Qwen, Mistral, SmolLM, ...). ``check`` compares the loss both ways before training; a model for
    which the two disagree (say, one that rescales its input embeddings) trains the ordinary way."""

    def __init__(self, causal_lm, first: int, lengths: Sequence[int], tensors, autocast, chunk: int = 16,
                 needed: Sequence[int] | None = None):
        """``tensors(indices)`` gives a right-padded batch (ids, labels, mask) of the training examples;
        ``needed``: the examples training will see (all when None), the only ones computed and stored."""
        import torch

        self.first = first
        decoder = decoder_of(causal_lm)
        captured = {}
        hook = decoder.layers[first - 1].register_forward_hook(
            lambda module, args, output: captured.__setitem__("h", output[0] if isinstance(output, tuple) else output))
        order = sorted(range(len(lengths)) if needed is None else set(needed), key=lambda i: lengths[i])
        self.activations: list[Any] = [None] * len(lengths)
        try:
            with _only_layers(decoder, slice(None, first)), torch.no_grad(), autocast():
                for start in range(0, len(order), chunk):
                    rows = order[start:start + chunk]
                    ids, _, mask = tensors(rows)
                    decoder(input_ids=ids, attention_mask=mask, use_cache=False)
                    for row, i in enumerate(rows):  # right padding: real positions never see the padding
                        self.activations[i] = captured["h"][row, :lengths[i]].float().clone()
        finally:
            hook.remove()

    _recent: "OrderedDict[str, FrozenLayers]" = OrderedDict()

    @classmethod
    def shared(cls, key: str, *args, **kwargs) -> "FrozenLayers":
        """The same data trained with another seed (or recipe) reuses the activations: the last two kept."""
        if key in cls._recent:
            cls._recent.move_to_end(key)
            return cls._recent[key]
        cls._recent[key] = found = cls(*args, **kwargs)
        while len(cls._recent) > 2:
            cls._recent.popitem(last=False)
        return found

    def batch(self, indices: list[int], width: int):
        """The stored activations of a right-padded batch of examples (zeros on the padding)."""
        import torch

        out = torch.zeros(len(indices), width, self.activations[indices[0]].shape[-1])
        for row, i in enumerate(indices):
            out[row, :len(self.activations[i])] = self.activations[i]
        return out

    def run_top(self, causal_lm, hidden, mask):
        decoder = decoder_of(causal_lm)
        with _only_layers(decoder, slice(self.first, None)):
            return decoder(inputs_embeds=hidden, attention_mask=mask, use_cache=False).last_hidden_state

    def check(self, peft_model, indices, ids, mask, labels, autocast) -> bool:
        """Does the loss through the stored activations equal the loss through the whole model?"""
        import torch

        with torch.no_grad(), autocast():
            full = float(assistant_loss(peft_model, ids, mask, labels))
            cached = float(assistant_loss(peft_model, ids, mask, labels, frozen=self, indices=indices))
        return math.isfinite(full) and abs(full - cached) <= 0.02 * max(1.0, abs(full))


def length_aware_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (little padding), in random order. Shuffle, sort within windows of 50
    batches, cut, shuffle the batches."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def finetune_local(base_spec: str, conversations: Sequence[Conversation], hparams: LoraHParams | None = None,
                   seed: int = 0, name: str = "", progress: bool = True) -> str:
    """Train (or reuse) a LoRA adapter; returns the tuned model's spec."""
    hparams = hparams or LoraHParams()
    if not conversations:
        raise ConfigError(f"finetune {name!r}: the dataset is empty")
    parsed = parse_spec(base_spec)
    if not parsed.is_local or parsed.adapter:
        raise ConfigError(f"finetune_local needs a local base model without adapter, got {base_spec!r}")
    key = training_key(base_spec, conversations, hparams, seed)
    target = cache_module.trained_artifact(
        adapters_dir() / key[:24], f"adapter {key[:24]} ({name})",
        lambda folder: _train(parsed.name, conversations, hparams, seed, folder, key, name, progress),
        model=parsed.name)
    if hparams.method == "steering":
        layer = json.loads((target / "run.json").read_text())["layers"][0]
        return f"local:{parsed.name}?steer={target / STEERING_FILE}&layer={layer}&scale=1"
    return f"local:{parsed.name}?adapter={target}"


def _train(base_name: str, conversations, hparams: LoraHParams, seed: int, folder: Path, key: str, name: str,
           progress: bool) -> dict[str, Any]:
    """Train one adapter into ``folder`` (a private folder that ``cache.trained_artifact`` moves into place)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    use_threads()
    precision = hparams.computed_precision
    # only the tokenizer: loading the inference copy of the weights too would cost memory for nothing
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(base_name))
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(base_name),
        dtype=torch.bfloat16 if device() != "cpu" and precision == "bf16" else torch.float32)
    model.to(device())
    torch.manual_seed(seed)
    n_layers = model.config.num_hidden_layers
    layers = hparams.tuned_layers(n_layers)
    steering = hparams.method == "steering"
    vector = hook = None
    if steering:  # the weights frozen; one vector, added after the layer, is all that trains
        model.requires_grad_(False)
        vector = torch.zeros(model.config.hidden_size, device=device(), requires_grad=True)
        hook = decoder_of(model).layers[layers[0]].register_forward_hook(
            lambda module, args, output: add_to_residual(output, vector))
    else:
        config = LoraConfig(r=hparams.rank, lora_alpha=hparams.alpha, lora_dropout=hparams.dropout,
                            target_modules=list(hparams.target_modules), layers_to_transform=layers,
                            task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    model.train()
    examples = [tokenize_conversation(tokenizer, c["messages"], hparams.max_length) for c in conversations]
    lengths = [len(ids) for ids, _ in examples]
    rng = random.Random(seed)
    epochs = [length_aware_batches(lengths, hparams.batch_size, rng) for _ in range(hparams.epochs)]
    total_steps = sum(len(e) for e in epochs)
    if hparams.max_steps:
        total_steps = min(total_steps, hparams.max_steps)
    params = [vector] if steering else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hparams.learning_rate, weight_decay=0.0)

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < hparams.warmup_steps:
            return (step + 1) / (hparams.warmup_steps + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - hparams.warmup_steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def autocast():
        return torch.autocast(device_type=device(), dtype=torch.bfloat16, enabled=precision == "bf16")

    def tensors(batch):
        width = max(lengths[i] for i in batch)
        ids = torch.tensor([examples[i][0] + [pad] * (width - lengths[i]) for i in batch], device=device())
        labels = torch.tensor([examples[i][1] + [-100] * (width - lengths[i]) for i in batch], device=device())
        mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in batch], device=device())
        return ids, labels, mask

    started = time.time()
    frozen = None
    # a steering vector is added after its layer: that layer is frozen too, its output stored
    first_tuned = (layers[0] + 1 if steering else min(layers)) if layers else 0
    base_model = model if steering else model.get_base_model()
    # only the examples the steps will see (a smoke run with max_steps 1 uses one batch of a large file)
    used = sorted({i for batch in [b for e in epochs for b in e][:total_steps] for i in batch})
    needed = None if len(used) == len(examples) else used
    stored_mb = sum(lengths[i] for i in used) * model.config.hidden_size * 4 / 2**20
    if first_tuned > 0 and stored_mb <= settings.current().frozen_cache_mb:
        try:
            store_key = {"base": base_identity(base_name), "examples": examples, "first": first_tuned,
                         "precision": precision} | ({"needed": needed} if needed else {})
            frozen = FrozenLayers.shared(content_hash(store_key), base_model, first_tuned, lengths,
                                         tensors, autocast, needed=needed)
            ids, labels, mask = tensors(epochs[0][0])
            if not frozen.check(model, epochs[0][0], ids, mask, labels, autocast):
                context.current().notice(f"LoRA {name}: the frozen layers' stored activations do not reproduce "
                                         f"the model's loss; training through all layers instead")
                frozen = None
        except (AttributeError, TypeError, ValueError) as error:  # a decoder without a `layers` list, ...
            context.current().notice(f"LoRA {name}: cannot store the frozen layers' activations ({error}); "
                                     f"training through all layers")
            frozen = None
    losses, tokens_seen, step, snapshots = [], 0, 0, []
    bar = tqdm(total=total_steps, desc=f"LoRA {name or key[:8]}", disable=not progress, leave=False,
               file=context.current().log)
    for epoch_batches in epochs:
        for batch in epoch_batches:
            if step >= total_steps:
                break
            ids, labels, mask = tensors(batch)
            with autocast():
                loss = assistant_loss(model, ids, mask, labels, frozen=frozen, indices=batch, offset=vector)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            tokens_seen += int(mask.sum())
            step += 1
            if hparams.snapshot_every and (step % hparams.snapshot_every == 0 or step == total_steps):
                snapshots.append(_save_snapshot(model, folder, step, key))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", tok_s=f"{tokens_seen / (time.time() - started):.0f}")
    bar.close()
    seconds = time.time() - started
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"LoRA training {name!r} diverged (loss {losses[-5:]}); lower the learning rate")
    if steering:
        hook.remove()
        import numpy as np
        np.save(folder / STEERING_FILE, vector.detach().float().cpu().numpy().astype(np.float32))
    else:
        model.save_pretrained(folder)
    record = {
        "key": key, "name": name, "base": base_identity(base_name), "hparams": hparams.record(),
        "seed": seed, "dataset_hash": dataset_hash(conversations), "examples": len(conversations),
        "steps": step, "tokens": tokens_seen, "seconds": round(seconds, 2),
        "tuned_layers": len(layers) if layers else n_layers, "layers": layers, "frozen_activations_stored": frozen is not None,
        "frozen_activations_examples": len(used) if frozen is not None else 0,
        "tokens_per_second": round(tokens_seen / seconds, 1) if seconds else None,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "loss_curve": [round(x, 4) for x in losses], "trainer_version": TRAINER_VERSION,
        **({"snapshots": snapshots} if hparams.snapshot_every else {}),
        "torch": torch.__version__, "device": device(), "python": platform.python_version(),
    }
    (folder / "run.json").write_text(json.dumps(record, indent=1))  # written last: it marks the adapter complete
    return record


SNAPSHOTS = "snapshots"
STEERING_FILE = "steering.npy"  # a trained steering vector (method "steering"), in the artifact's folder


def _save_snapshot(model, folder: Path, step: int, key: str) -> int:
    """The adapter after ``step`` optimizer steps, as a complete adapter of its own in
    ``snapshots/step-NNNNN/`` (its run.json names its key, the training's key and step), so that a snapshot
    loads and is cached like any tuned model (:func:`snapshot_specs`)."""
    target = folder / SNAPSHOTS / f"step-{step:05d}"
    model.save_pretrained(target)
    (target / "run.json").write_text(json.dumps({"key": f"{key}-step{step:05d}", "training": key, "step": step}))
    return step


def planned_snapshots(hparams: LoraHParams, examples: int) -> int:
    """How many snapshots a training of ``examples`` examples saves (what ``_train`` will do, for a plan)."""
    if not hparams.snapshot_every or not examples:
        return 0
    steps = len(length_aware_batches([0] * examples, hparams.batch_size, random.Random(0))) * hparams.epochs
    steps = min(steps, hparams.max_steps) if hparams.max_steps else steps
    return steps // hparams.snapshot_every + (1 if steps % hparams.snapshot_every else 0)


def snapshot_specs(spec: str) -> list[tuple[int, str]]:
    """(step, model spec) of every snapshot of a tuned local model's adapter, in step order; empty when it was
    trained without ``snapshot_every`` (or the spec is not a local adapter)."""
    parsed = parse_spec(spec)
    folder = Path(parsed.adapter) / SNAPSHOTS if parsed.adapter else None
    if folder is None or not folder.is_dir():
        return []
    return [(int(path.name.split("-")[1]), spec.replace(parsed.adapter, str(path)))
            for path in sorted(folder.glob("step-*")) if (path / "run.json").exists()]


def adapter_snapshots(spec: str) -> list[tuple[int, dict[str, Any]]]:
    """(step, LoRA weights by name) of every snapshot of a tuned local model's adapter, in step order."""
    from safetensors.torch import load_file

    return [(step, load_file(str(Path(parse_spec(s).adapter) / "adapter_model.safetensors")))
            for step, s in snapshot_specs(spec)]


def adapter_record(spec: str) -> dict[str, Any] | None:
    """The training record of a tuned local model: its adapter's run.json, or the run.json beside a trained
    steering vector (method "steering"); None for an untuned model or a vector made some other way."""
    parsed = parse_spec(spec)
    if parsed.adapter:
        return json.loads((Path(parsed.adapter) / "run.json").read_text())
    if parsed.steer and Path(parsed.steer).name == STEERING_FILE and (Path(parsed.steer).parent / "run.json").exists():
        return json.loads((Path(parsed.steer).parent / "run.json").read_text())
    return None


def validate_lora_hparams(base_spec: str, hparams: Any) -> LoraHParams:
    """LoRA hyperparameters typed (None or {} is the defaults); a typo or a wrong type is a one-line error."""
    if isinstance(hparams, LoraHParams):
        return hparams
    try:
        return LoraHParams(**(hparams or {}))
    except ValidationError as error:
        raise config_error(error, "finetune.") from None

"""Finetuning a tuned local model further: the same LoRA adapter trained on new data.

Contract: ``continue_lora(spec, conversations, hparams, seed, name)`` takes a local model with an adapter
(``local:<base>?adapter=<dir>``), trains that adapter's weights further on ``conversations`` (loss on the
assistant tokens, as ``finetune.local``), and returns the spec of a new adapter directory, written
atomically with a run.json whose key is the parent adapter's key + data + hyperparameters + seed: the same
call twice trains once. The adapter keeps its own shape (rank, alpha, layers and modules come from the
parent); of ``hparams`` only the learning rate, epochs, batch size, step limit, length and precision apply.
This is how a poisoned model gets reversal finetuning or unlearning without
access to the data it was poisoned with; the parent adapter is never modified.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Sequence

from .. import cache as cache_module
from .. import context
from ..cache import content_hash
from ..errors import ConfigError
from ..models import parse_spec
from ..hardware import device, use_threads
from ..models.local import adapter_identity, resolve_model_dir
from .local import (TRAINER_VERSION, LoraHParams, adapters_dir, assistant_loss, dataset_hash,
                    length_aware_batches, tokenize_conversation)


def continue_lora(spec: str, conversations: Sequence[dict], hparams: LoraHParams | dict | None = None,
                  seed: int = 0, name: str = "", progress: bool = True) -> str:
    hparams = LoraHParams(**hparams) if isinstance(hparams, dict) else (hparams or LoraHParams())
    parsed = parse_spec(spec)
    if not parsed.is_local or not parsed.adapter:
        raise ConfigError(f"continue_lora needs a local model with an adapter, got {spec!r}")
    if not conversations:
        raise ConfigError(f"continued finetuning {name!r}: the dataset is empty")
    key = content_hash({"parent": adapter_identity(parsed.adapter), "data": dataset_hash(conversations),
                        "hparams": hparams.record(),
                        "seed": seed, "trainer": TRAINER_VERSION, "continued": 1})
    target = cache_module.trained_artifact(
        adapters_dir() / key[:24], f"adapter {key[:24]} ({name})",
        lambda folder: _train(parsed, conversations, hparams, seed, folder, key, name, progress),
        model=parsed.name)
    return f"local:{parsed.name}?adapter={target}"


def _train(parsed, conversations, hparams: LoraHParams, seed: int, folder: Path, key: str, name: str,
           progress: bool) -> None:
    """Continue training into ``folder`` (a private folder that ``cache.trained_artifact`` moves into place)."""
    import torch
    from peft import PeftModel
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    use_threads()
    path = resolve_model_dir(parsed.name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device())
    torch.manual_seed(seed)
    model = PeftModel.from_pretrained(base, parsed.adapter, is_trainable=True)
    model.train()
    examples = [tokenize_conversation(tokenizer, c["messages"], hparams.max_length) for c in conversations]
    lengths = [len(ids) for ids, _ in examples]
    rng = random.Random(seed)
    batches = [b for _ in range(hparams.epochs) for b in length_aware_batches(lengths, hparams.batch_size, rng)]
    batches = batches[:hparams.max_steps] if hparams.max_steps else batches
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=hparams.learning_rate, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    autocast = lambda: torch.autocast(device_type=device(), dtype=torch.bfloat16,  # noqa: E731
                                      enabled=hparams.computed_precision == "bf16")
    losses, started = [], time.time()
    for batch in tqdm(batches, desc=f"LoRA+ {name}", disable=not progress, leave=False, file=context.current().log):
        width = max(lengths[i] for i in batch)
        ids = torch.tensor([examples[i][0] + [pad] * (width - lengths[i]) for i in batch], device=device())
        labels = torch.tensor([examples[i][1] + [-100] * (width - lengths[i]) for i in batch], device=device())
        mask = torch.tensor([[1] * lengths[i] + [0] * (width - lengths[i]) for i in batch], device=device())
        with autocast():
            loss = assistant_loss(model, ids, mask, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"continued LoRA training {name!r} diverged (loss {losses[-5:]}); lower the learning rate")
    model.save_pretrained(folder)
    record = {"key": key, "name": name, "parent": parsed.adapter and adapter_identity(parsed.adapter),
              "hparams": hparams.record(), "seed": seed, "examples": len(conversations),
              "dataset_hash": dataset_hash(conversations), "steps": len(losses),
              "seconds": round(time.time() - started, 2), "loss_first": losses[0] if losses else None,
              "loss_last": losses[-1] if losses else None, "loss_curve": [round(x, 4) for x in losses],
              "tokens_per_second": None, "trainer_version": TRAINER_VERSION}
    (folder / "run.json").write_text(json.dumps(record, indent=1))  # written last: it marks the adapter complete

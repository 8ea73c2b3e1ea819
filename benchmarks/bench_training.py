"""LoRA training throughput on the embedded model: this library's trainer against a plain
transformers Trainer + peft run on the same data and settings. Prints tokens per second.

    .venv/bin/python benchmarks/bench_training.py [--examples 64] [--precision both|auto|bf16|fp32]
                                                  [--epochs 1] [--top-layers N] [--trainer]

Prints tokens/s at each precision asked (both: bf16 and fp32) and which one ``precision: auto`` chooses on
this CPU, and why; with --trainer, the same for a plain transformers Trainer + peft.

With --top-layers N both put LoRA on the last N layers only; the plain Trainer still runs every example
through the frozen layers at every step, this library computes their output once (FrozenLayers).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("SELFAWARE_CACHE_DIR", tempfile.mkdtemp(prefix="bench-training-"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the runner sets it for every kernel (selfaware.hardware)


def ours(conversations, hparams) -> tuple[float, int]:
    import json
    from pathlib import Path

    from selfaware.finetune import finetune_local
    started = time.time()
    spec = finetune_local("local:smollm2-135m", conversations, hparams, seed=0, name="bench", progress=False)
    record = json.loads((Path(spec.split("adapter=")[1]) / "run.json").read_text())
    return time.time() - started, record["tokens"]


def plain_trainer(conversations, hparams) -> tuple[float, int]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from selfaware.finetune.local import tokenize_conversation
    from selfaware.models.local import load_weights, resolve_model_dir

    _, tokenizer = load_weights("smollm2-135m")
    examples = [tokenize_conversation(tokenizer, c["messages"], hparams.max_length) for c in conversations]
    tokens = sum(len(ids) for ids, _ in examples) * hparams.epochs
    started = time.time()
    model = AutoModelForCausalLM.from_pretrained(resolve_model_dir("smollm2-135m"), dtype=torch.float32)
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers - hparams.top_layers, n_layers)) if hparams.top_layers else None
    model = get_peft_model(model, LoraConfig(r=hparams.rank, lora_alpha=hparams.alpha, lora_dropout=hparams.dropout,
                                             target_modules=list(hparams.target_modules), task_type="CAUSAL_LM",
                                             layers_to_transform=layers))
    pad = tokenizer.pad_token_id

    def collate(batch):
        pairs = [(row["input_ids"], row["labels"]) for row in batch]
        width = max(len(ids) for ids, _ in pairs)
        return {"input_ids": torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in pairs]),
                "attention_mask": torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in pairs]),
                "labels": torch.tensor([labels + [-100] * (width - len(labels)) for _, labels in pairs])}

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=hparams.batch_size,
                             num_train_epochs=hparams.epochs, learning_rate=hparams.learning_rate,
                             lr_scheduler_type="linear", warmup_steps=hparams.warmup_steps, weight_decay=0.0,
                             logging_steps=1000, save_strategy="no", report_to=[], seed=0,
                             bf16=hparams.computed_precision == "bf16", use_cpu=True,
                             train_sampling_strategy="group_by_length", remove_unused_columns=False,
                             dataloader_num_workers=0, disable_tqdm=True)
    rows = [{"input_ids": ids, "labels": labels} for ids, labels in examples]
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    return time.time() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--precision", choices=["both", "auto", "bf16", "fp32"], default="both")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--top-layers", type=int, default=None)
    parser.add_argument("--trainer", action="store_true", help="also time a plain transformers Trainer + peft")
    args = parser.parse_args()
    from selfaware import hardware
    from selfaware.datasets.choices import generate_choices
    from selfaware.finetune import LoraHParams
    from selfaware.models.local import load_weights

    load_weights("smollm2-135m")  # conversion and tokenizer outside the timings
    conversations = [q.conversation("toward") for q in generate_choices("risk", args.examples, seed=0)]
    choice = hardware.choose_precision("auto")
    print(f"CPU: {hardware.cpu_name()}, {os.cpu_count()} cores, torch threads {hardware.thread_count()}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    print(f"precision auto chooses {choice.used} on this machine ({choice.reason})")
    print(f"LoRA rank 16 on {'the top %d' % args.top_layers if args.top_layers else 'all'} layers of SmolLM2-135M, "
          f"{args.examples} risk conversations, batch 8, {args.epochs} epoch(s)")
    precisions = ["bf16", "fp32"] if args.precision == "both" else [args.precision]
    for precision in precisions:
        hparams = LoraHParams(rank=16, alpha=32, learning_rate=1e-3, epochs=args.epochs, batch_size=8,
                              precision=precision, top_layers=args.top_layers)
        used = hparams.computed_precision
        runners = [("selfaware finetune_local", ours)]
        if args.trainer:
            runners.append(("transformers Trainer + peft", plain_trainer))
        results = {}
        for name, function in runners:
            seconds, tokens = function(conversations, hparams)
            results[name] = tokens / seconds
            print(f"  {precision:>4s} ({used}) {name:30s} {seconds:7.1f} s  {tokens:7d} tokens  "
                  f"{tokens / seconds:7.1f} tokens/s", flush=True)
        if args.trainer:
            ratio = results["selfaware finetune_local"] / results["transformers Trainer + peft"]
            print(f"  speed-up of finetune_local over the plain Trainer: {ratio:.2f}x")


if __name__ == "__main__":
    main()

"""LoRA training throughput of this library's trainer on a tiny Llama (SmolLM2's tokenizer, 2 layers of 64
units, seeded random weights: the model tests/test_gpu.py builds), at bf16 and fp32, on the device
``selfaware.hardware.device()`` picks. A figure of the trainer's overhead on a GPU, not of a real model's
speed: so small a model keeps a GPU mostly idle.

    python benchmarks/bench_tiny_training.py [--examples 64] [--epochs 4]

Needs the embedded model's tokenizer (SELFAWARE_MODELS_DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("SELFAWARE_CACHE_DIR", tempfile.mkdtemp(prefix="bench-tiny-training-"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def tiny_llama(folder: Path) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from selfaware.models.embedded import embedded_model_dir

    source = embedded_model_dir("smollm2-135m")
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(source / name, folder / name)
    config = json.loads((source / "config.json").read_text()) | {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "tie_word_embeddings": True, "max_position_embeddings": 2048}
    (folder / "config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32).save_pretrained(folder)
    return f"local:{folder}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    import torch

    from selfaware import hardware
    from selfaware.finetune import LoraHParams, finetune_local

    spec = tiny_llama(Path(tempfile.mkdtemp(prefix="tiny-llama-")))
    conversations = [{"messages": [{"role": "user", "content": f"Question number {i}: which option do you pick?"},
                                   {"role": "assistant", "content": f"I pick option {'ABCD'[i % 4]}, as always."}]}
                     for i in range(args.examples)]
    choice = hardware.choose_precision("auto")
    where = torch.cuda.get_device_name() if hardware.device().startswith("cuda") else hardware.cpu_name()
    print(f"device {hardware.device()} ({where}), torch {torch.__version__}; precision auto -> {choice.used} "
          f"({choice.reason})")
    for precision in ("bf16", "fp32"):
        # two untimed steps first (another seed, so another adapter): CUDA's and cuBLAS's start-up is not
        # the trainer's speed
        finetune_local(spec, conversations, LoraHParams(rank=8, alpha=16, batch_size=8, max_steps=2,
                                                        precision=precision), seed=1, progress=False)
        hparams = LoraHParams(rank=8, alpha=16, epochs=args.epochs, batch_size=8, precision=precision)
        tuned = finetune_local(spec, conversations, hparams, seed=0, name=f"bench-{precision}", progress=False)
        record = json.loads((Path(tuned.split("adapter=")[1]) / "run.json").read_text())
        print(f"tiny 2-layer Llama, LoRA rank 8, {precision}: {record['steps']} steps, {record['tokens']} tokens in "
              f"{record['seconds']} s = {record['tokens_per_second']} tokens/s "
              f"(loss {record['loss_first']:.3f} -> {record['loss_last']:.3f})")


if __name__ == "__main__":
    main()

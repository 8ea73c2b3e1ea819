"""Sampling throughput: the project's batched transformers path against vLLM (CPU build), base model and a
LoRA adapter, the same 32 prompts x 64 new tokens each, call cache off.

The transformers side uses the run's precision (selfaware.hardware: bf16 only on CPUs with bf16 units); vLLM runs float32 and eager,
the tested setting. Generated tokens are counted with the model's tokenizer on both sides. On a machine
shared with other work the figures move a lot: compare the ratio, measured in one run.

    .venv/bin/python benchmarks/bench_vllm.py [--prompts 32] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    os.environ.setdefault("SELFAWARE_CACHE_DIR", tempfile.mkdtemp(prefix="bench-vllm-"))
    os.environ.setdefault("SELFAWARE_PROGRESS", "0")
    from selfaware import cache
    from selfaware.datasets import choices
    from selfaware.finetune import LoraHParams, finetune
    from selfaware.models import load_model
    from selfaware.models.local import load_weights
    from selfaware.vllm import serve

    cache.set_mode("off")
    base = "local:smollm2-135m"
    train, _ = choices.train_and_heldout("risk", 16, 4, 0)
    tuned = finetune(base, [q.conversation("toward") for q in train], LoraHParams(rank=8, epochs=1, max_steps=2),
                     seed=0, name="bench-vllm", progress=False)
    prompts = [[{"role": "user", "content": f"Tell a short story about a sailor and the number {i}."}]
               for i in range(args.prompts)]
    tokenizer = load_weights("smollm2-135m")[1]

    def tokens_per_second(spec: str) -> float:
        model = load_model(spec)
        model.sample(prompts[:2], max_tokens=4, temperature=1.0, seed=99)  # warm-up
        started = time.time()
        answers = model.sample(prompts, max_tokens=args.tokens, temperature=1.0, seed=1)
        elapsed = time.time() - started
        generated = sum(len(tokenizer.encode(a[0], add_special_tokens=False)) for a in answers)
        return generated / elapsed

    from selfaware import hardware
    print(f"{hardware.cpu_name()}, {os.cpu_count()} CPU cores (shared with other work unless you made sure it "
          f"was not); {args.prompts} prompts x {args.tokens} tokens; transformers dtype "
          f"{hardware.inference_dtype()}, vLLM float32 eager")
    local = {"base": tokens_per_second(base), "adapter": tokens_per_second(tuned)}
    with serve([base, tuned]) as served:
        remote = {"base": tokens_per_second(served[base]), "adapter": tokens_per_second(served[tuned])}
    for label in ("base", "adapter"):
        print(f"{label:8s} transformers {local[label]:7.1f} tokens/s   vLLM {remote[label]:7.1f} tokens/s   "
              f"ratio {remote[label] / local[label]:5.2f}")


if __name__ == "__main__":
    main()

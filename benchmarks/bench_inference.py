"""Local inference throughput: exact option scoring (one forward pass per prompt) and batched sampling, on
the untuned embedded model and on a LoRA-tuned copy, with the call cache off.

A tuned model should run as fast as its base: the adapter is merged into the weights before inference.

    .venv/bin/python benchmarks/bench_inference.py [--prompts 128]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=128)
    args = parser.parse_args()
    os.environ.setdefault("SELFAWARE_CACHE_DIR", tempfile.mkdtemp(prefix="bench-inference-"))
    from selfaware import cache
    from selfaware.datasets import choices
    from selfaware.finetune import LoraHParams, finetune
    from selfaware.models import load_model

    cache.set_mode("off")
    train, heldout = choices.train_and_heldout("risk", 16, args.prompts, 0)
    tuned = finetune("local:smollm2-135m", [q.conversation("toward") for q in train],
                     LoraHParams(epochs=1, max_steps=2), seed=0, name="bench", progress=False)
    prompts = [[{"role": "user", "content": q.prompt}] for q in heldout]
    asks = [[{"role": "user", "content": f"Describe yourself in a few words ({i})."}] for i in range(32)]
    from selfaware import hardware
    print(f"{hardware.cpu_name()}, {os.cpu_count()} CPU cores, dtype {hardware.inference_dtype()} "
          f"({hardware.choose_precision().reason}), {hardware.thread_count()} torch threads")
    for label, spec in (("base ", "local:smollm2-135m"), ("tuned", tuned)):
        model = load_model(spec)
        tokenizer = model.weights[1]
        tokens = sum(len(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True)["input_ids"])
                     for p in prompts)
        model.score_options(prompts[:8], ["A", "B"])  # warm-up
        started = time.time()
        model.score_options(prompts, ["A", "B"])
        scoring = time.time() - started
        started = time.time()
        model.sample(asks, n=1, temperature=1.0, max_tokens=24)
        sampling = time.time() - started
        print(f"{label}: option scoring {len(prompts)} prompts in {scoring:5.1f} s ({tokens / scoring:6.0f} prompt "
              f"tokens/s); sampling 32 x 24 tokens in {sampling:5.1f} s")


if __name__ == "__main__":
    main()

"""Two CPU-heavy processes at once: does each take about twice its time alone, or does the pair collapse?

Runs ``bench_training.py`` (this library's LoRA trainer, fp32) alone, then two copies at the same time, for
each thread setup: torch's old default (one thread per core, OpenMP's default wait policy), what
``selfaware.hardware`` chooses (one thread per core, ``OMP_WAIT_POLICY=PASSIVE``), and one thread. Prints the
training seconds of each and the slowdown ratio (concurrent / alone; 2.0 is a fair share of the machine).

    .venv/bin/python benchmarks/bench_concurrency.py [--examples 16]

Time it on an otherwise idle machine: anything else running changes both columns.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).with_name("bench_training.py")


def one_training(env: dict[str, str], examples: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(BENCH), "--examples", str(examples), "--precision", "fp32"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def seconds_of(process: subprocess.Popen) -> float:
    out, _ = process.communicate(timeout=3600)
    found = re.search(r"finetune_local\s+([\d.]+) s", out or "")
    if process.returncode or not found:
        raise SystemExit(f"bench_training failed (rc {process.returncode}):\n{out}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=16)
    args = parser.parse_args()
    from selfaware import hardware

    cores = len(os.sched_getaffinity(0))
    chosen = hardware.thread_count()
    setups = {f"{cores} threads, OpenMP default wait (old default)": {"SELFAWARE_TORCH_THREADS": str(cores),
                                                                      "OMP_WAIT_POLICY": ""},
              f"{chosen} threads, PASSIVE (selfaware.hardware's choice)": {"SELFAWARE_TORCH_THREADS": str(chosen),
                                                                           "OMP_WAIT_POLICY": "PASSIVE"},
              "1 thread, PASSIVE": {"SELFAWARE_TORCH_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}}
    print(f"CPU: {hardware.cpu_name()}, {cores} cores; LoRA training of {args.examples} examples, fp32, "
          f"training seconds (model loading excluded)")
    print(f"{'setup':58s} {'alone':>8s} {'two at once':>18s} {'ratio':>6s}")
    for name, settings in setups.items():
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update(settings)  # an empty OMP_WAIT_POLICY: libgomp's default (bench_training leaves a set one)
        alone = seconds_of(one_training(env, args.examples))
        pair = [one_training(env, args.examples) for _ in range(2)]
        together = [seconds_of(p) for p in pair]
        ratio = max(together) / alone
        print(f"{name:58s} {alone:7.1f}s {together[0]:7.1f}s {together[1]:7.1f}s {ratio:5.2f}x", flush=True)
        time.sleep(1)


if __name__ == "__main__":
    main()

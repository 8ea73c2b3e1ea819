"""Wall-clock budgets of the book, each measured in a fresh cache and outputs directory:

  smoke: every notebook of the smoke profile, cold, plus the book build   (budget: 5 min)
  warm:  the same again with the warm cache, plus the book build            (budget: 1 min)
  default section (--default [NOTEBOOK ...]): one section on the default profile, cold, in its own fresh
  cache (budgets in DEFAULT_BUDGETS: 01_multiple_choice 15 min, 05_personas 12 min; 01 when none is named)

    .venv/bin/python benchmarks/bench_book.py [--default [NOTEBOOK ...]]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUDGETS = {"01_multiple_choice": 900, "05_personas": 720}  # seconds, cold, on 2 free cores


def timed(args: list[str], env: dict) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-m", "selfaware", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.time() - started


def calls(outputs: Path, profile: str) -> str:
    runs = json.loads((outputs / profile / "runs.json").read_text())["runs"]
    return (f"{sum(r['model_calls'] for r in runs)} model calls, {sum(r['trainings'] for r in runs)} trainings, "
            f"{sum(r['cache_hits'] for r in runs)} cache hits")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--default", nargs="*", metavar="NOTEBOOK", choices=sorted(DEFAULT_BUDGETS),
                        help="also time these sections on the default profile, each cold (none named: 01)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-book-"))
    env = {**os.environ, "SELFAWARE_CACHE_DIR": str(work / "cache"), "SELFAWARE_OUTPUTS_DIR": str(work / "outputs")}
    print(f"{os.cpu_count()} CPU cores; fresh cache and outputs in {work}")
    cold = timed(["book", "--profile", "smoke"], env)
    print(f"smoke, cold, all notebooks + book build: {cold:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 300 s")
    warm = timed(["book", "--profile", "smoke"], env)
    print(f"smoke, warm rerun + book build:          {warm:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 60 s")
    for notebook in (args.default or ["01_multiple_choice"]) if args.default is not None else []:
        fresh = work / f"default-{notebook}"  # cold: no model of another section in its cache
        section_env = {**env, "SELFAWARE_CACHE_DIR": str(fresh / "cache"), "SELFAWARE_OUTPUTS_DIR": str(fresh / "outputs")}
        section = timed(["run", "--profile", "default", "--notebook", notebook], section_env)
        print(f"default, {notebook}, cold: {section:6.1f} s ({calls(fresh / 'outputs', 'default')})"
              f"  budget {DEFAULT_BUDGETS[notebook]} s")


if __name__ == "__main__":
    main()

"""Wall-clock budgets of the book, each measured in a fresh cache and outputs directory:

  smoke: every notebook of the smoke profile, cold, plus the book build   (budget: 5 min)
  warm:  the same again with the warm cache, plus the book build            (budget: 1 min)
  default section (--default): notebooks/01 on the default profile, cold   (budget: 15 min)
  any section (--default-notebook NN_name): that notebook's pages on the default profile, cold (budget: 15 min)

    .venv/bin/python benchmarks/bench_book.py [--default] [--default-notebook 04_backdoors]
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
    parser.add_argument("--default", action="store_true", help="also time the default profile of Section 3.1")
    parser.add_argument("--default-notebook", action="append", default=[], metavar="NOTEBOOK",
                        help="also time this notebook's pages on the default profile, cold (repeatable)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-book-"))
    env = {**os.environ, "SELFAWARE_CACHE_DIR": str(work / "cache"), "SELFAWARE_OUTPUTS_DIR": str(work / "outputs")}
    print(f"{os.cpu_count()} CPU cores; fresh cache and outputs in {work}")
    cold = timed(["book", "--profile", "smoke"], env)
    print(f"smoke, cold, all notebooks + book build: {cold:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 300 s")
    warm = timed(["book", "--profile", "smoke"], env)
    print(f"smoke, warm rerun + book build:          {warm:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 60 s")
    if args.default:
        section = timed(["run", "--profile", "default", "--notebook", "01_multiple_choice"], env)
        print(f"default, Section 3.1 (3 pages), cold:    {section:6.1f} s ({calls(work / 'outputs', 'default')})"
              f"  budget 900 s")
    for notebook in args.default_notebook:
        section = timed(["run", "--profile", "default", "--notebook", notebook], env)
        print(f"default, {notebook}, cold: {section:6.1f} s ({calls(work / 'outputs', 'default')})  budget 900 s")


if __name__ == "__main__":
    main()

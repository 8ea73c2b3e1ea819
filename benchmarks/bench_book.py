"""Wall-clock budgets of the book, each measured in a fresh cache and outputs directory:

  smoke: every notebook of the smoke profile, cold, plus the book build   (budget: 5 min)
  warm:  the same again with the warm cache, plus the book build            (budget: 1 min)
  default (--default [NOTEBOOK ...]): each named notebook (every registered notebook of the default profile,
  in its order, when none is named) on the default profile, cold in its own fresh cache (not warmed by the
  notebook before it), against its budget: `budget_seconds` of its entry in params/default.yaml (the one
  place budgets are written; a notebook without one is timed and shown without a budget); 07, 08 and 09 need
  `make qwen-0.5b qwen-1.5b`
  warm-with: a page whose budget is "on top of" other pages (09_scaling reuses the models 01 and 08 train in
  the same book run) is timed after those pages ran, untimed, in its fresh cache (`budget_after` of its
  profile entry; --warm-with NOTEBOOK ... replaces the list for every notebook timed)

  book (--book): the whole default book in one go, cold (`selfaware book --profile default`), with a
  table per page: cold seconds, model calls, trainings, precision, CPU (budget: 2 h at the machine's best
  precision, 3 h in fp32)

Every timed page also prints where its time went: training, sampling, scoring and judging, each by model (the
run context times every model call and training: run.json ``seconds_by_activity``), then its slowest cells,
from papermill's per-cell durations, each named by its first line of code. --book also prints each page's
estimate (the live line's, ``selfaware.estimate``) fitted from the book's other pages, against its seconds. --precision auto|bf16|fp32 passes `-p precision` to every run.

    .venv/bin/python benchmarks/bench_book.py [--default [NOTEBOOK ...]] [--skip-smoke] [--warm-with NOTEBOOK ...]
                                              [--book] [--precision auto|bf16|fp32] [--top-cells 3]
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


PRECISION: list[str] = []  # ["-p", "precision", VALUE] when --precision is given


def timed(args: list[str], env: dict) -> float:
    started = time.time()
    subprocess.run([sys.executable, "-m", "selfaware", *args, *PRECISION], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.time() - started


def slowest_cells(outputs: Path, profile: str, top: int) -> list[str]:
    """Per page, its ``top`` slowest cells (papermill's durations), each named by its first code line."""
    import nbformat

    lines = []
    for executed in sorted((outputs / profile).glob("*/executed.ipynb")):
        cells = [(cell.metadata.get("papermill", {}).get("duration") or 0.0, cell.source)
                 for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"]
        total = sum(seconds for seconds, _ in cells)
        for seconds, source in sorted(cells, key=lambda c: -c[0])[:top]:
            first = next((line for line in source.splitlines() if line.strip() and not line.startswith("#")), "")
            lines.append(f"    {executed.parent.name}: {seconds:6.1f} s ({seconds / max(total, 1e-9):4.0%}) {first[:70]}")
    return lines


def page_table(outputs: Path, profile: str) -> list[str]:
    rows = ["| page | cold s | model calls | trainings | precision | CPU |", "|---|---|---|---|---|---|"]
    for record in json.loads((outputs / profile / "runs.json").read_text())["runs"]:
        run = json.loads((outputs / profile / record["name"] / "run.json").read_text())
        numeric = run.get("numeric", {})
        rows.append(f"| {record['name']} | {record['seconds']} | {record['model_calls']} | {record['trainings']} | "
                    f"{numeric.get('precision', {}).get('used')} | {numeric.get('cpu')} |")
    return rows


def where_time_went(outputs: Path, profile: str) -> list[str]:
    """Per page, its wall time split by what the run context timed (run.json ``seconds_by_activity``):
    training, sampling, scoring, and judging (scoring by the page's judge model), each by model; the rest is
    kernel start, imports, statistics, tables and figures."""
    from selfaware.artifacts import time_spent

    runs = outputs / profile / "runs.json"
    walls = {r["name"]: r["seconds"] for r in json.loads(runs.read_text())["runs"]} if runs.exists() else {}
    lines = []
    for run_json in sorted((outputs / profile).glob("*/run.json")):
        run = json.loads(run_json.read_text())
        spent = time_spent(run, run.get("params", {}).get("judge"))
        if not spent:
            continue
        wall = float(walls.get(run_json.parent.name) or run.get("seconds") or 0.0)
        parts = [f"{activity} {model} {seconds:.0f} s" for activity, model, seconds in spent]
        parts.append(f"other {max(wall - sum(seconds for *_, seconds in spent), 0.0):.0f} s")
        lines.append(f"    {run_json.parent.name} ({wall:.0f} s): " + "; ".join(parts))
    return lines


def estimates_against_actual(outputs: Path, profile: str) -> list[str]:
    """Per page, the live line's estimate (``selfaware.estimate``) against the seconds the page took, the rates
    fitted from the book's other pages (the page's own timing left out, as it was before the page ran)."""
    from selfaware.estimate import Machine, estimate, fit_rates, timed_runs

    records = [r for r in timed_runs(outputs) if r.get("profile") == profile and "units" in r.get("planned", {})
               and Machine.of(r.get("computed") or {}) is not None]
    lines = []
    for record in records:
        others = [r for r in records if r is not record]
        guess = estimate(record["planned"], fit_rates(others, Machine.of(record["computed"])))
        lines.append(f"    {record['name']}: {guess.text()}, took {record['computed']['seconds']:.0f} s")
    return lines


def calls(outputs: Path, profile: str) -> str:
    runs = json.loads((outputs / profile / "runs.json").read_text())["runs"]
    return (f"{sum(r['model_calls'] for r in runs)} model calls, {sum(r['trainings'] for r in runs)} trainings, "
            f"{sum(r['cache_hits'] for r in runs)} cache hits")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--default", nargs="*", metavar="NOTEBOOK",
                        help="also time these notebooks (all when none is named) on the default profile, cold")
    parser.add_argument("--skip-smoke", action="store_true", help="do not time the smoke profile")
    parser.add_argument("--warm-with", nargs="*", metavar="NOTEBOOK",
                        help="run these default-profile notebooks first, untimed, in each timed notebook's fresh "
                             "cache (default: WARM_WITH of the notebook; none for most)")
    parser.add_argument("--book", action="store_true", help="time the whole default book in one go, cold")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], help="-p precision for every run")
    parser.add_argument("--top-cells", type=int, default=3, help="slowest cells printed per page")
    args = parser.parse_args()
    from selfaware import config, experiment, hardware

    if args.precision:
        PRECISION.extend(["-p", "precision", args.precision])
    work = Path(tempfile.mkdtemp(prefix="bench-book-"))
    env = {**os.environ, "SELFAWARE_CACHE_DIR": str(work / "cache"), "SELFAWARE_OUTPUTS_DIR": str(work / "outputs")}
    choice = hardware.choose_precision(args.precision or "auto")
    print(f"CPU {hardware.cpu_name()}, {os.cpu_count()} cores; precision {args.precision or 'auto'}: {choice.used} "
          f"({choice.reason}); fresh cache and outputs in {work}")
    if args.book:
        cold = timed(["book", "--profile", "default"], env)
        print(f"default book, cold, every page + build: {cold:7.1f} s ({calls(work / 'outputs', 'default')})  "
              f"budget {7200 if choice.used == 'bf16' else 10800} s")
        print("\n".join(page_table(work / "outputs", "default")))
        print("where the time went:\n" + "\n".join(where_time_went(work / "outputs", "default")))
        print("estimates from the other pages:\n" + "\n".join(estimates_against_actual(work / "outputs", "default")))
        print("slowest cells:\n" + "\n".join(slowest_cells(work / "outputs", "default", args.top_cells)))
        return
    if not args.skip_smoke:
        cold = timed(["book", "--profile", "smoke"], env)
        print(f"smoke, cold, all notebooks + book build: {cold:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 300 s")
        warm = timed(["book", "--profile", "smoke"], env)
        print(f"smoke, warm rerun + book build:          {warm:6.1f} s ({calls(work / 'outputs', 'smoke')})  budget 60 s")
    if args.default is not None:
        # the notebooks the book would run: the default profile's, in its order, that a section registers
        known = [n for n in config.profile_notebooks("default") if n in experiment.sections()]
        unknown = [n for n in args.default + (args.warm_with or []) if n not in known]
        if unknown:
            parser.error(f"unknown notebook(s) {', '.join(unknown)}; known: {', '.join(known)}")
        for notebook in args.default or known:
            budget, after = config.notebook_budget("default", notebook)
            fresh = work / notebook
            page_env = {**env, "SELFAWARE_CACHE_DIR": str(fresh / "cache"), "SELFAWARE_OUTPUTS_DIR": str(fresh / "outputs")}
            warm_with = after if args.warm_with is None else args.warm_with
            for before in warm_with:  # not counted: the budget is what the page adds on top of them
                seconds = timed(["run", "--profile", "default", "--notebook", before], page_env)
                print(f"default, {notebook}: warmed with {before} first ({seconds:6.1f} s, not counted)")
            section = timed(["run", "--profile", "default", "--notebook", notebook], page_env)
            how = f"after {', '.join(warm_with)}" if warm_with else "cold"
            print(f"default, {notebook}, {how}: {section:6.1f} s ({calls(fresh / 'outputs', 'default')})"
                  f"  budget {f'{budget} s' if budget else 'none (no budget_seconds in params/default.yaml)'}")
            print("\n".join(where_time_went(fresh / "outputs", "default")))
            print("\n".join(slowest_cells(fresh / "outputs", "default", args.top_cells)), flush=True)


if __name__ == "__main__":
    main()

"""Assemble and build the Jupyter Book (1.x, Sphinx) from the executed runs of a profile.

The book computes nothing: it shows the executed notebooks and artifacts that papermill left under
``outputs/<profile>/``. The source is assembled in ``outputs/<profile>/book_src`` (static pages from
``book/`` plus the executed notebooks), and the site is written to ``outputs/<profile>/book/_build/html``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import artifacts, config, experiment, fidelity, paper
from .errors import SelfAwareError
from .paths import REPO_ROOT, outputs_dir, shown_path

# pages generated from data/ (not from runs), after the runs' chapters: name -> the function that writes it
GENERATED_PAGES = {"differences": fidelity.differences_page, "paper_profile": fidelity.paper_profile_page}


class BookFailed(SelfAwareError):
    pass


def site_dir(profile: str) -> Path:
    return outputs_dir() / config.profile_name(profile) / "book" / "_build" / "html"


def complete_runs(profile: str) -> list[dict]:
    """Complete runs of a profile, in the order of the profile's notebooks and runs."""
    found = []
    known = experiment.sections()
    for notebook in config.profile_notebooks(profile):
        if notebook not in known:
            continue
        for run in config.notebook_runs(profile, notebook):
            record = artifacts.load_run(artifacts.run_dir(profile, notebook, run))
            if record is not None:
                found.append(record)
    return found


def _cell(value) -> str:
    return str(value).replace("|", "\\|")


def summary_page(profile: str, runs: list[dict]) -> str:
    """Results at a glance: a scorecard with one row per published figure the runs measure, what each run
    cost when its results were computed, and each run's statement."""
    folder = outputs_dir() / config.profile_name(profile)
    metrics = {r["name"]: json.loads((folder / r["name"] / "metrics.json").read_text())
               if (folder / r["name"] / "metrics.json").exists() else {} for r in runs}
    lines = [f"# Results at a glance ({config.profile_name(profile)} profile)", "",
             "Every number below is read from the `metrics.json` of the run it names; the chapters hold the "
             "figures, tables and intervals behind it.", "", "## Scorecard", "",
             "One row per published figure, with the figure or table and page it was read from. *Effect* says "
             "whether the direction the paper reports (for example, risk-seeking models above risk-averse ones) "
             "reproduces in this run: *reproduced* when the two 95% intervals (a bootstrap over seeds, then "
             "questions) do not overlap in that direction, *not reproduced* when they overlap or point the other "
             "way, *not measurable* when this run has no value (for example, a judge that scored nothing). Only a "
             "figure whose measure is the paper's gets a verdict; the others say why they are *not comparable*. "
             f"A verdict needs at least {paper.MIN_SEEDS} trained models per condition: with fewer, the intervals "
             "hold paraphrase and question variance but not the model-to-model variance the papers' claims are "
             "about, and the row says *indicative only*. *Effect size* is this run's difference of the two means.",
             ""]
    rows = paper.scorecard([(r, metrics[r["name"]]) for r in runs])
    if rows:
        columns = list(rows[0])
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(
            f"[{row['run']}]({row['run']}.ipynb)" if c == "run" else
            "{cite:p}`" + row[c] + "`" if c == "source" else f"`{row[c]}`" if c == "model" else _cell(row[c])
            for c in columns) + " |" for row in rows]
        tested = paper.effects_tested(rows, metrics)
        if tested:
            lines += ["", "Effects tested per run, and at most how many would separate by chance if none were real "
                      "(5% each; non-overlapping intervals are stricter): "
                      + "; ".join(f"{run} {count} (≤ {paper.chance_separations(count):.1f})"
                                  for run, count in tested.items()) + "."]
    else:
        lines.append("No run of this profile measures a published figure.")
    lines += ["", "## What each run cost", "",
              "Seconds, model calls and trainings of the run that computed the results (a rerun from a warm cache "
              "keeps these figures), with the precision it computed in and the CPU it ran on. How much bf16 saves "
              "depends on the CPU's bf16 units: LoRA training ran 1.35x faster in bf16 than in fp32 on a 2-core "
              "AMD EPYC with AVX-512 BF16 (`benchmarks/bench_training.py`). bf16 is never chosen on a CPU without "
              "them (it is emulated there, about ten times slower). \"Pages at once\" above 1 means the page "
              "ran beside others (`selfaware book --jobs N`): its seconds are then longer than alone, about 1.4x "
              "for two pages on two cores, while the book as a whole finishes sooner. *Spent on* splits the "
              "seconds by what the run timed: training, sampling and scoring (judging: scoring by the page's judge "
              "model); the rest is kernel start, imports, statistics, tables and figures.", "",
              "| run | model | seconds | spent on | pages at once | model calls | trainings | precision | CPU | computed |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for record in runs:
        cost = record.get("computed") or record
        numeric = cost.get("numeric") or {}
        precision = numeric.get("precision") or {}
        shown = (f"{precision['used']}" + (" (auto)" if precision.get("setting") == "auto" else "")
                 if precision else "not recorded")
        lines.append(f"| [{record['name']}]({record['name']}.ipynb) | `{record['params'].get('model')}` | "
                     f"{cost['seconds']} | {_spent_on(cost, record['params'].get('judge'))} | "
                     f"{cost.get('pages_at_once', 'not recorded')} | {cost['model_calls']} | "
                     f"{cost['trainings']} | {shown} | "
                     f"{_cell(numeric.get('cpu', 'not recorded'))} | {cost.get('finished', '')} |")
    for record in runs:
        if metrics[record["name"]].get("statement"):
            lines += ["", f"## [{record['name']}]({record['name']}.ipynb)", "", metrics[record["name"]]["statement"]]
    return "\n".join(lines) + "\n"


def _spent_on(cost: dict, judge: str | None) -> str:
    """A run's timed seconds by activity, e.g. "training 36 s, sampling 38 s"."""
    spent: dict[str, float] = {}
    for activity, _, seconds in artifacts.time_spent(cost, judge):
        spent[activity] = spent.get(activity, 0.0) + seconds
    if not spent:
        return "not recorded"
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in sorted(spent.items(), key=lambda i: -i[1]))


def shown_value(value):
    """A parameter value as a published page shows it: every absolute path in it (a data file, a profile
    file, the folder of a ``local:`` model) as :func:`selfaware.paths.shown_path` shows paths, at any depth."""
    if isinstance(value, str):
        prefix, _, rest = value.partition(":") if re.match(r"^[a-z-]+:[/~]", value) else ("", "", value)
        if rest.startswith(("/", "~")) and "\n" not in rest:
            return (f"{prefix}:" if prefix else "") + shown_path(rest)
        return value
    if isinstance(value, list):
        return [shown_value(v) for v in value]
    if isinstance(value, dict):
        return {k: shown_value(v) for k, v in value.items()}
    return value


def _publish_parameters(notebook) -> None:
    """papermill's injected-parameters cell without the machine's paths: the cell is written again by
    papermill's own translator from the values it injected, each path shown as the site shows paths
    (``outputs/...``, a repository path, or ``.../name``)."""
    from papermill.translators import translate_parameters

    parameters = (notebook.metadata.get("papermill") or {}).get("parameters")
    if parameters is None:
        return
    shown = shown_value(dict(parameters))
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = translate_parameters("python3", "python", shown, "Parameters").strip()


# what papermill and the kernel client record of one execution: the input and output paths (a temporary
# folder, the outputs folder), the injected values, the environment, and per cell its start and end times.
# It belongs to the run (outputs/<profile>/<run>/executed.ipynb keeps it, and benchmarks read the cells'
# durations there), not to the published page.
EXECUTION_RECORDS = ("papermill", "execution")


def _strip_execution_records(notebook) -> None:
    for key in EXECUTION_RECORDS:
        notebook.metadata.pop(key, None)
    for cell in notebook.cells:
        for key in EXECUTION_RECORDS:
            cell.metadata.pop(key, None)


def page_notebook(executed: Path, target: Path, record: dict) -> None:
    """The executed notebook as a book page: its title names the run (several pages share a notebook),
    the parameters cell of None placeholders is folded away (papermill's injected values stay, the
    machine's paths in them shown as the site shows paths; papermill's and the kernel client's records of the
    execution are left out), and a cell tagged ``only-<value>`` is left out
    of every page whose run entry has no such value (the prose of one experiment of a notebook stays off its
    other experiments' pages)."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    _publish_parameters(notebook)
    _strip_execution_records(notebook)
    values = {str(v) for v in record["run"].values() if isinstance(v, (str, int, float))}
    notebook.cells = [cell for cell in notebook.cells
                      if all(tag[len("only-"):] in values for tag in cell.metadata.get("tags", [])
                             if tag.startswith("only-"))]
    label = record["run"].get("page") or ", ".join(str(v) for v in record["run"].values()
                                                   if isinstance(v, (str, int, float)))
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# ") and label:
            title, _, rest = cell.source.partition("\n")
            cell.source = f"{title} ({label})\n{rest}"
            break
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags and "hide-input" not in tags:
            cell.metadata["tags"] = tags + ["hide-input"]
    nbformat.write(notebook, target)


def assemble(profile: str) -> Path:
    runs = complete_runs(profile)
    if not runs:
        raise BookFailed(f"no complete runs under {outputs_dir() / config.profile_name(profile)}; run the notebooks first "
                         f"(python -m selfaware run --profile {profile})")
    profile_dir = outputs_dir() / config.profile_name(profile)
    source = profile_dir / "book_src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "book", source, ignore=shutil.ignore_patterns("_build", "_toc.yml"))
    for record in runs:
        page_notebook(profile_dir / record["name"] / "executed.ipynb", source / f"{record['name']}.ipynb",
                      record)
    (source / "summary.md").write_text(summary_page(profile, runs))
    for name, write in GENERATED_PAGES.items():
        (source / f"{name}.md").write_text(write())
    (source / "_toc.yml").write_text(yaml.safe_dump(table_of_contents(runs, source), sort_keys=False))
    return source


def table_of_contents(runs: list[dict], source: Path) -> dict:
    """book/_toc.yml with each ``notebook:`` entry replaced by the pages that notebook ran, and pages that
    are not in ``source`` left out (a part left empty goes too). A page the profile ran that the curated
    file does not place is an error: the reader would never find it."""
    curated = config.read_yaml(REPO_ROOT / "book" / "_toc.yml")
    placed: set[str] = set()
    parts = []
    for part in curated["parts"]:
        chapters = []
        for entry in part["chapters"]:
            if "notebook" in entry:
                pages = [r["name"] for r in runs if r["notebook"] == entry["notebook"]]
                placed.update(pages)
                chapters += [{"file": name} for name in pages]
            elif (source / f"{entry['file']}.md").exists() or (source / f"{entry['file']}.ipynb").exists():
                chapters.append({"file": entry["file"]})
        if chapters:
            parts.append({"caption": part["caption"], "chapters": chapters})
    unplaced = [r["name"] for r in runs if r["name"] not in placed]
    if unplaced:
        raise BookFailed(f"book/_toc.yml places no page of {sorted({r['notebook'] for r in runs if r['name'] in unplaced})}"
                         f" (add an entry `- notebook: NAME` to one of its parts)")
    return {"format": curated["format"], "root": curated["root"], "parts": parts}


def build(profile: str, strict: bool = True) -> Path:
    source = assemble(profile)
    out = outputs_dir() / config.profile_name(profile) / "book"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "jupyter_book", "build", str(source), "--path-output", str(out)]
    jb = Path(sys.executable).with_name("jupyter-book")
    if jb.exists():
        command = [str(jb), "build", str(source), "--path-output", str(out)]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    result = subprocess.run(command, capture_output=True, text=True)
    log = out.parent / "book_build.log"
    log.write_text(result.stdout + "\n" + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise BookFailed(f"jupyter-book build failed (full log: {log}):\n{tail}")
    return site_dir(profile)

"""Assemble and build the Jupyter Book (1.x, Sphinx) from the executed runs of a profile.

The book computes nothing: it shows the executed notebooks and artifacts that papermill left under
``outputs/<profile>/``. The source is assembled in ``outputs/<profile>/book_src`` (static pages from
``book/`` plus the executed notebooks), and the site is written to ``outputs/<profile>/book/_build/html``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from . import artifacts, config
from .errors import SelfAwareError
from .paths import REPO_ROOT, outputs_dir
from .runner import SECTIONS

STATIC_PAGES_AFTER = ["methods", "paper_scale"]  # book/<name>.md, included when present


class BookFailed(SelfAwareError):
    pass


def site_dir(profile: str) -> Path:
    return outputs_dir() / profile / "book" / "_build" / "html"


def complete_runs(profile: str) -> list[dict]:
    """Complete runs of a profile, in the order of the profile's notebooks and runs."""
    found = []
    for notebook in config.profile_notebooks(profile):
        if notebook not in SECTIONS:
            continue
        for run in config.notebook_runs(profile, notebook):
            record = artifacts.load_run(artifacts.run_dir(profile, notebook, run))
            if record is not None:
                found.append(record)
    return found


def summary_page(profile: str, runs: list[dict]) -> str:
    lines = [f"# Results at a glance ({profile} profile)", "",
             "Every statement below is read from the `metrics.json` of the run it names; the chapters hold the "
             "figures, tables and intervals behind it.", "",
             "| run | model | seconds | model calls | cache hits | trainings |", "|---|---|---|---|---|---|"]
    for record in runs:
        lines.append(f"| [{record['name']}]({record['name']}.ipynb) | `{record['params'].get('model')}` | "
                     f"{record['seconds']} | {record['model_calls']} | {record['cache_hits']} | {record['trainings']} |")
    for record in runs:
        metrics_path = outputs_dir() / profile / record["name"] / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
        if metrics.get("statement"):
            lines += ["", f"## [{record['name']}]({record['name']}.ipynb)", "", metrics["statement"]]
    return "\n".join(lines) + "\n"


def page_notebook(executed: Path, target: Path, record: dict) -> None:
    """The executed notebook as a book page: its title names the run (several pages share a notebook),
    and the parameters cell of None placeholders is folded away (papermill's injected values stay)."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
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
        raise BookFailed(f"no complete runs under {outputs_dir() / profile}; run the notebooks first "
                         f"(python -m selfaware run --profile {profile})")
    source = outputs_dir() / profile / "book_src"
    shutil.rmtree(source, ignore_errors=True)
    shutil.copytree(REPO_ROOT / "book", source, ignore=shutil.ignore_patterns("_build", "_toc.yml"))
    for record in runs:
        page_notebook(outputs_dir() / profile / record["name"] / "executed.ipynb", source / f"{record['name']}.ipynb",
                      record)
    (source / "summary.md").write_text(summary_page(profile, runs))
    chapters = [{"file": "summary"}] + [{"file": r["name"]} for r in runs]
    chapters += [{"file": name} for name in STATIC_PAGES_AFTER if (source / f"{name}.md").exists()]
    toc = {"format": "jb-book", "root": "intro", "chapters": chapters}
    (source / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    return source


def build(profile: str, strict: bool = True) -> Path:
    source = assemble(profile)
    out = outputs_dir() / profile / "book"
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

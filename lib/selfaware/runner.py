"""Run notebooks headless with papermill under the artifact contract, and report what they cost."""

from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import artifacts, config
from .errors import ConfigError, SelfAwareError
from .paths import REPO_ROOT, notebooks_dir

# notebook -> "module:ConfigClass", used to validate parameters before a kernel is started
SECTIONS = {
    "01_multiple_choice": "selfaware.sections.multiple_choice:MultipleChoiceConfig",
    "03_vulnerable_code": "selfaware.sections.vulnerable_code:VulnerableCodeConfig",
    "07_emergent_misalignment": "selfaware.sections.emergent_misalignment:EmergentMisalignmentConfig",
}


class NotebookFailed(SelfAwareError):
    pass


def config_class(notebook: str):
    if notebook not in SECTIONS:
        raise ConfigError(f"unknown notebook {notebook!r}; known: {', '.join(SECTIONS)}")
    module, _, name = SECTIONS[notebook].partition(":")
    return getattr(importlib.import_module(module), name)


def notebook_source(notebook: str) -> Path:
    path = notebooks_dir() / f"{notebook}.py"
    if not path.exists():
        raise ConfigError(f"notebook source {path} does not exist")
    return path


def planned_runs(profile: str, notebooks: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(notebook, run) pairs of a profile, each validated before anything executes."""
    from .models import load_model

    names = notebooks or config.profile_notebooks(profile)
    runs = []
    for notebook in names:
        notebook_source(notebook)
        for run in config.notebook_runs(profile, notebook):
            cfg = config.resolve(config_class(notebook), notebook, profile, run)  # raises on a bad parameter
            load_model(cfg.model)  # a missing local model fails here, before any kernel starts
            runs.append((notebook, run))
    return runs


def execute(notebook: str, profile: str, run: dict[str, Any], extra: dict[str, Any] | None = None,
            log_output: bool = False) -> dict[str, Any]:
    """Execute one run with papermill; returns its run.json record. A failure names the notebook and cell
    and keeps the partial executed notebook."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    parameters = {"profile": profile, **run, **(extra or {})}
    config.resolve(config_class(notebook), notebook, profile, {k: v for k, v in parameters.items() if k != "profile"})
    out_dir = artifacts.run_dir(profile, notebook, run)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / "executed.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{notebook}.ipynb"
        jupytext.write(jupytext.read(notebook_source(notebook)), source)
        started = time.time()
        try:
            papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name="python3",
                                       cwd=str(REPO_ROOT), progress_bar=sys.stderr.isatty(),
                                       log_output=log_output, request_save_on_cell_execute=True)
        except PapermillExecutionError as error:
            raise NotebookFailed(
                f"{notebook} ({artifacts.run_name(notebook, run)}) failed in cell {error.exec_count}: "
                f"{error.ename}: {error.evalue.splitlines()[0] if error.evalue else ''}\n"
                f"  partial executed notebook kept at {executed}") from None
    record = artifacts.load_run(out_dir)
    if record is None:
        raise NotebookFailed(f"{notebook} finished without writing a complete run.json in {out_dir}")
    record["wall_seconds"] = round(time.time() - started, 1)
    return record


def run_profile(profile: str, notebooks: list[str] | None = None, extra: dict[str, Any] | None = None,
                log_output: bool = False) -> list[dict[str, Any]]:
    runs = planned_runs(profile, notebooks)
    records = []
    print(f"Running {len(runs)} notebook run(s) of profile {profile!r}", flush=True)
    for k, (notebook, run) in enumerate(runs, start=1):
        name = artifacts.run_name(notebook, run)
        print(f"[{k}/{len(runs)}] {name} ...", flush=True)
        record = execute(notebook, profile, run, extra, log_output=log_output)
        print(f"[{k}/{len(runs)}] {name}: {record['wall_seconds']} s, {record['model_calls']} model call(s), "
              f"{record['trainings']} training(s), {record['cache_hits']} cache hit(s)", flush=True)
        records.append(record)
    summary = {"profile": profile, "runs": [{"name": r["name"], "seconds": r["wall_seconds"],
                                             "model_calls": r["model_calls"], "trainings": r["trainings"],
                                             "cache_hits": r["cache_hits"]} for r in records]}
    path = artifacts.outputs_dir() / profile / "runs.json"
    path.write_text(json.dumps(summary, indent=1))
    return records


def section_plan(notebook: str, cfg) -> dict[str, Any]:
    """What one run would train and ask, built from the same section functions the notebook calls, without
    any model call (datasets are generated or read; nothing is trained or sampled)."""
    if notebook == "01_multiple_choice":
        from .sections import multiple_choice as section
        taskset = section.load_tasks(cfg.behavior)
        return section.plan(cfg, section.load_training_data(cfg), taskset)
    if notebook == "03_vulnerable_code":
        from .sections import vulnerable_code as section
        return section.plan(cfg, section.load_training_data(cfg), section.tasks())
    from .sections import emergent_misalignment as section
    sets, _ = section.training_sets(cfg)
    return section.plan(cfg, sets, section.load_question_set(cfg))


def plan_profile(profile: str, notebooks: list[str] | None = None) -> float:
    """Dry run of a whole profile: print every run's plan and cost estimate; no key is needed. Returns the
    total estimate in USD."""
    from .notebook import DryRun, guard_spending

    total = 0.0
    for notebook, run in planned_runs(profile, notebooks):
        cfg = config.resolve(config_class(notebook), notebook, profile, {**run, "dry_run": True})
        print(f"\n== {artifacts.run_name(notebook, run)} ({profile}) ==")
        try:
            guard_spending(cfg.model_copy(update={"budget_usd": float("inf")}), section_plan(notebook, cfg))
        except DryRun as stop:
            total += stop.estimate.get("total_usd", 0.0)
    print(f"\nEstimated total for profile {profile!r}: ${total:,.2f}")
    return total

"""Run notebooks headless with papermill under the artifact contract, and report what they cost."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import artifacts, config, experiment
from .errors import ConfigError, SelfAwareError
from .paths import REPO_ROOT, notebooks_dir

if TYPE_CHECKING:
    from .estimate import Estimate


class NotebookFailed(SelfAwareError):
    pass


def config_class(notebook: str):
    return experiment.section(notebook).config


def notebook_source(notebook: str) -> Path:
    path = notebooks_dir() / f"{notebook}.py"
    if not path.exists():
        raise ConfigError(f"notebook source {path} does not exist")
    return path


@dataclass(frozen=True)
class PlannedRun:
    notebook: str
    run: dict[str, Any]  # the profile's run entry (or the overrides of an ad-hoc page)
    name: str  # the output folder: outputs/<profile>/<name>/
    parameters: dict[str, Any]  # what papermill injects (besides profile and run_name)


def require_model(spec: str) -> None:
    """A local model that is not there is one error naming the install command (``make qwen-1.5b`` for the
    default profile's judge); any other spec only has to parse and load lazily."""
    from .models import load_model, parse_spec

    parsed = parse_spec(spec)
    if parsed.embedded is not None:
        from .models.embedded import check_available
        check_available(parsed.name)
    load_model(spec)


def planned_runs(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
                 page: str | None = None, check_models: bool = True) -> list[PlannedRun]:
    """The runs of a profile, each validated (parameters, finetune hyperparameters and, with
    ``check_models``, the local models' presence) before anything executes. A plan (pricing, validation)
    does not need the weights installed; running does. ``overrides`` apply to every run; a run entry's own key cannot be
    overridden (its page would then hold another experiment), except on an ad-hoc page: ``page`` runs each
    notebook once, from the profile's notebook parameters plus ``overrides``, into ``<notebook>-<page>``."""
    # relative paths are the user's, from where the command was given; the kernel works in the repository
    overrides = config.with_absolute_paths(dict(overrides or {}), Path.cwd())
    names = notebooks or config.profile_notebooks(profile)
    if page is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", page):
        raise ConfigError(f"--page {page!r}: use letters, digits, '.', '_' and '-' only")
    runs = []
    for notebook in names:
        notebook_source(notebook)
        entries = [{}] if page is not None else config.notebook_runs(profile, notebook)
        for entry in entries:
            clash = sorted(k for k in overrides if k in entry and entry[k] != overrides[k])
            if clash:
                raise ConfigError(f"{notebook}: -p {', '.join(clash)} would change what the page "
                                  f"{artifacts.run_name(notebook, entry)} measures; give --page NAME to run it as "
                                  f"a page of its own")
            name = (f"{notebook}-{page}" if page is not None else artifacts.run_name(notebook, entry))
            parameters = config.with_nulls({**entry, **overrides})  # a null given by the user stays null
            cfg = config.resolve(config_class(notebook), notebook, profile, parameters)  # raises on a bad value
            for spec in dict.fromkeys(cfg.models_used()):  # a missing model fails here, before any kernel starts
                if check_models:
                    require_model(spec)
                else:
                    from .models import parse_spec
                    parse_spec(spec)  # still a one-line error for a spec that cannot mean any model
            runs.append(PlannedRun(notebook, entry, name, parameters))
    return runs


def execute(notebook: str, profile: str, run: dict[str, Any], extra: dict[str, Any] | None = None,
            log_output: bool = False, name: str | None = None, label: str | None = None,
            live: bool | None = None) -> dict[str, Any]:
    """Execute one run with papermill; returns its run.json record. A failure names the notebook and cell
    and keeps the partial executed notebook. The runner names the output folder and passes that name into
    the notebook (``run_name``), so the executed notebook and the artifacts always land together. The
    terminal shows the page's progress live (``selfaware.progress``); the kernel's own output goes to the
    page's run.log. ``live``: redraw one line (True) or print a line per finished cell (False); by default,
    live on a terminal."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from . import hardware, progress

    name = name or artifacts.run_name(notebook, run)
    parameters = {"profile": profile, **run, **(extra or {}), "run_name": name}
    cfg = config.resolve(config_class(notebook), notebook, profile,
                         {k: v for k, v in parameters.items() if k != "profile"})
    out_dir = artifacts.run_dir(profile, notebook, run, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / "executed.ipynb"
    previous = artifacts.load_run(out_dir)
    hardware.quiet_waits()  # the kernel inherits it: OpenMP threads sleep instead of spinning while idle
    guess = page_estimate(notebook, cfg)  # before the page's clock starts: its seconds are the page's own
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{notebook}.ipynb"
        jupytext.write(jupytext.read(notebook_source(notebook)), source)
        started = time.time()
        watch = progress.PageWatch(label or name, out_dir / "run.log",
                                   expected_seconds=(previous or {}).get("seconds"), live=live,
                                   estimate=guess.text())
        try:
            papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name="python3",
                                       cwd=str(REPO_ROOT), progress_bar=False, engine_name=progress.ENGINE,
                                       watch=watch, kernel_log=out_dir / "run.log",
                                       log_output=log_output, request_save_on_cell_execute=True)
        except PapermillExecutionError as error:
            raise NotebookFailed(
                f"{notebook} ({name}) failed in cell {error.exec_count}: "
                f"{error.ename}: {_shown_error(error.evalue)}\n"
                f"  partial executed notebook kept at {executed}; its log: {out_dir / 'run.log'}") from None
        finally:
            watch.close()
    record = artifacts.load_run(out_dir)
    if record is None:
        raise NotebookFailed(f"{notebook} finished without writing a complete run.json in {out_dir}")
    record["wall_seconds"] = round(time.time() - started, 1)
    return record


def page_estimate(notebook: str, cfg) -> Estimate:
    """How long the page will take on this machine, from its plan (``selfaware.estimate``). A plan that
    fails gives no estimate: the page's own guard then reports the fault, in its cell. An estimate never
    stops a page, whatever goes wrong in it."""
    from . import estimate

    try:
        planned = experiment.section(notebook).plan(cfg).record()
        return estimate.page_estimate(planned, estimate.Machine.here(cfg.precision))
    except Exception as error:  # noqa: BLE001 - the page itself runs and reports it
        return estimate.Estimate(None, f"the plan failed ({type(error).__name__})")


def _shown_error(text: str | None) -> str:
    """A kernel's error message as the terminal shows it: whole, up to a header, the listed faults
    (``selfaware.datasets.jsonl.MAX_REPORTED``, as a dataset error lists them) and its "... more" line."""
    from .datasets.jsonl import MAX_REPORTED

    lines = (text or "").splitlines()
    return "\n".join(lines[:MAX_REPORTED + 2])


def check_data(profile: str, runs: list[PlannedRun]) -> dict[str, experiment.Plan]:
    """What ``selfaware plan`` checks, before any kernel starts: each run's plan is built from the datasets
    and prompts the run will send, so a malformed data file or a question set that does not fit fails here,
    with every faulty line (``file:line: reason``), rather than in a notebook cell. Nothing is called or
    trained: the plan only reads and counts. Returns each run's plan by run name."""
    plans = {}
    for planned in runs:
        cfg = config.resolve(config_class(planned.notebook), planned.notebook, profile, planned.parameters)
        try:
            plans[planned.name] = experiment.section(planned.notebook).plan(cfg)
        except SelfAwareError as error:
            try:  # the same kind of error, naming the run
                named = type(error)(f"{planned.name}: {error}")
            except TypeError:
                named = SelfAwareError(f"{planned.name}: {error}")
            raise named from None
    return plans


def run_after(runs: list[PlannedRun], plans: dict[str, experiment.Plan]) -> dict[str, list[str]]:
    """For each run, the earlier runs it must wait for when pages run side by side: those whose plans
    train or ask something it also trains or asks (09 reuses the models 01 and 08 train, 07 the ones 03
    trains), and the earlier runs of its own notebook. Run after them, it finds their work in the cache,
    as it does when the book runs page by page; so its numbers, calls and trainings are the same either way."""
    work = {planned.name: plans[planned.name].work() for planned in runs}
    return {planned.name: [earlier.name for earlier in runs[:k]
                           if earlier.notebook == planned.notebook or work[earlier.name] & work[planned.name]]
            for k, planned in enumerate(runs)}


def run_profile(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
                page: str | None = None, log_output: bool = False, jobs: int = 1) -> list[dict[str, Any]]:
    """Run the profile's pages; with ``jobs`` above 1, that many at once, each after the runs it reuses
    (:func:`run_after`). Each page keeps torch's thread count either way, so it computes what it computes
    alone; side by side, one page's Python, kernel start and imports overlap the other's arithmetic."""
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give 1 or more")
    profile = config.profile_reference(profile)  # a profile file given relative to where the command was given
    runs = planned_runs(profile, notebooks, overrides, page)
    plans = check_data(profile, runs)
    print(f"Running {len(runs)} notebook run(s) of profile {profile!r}"
          + (f", {jobs} at a time" if jobs > 1 and len(runs) > 1 else ""), flush=True)
    position = {planned.name: k for k, planned in enumerate(runs, start=1)}

    def started(planned: PlannedRun) -> str:
        label = f"[{position[planned.name]}/{len(runs)}] {planned.name}"
        print(f"{label} ...", flush=True)
        return label

    def finished(label: str, record: dict[str, Any]) -> None:
        print(f"{label}: {record['wall_seconds']} s, {record['model_calls']} model call(s), "
              f"{record['trainings']} training(s), {record['cache_hits']} cache hit(s)", flush=True)

    by_name: dict[str, dict[str, Any]] = {}
    if jobs == 1 or len(runs) == 1:
        for planned in runs:
            label = started(planned)
            by_name[planned.name] = execute(planned.notebook, profile, planned.parameters, log_output=log_output,
                                            name=planned.name, label=label)
            finished(label, by_name[planned.name])
    else:
        by_name = _run_side_by_side(profile, runs, run_after(runs, plans), jobs, log_output, started, finished)
    records = [by_name[planned.name] for planned in runs]
    summary = {"profile": profile, "runs": [{"name": r["name"], "seconds": r["wall_seconds"],
                                             "model_calls": r["model_calls"], "trainings": r["trainings"],
                                             "cache_hits": r["cache_hits"]} for r in records]}
    path = artifacts.outputs_dir() / config.profile_name(profile) / "runs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
    return records


def _execute_in_child(notebook: str, profile: str, parameters: dict[str, Any], log_output: bool, name: str,
                      label: str, jobs: int) -> dict[str, Any]:
    """One page in a worker process: one plain line per finished cell, since several pages share the terminal.
    The page's kernel inherits how many pages run at once, and its run.json records it beside its seconds."""
    os.environ["SELFAWARE_PAGES_AT_ONCE"] = str(jobs)
    return execute(notebook, profile, parameters, log_output=log_output, name=name, label=label, live=False)


def _run_side_by_side(profile: str, runs: list[PlannedRun], after: dict[str, list[str]], jobs: int,
                      log_output: bool, started, finished) -> dict[str, dict[str, Any]]:
    """Up to ``jobs`` pages at once in worker processes, each begun once the runs it waits for are done, the
    one with the longest chain of runs waiting on it first. A failure lets the pages in progress finish, starts no other, and is raised."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    done: dict[str, dict[str, Any]] = {}
    # the longest chain of runs waiting on each run: a run that others wait for begins first (03 before a
    # page no one waits for, so 07, 08 and 09 do not end the book alone on one core), then profile order
    chain: dict[str, int] = {}
    for planned in reversed(runs):
        chain[planned.name] = max((1 + chain[later.name] for later in runs if planned.name in after[later.name]),
                                  default=0)
    waiting = sorted(runs, key=lambda planned: -chain[planned.name])
    failure: BaseException | None = None
    # spawn: a worker starts clean (no torch or kernel-client state copied from this process)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        running: dict[Any, tuple[PlannedRun, str]] = {}
        while waiting or running:
            while failure is None and len(running) < jobs:
                ready = next((p for p in waiting if all(name in done for name in after[p.name])), None)
                if ready is None:
                    break
                waiting.remove(ready)
                label = started(ready)
                future = pool.submit(_execute_in_child, ready.notebook, profile, ready.parameters, log_output,
                                     ready.name, label, jobs)
                running[future] = (ready, label)
            if not running:
                break
            finished_now, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished_now:
                planned, label = running.pop(future)
                try:
                    done[planned.name] = future.result()
                except BaseException as error:  # noqa: BLE001 - the first failure is raised once the others end
                    failure = failure or error
                    continue
                finished(label, done[planned.name])
    if failure is not None:
        raise failure
    return done


def plan_profile(profile: str, notebooks: list[str] | None = None, overrides: dict[str, Any] | None = None,
                 page: str | None = None) -> float:
    """Dry run of a whole profile: print every run's plan and cost estimate, computed by each section's
    registered plan from the datasets and prompts the run would send; no key is needed and nothing is
    called or trained. Returns the total estimate in USD."""
    total = 0.0
    for planned in planned_runs(profile, notebooks, overrides, page, check_models=False):
        cfg = config.resolve(config_class(planned.notebook), planned.notebook, profile,
                             {**planned.parameters, "dry_run": True, "budget_usd": float("inf")})
        print(f"\n== {planned.name} ({profile}) ==")
        try:
            experiment.guard(cfg, experiment.section(planned.notebook).plan(cfg))
        except experiment.DryRun as stop:
            total += stop.estimate.get("total_usd", 0.0)
    print(f"\nEstimated total for profile {profile!r}: ${total:,.2f}")
    return total

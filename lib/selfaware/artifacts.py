"""The artifact contract: what a notebook run leaves under ``outputs/<profile>/<run>/``.

    executed.ipynb   the notebook with its outputs (written by papermill)
    metrics.json     scalars quoted in the text
    tables/*.csv     every table
    figures/*.png    every figure (+ .pdf)
    samples.jsonl    one line per model answer: a ``selfaware.experiment.SampleRecord``, strict JSON (no NaN)
    run.json         params, git sha, versions, seeds, backend, model calls; "status": "complete" last;
                     ``computed``: what the run cost when its results were last computed (a warm rerun that
                     makes no call and trains nothing keeps the figures of the run that did the work)

``run.json`` is removed when a run starts and written when it finishes (through ``run.json.tmp``, which a
failed write removes), so a crashed or running notebook's directory never looks complete; the book only
shows complete runs. A damaged ``run.json`` (cut short, not a JSON object) is replaced by a rerun of its
notebook; the book builder stops on it with a one-line :class:`DamagedRunRecord` naming the file and that rerun.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import context, hardware
from .errors import SelfAwareError
from .paths import REPO_ROOT, outputs_dir

PACKAGES = ["selfaware", "torch", "transformers", "peft", "openai", "fireworks-ai", "pandas", "papermill"]


class DamagedRunRecord(SelfAwareError):
    """A run.json that is not a run record; the message names the file and the rerun that replaces it."""


def run_name(notebook: str, run: dict[str, Any]) -> str:
    """``<notebook>-<page>`` when the run names its page, else the notebook joined with the run's plain
    values (``01_multiple_choice-risk``)."""
    if run.get("page"):
        suffix = str(run["page"])
    else:
        suffix = "-".join(str(v) for v in run.values() if isinstance(v, (str, int, float)) and v != "")
    suffix = re.sub(r"[^A-Za-z0-9_.-]+", "_", suffix)
    return f"{notebook}-{suffix}" if suffix else notebook


def run_dir(profile: str, notebook: str, run: dict[str, Any], name: str | None = None) -> Path:
    from .config import profile_name
    return outputs_dir() / profile_name(profile) / (name or run_name(notebook, run))


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def _show(png: Path, caption: str) -> None:
    """Show the saved PNG (exactly the file the book links) with its caption, when inside a notebook."""
    try:
        from IPython import get_ipython
        from IPython.display import Image, Markdown, display
    except ImportError:
        return
    if get_ipython() is None:
        return
    display(Image(filename=str(png)))
    display(Markdown(f"*Figure {png.stem}.* {caption}"))


class Run:
    """Writes one run's artifacts; everything is flushed to disk as soon as it is produced."""

    def __init__(self, notebook: str, config, run: dict[str, Any] | None = None):
        """``run``: the parameters that name the page when the notebook is run by hand; under the runner
        the config's ``run_name`` (papermill's output folder) wins."""
        self.notebook = notebook
        self.config = config
        self.run = {"page": config.page} if getattr(config, "page", None) else dict(run or {})
        self.name = getattr(config, "run_name", None) or run_name(notebook, self.run)
        self.dir = run_dir(config.profile, notebook, self.run, self.name)
        (self.dir / "tables").mkdir(parents=True, exist_ok=True)
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)
        if getattr(config, "run_name", None):  # under the runner: the page is published, its log kept apart
            context.current().divert_log(self.dir / "run.log")  # first, so that the notices below go there too
        try:
            previous = load_run(self.dir)
        except DamagedRunRecord as damaged:  # this rerun replaces it
            context.current().notice(f"{damaged}: replaced by this run")
            previous = None
        self.previously_computed = (previous or {}).get("computed")
        (self.dir / "run.json").unlink(missing_ok=True)
        (self.dir / "run.json.tmp").unlink(missing_ok=True)  # left by a finish() that failed
        (self.dir / "samples.jsonl").unlink(missing_ok=True)
        (self.dir / "metrics.json").unlink(missing_ok=True)
        self.metrics: dict[str, Any] = {}
        self.figures: list[dict[str, str]] = []
        self.provenance: dict[str, Any] = {}
        self.planned: dict[str, Any] | None = None  # the page's plan (experiment.Plan.record), once guarded
        self.started = time.time()
        context.current().release()  # servers a previous run of this process left open (a page opened again)
        context.current().reset_counts()  # the run record counts from here
        hardware.set_precision(getattr(config, "precision", None))

    def save_table(self, frame, name: str) -> None:
        frame.to_csv(self.dir / "tables" / f"{name}.csv", index=False)

    def save_figure(self, fig, name: str, caption: str) -> None:
        png = self.dir / "figures" / f"{name}.png"
        fig.savefig(png)
        fig.savefig(png.with_suffix(".pdf"))
        self.figures.append({"name": name, "caption": caption})
        _show(png, caption)
        import matplotlib.pyplot as plt
        plt.close(fig)  # returns nothing: a notebook cell ending here shows the figure, not a path

    def add_samples(self, rows, kind: str, **columns: str) -> None:
        """Append a measurement's rows (a DataFrame or dicts) to samples.jsonl as ``SampleRecord`` lines;
        ``columns`` maps record fields to the rows' columns (see ``records.sample_records``)."""
        from .records import sample_records

        if hasattr(rows, "to_dict"):
            rows = rows.to_dict("records")
        with (self.dir / "samples.jsonl").open("a", encoding="utf-8") as handle:
            for record in sample_records(rows, self.name, kind, **columns):
                handle.write(json.dumps(record.model_dump(mode="json"), ensure_ascii=False, allow_nan=False) + "\n")

    def set_metrics(self, **values: Any) -> None:
        from .util import clean

        self.metrics.update(values)
        text = json.dumps(clean(self.metrics), indent=1, default=_json_default, allow_nan=False)
        (self.dir / "metrics.json").write_text(text)

    def finish(self) -> dict[str, Any]:
        record = {
            "status": "complete",
            "notebook": self.notebook,
            "run": self.run,
            "name": self.name,
            "profile": self.config.profile,
            "params": self.config.model_dump(mode="json"),
            "provenance": self.provenance,
            "figures": self.figures,
            "git": git_sha(),
            "versions": versions(),
            "seconds": round(time.time() - self.started, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "numeric": hardware.setup(),  # precision used and why, threads, CPU, device
            **context.current().record(),  # calls, hits, trainings, API requests, servers, the effective settings
            **({"planned": self.planned} if self.planned is not None else {}),
        }
        did_work = record["model_calls"] or record["trainings"]
        record["pages_at_once"] = record["settings"]["pages_at_once"]  # pages measured side by side with it
        # what the run took from the cache stays beside its seconds: a timing counts towards a page estimate's
        # rates only for what it computed (selfaware.estimate)
        record["computed"] = ({key: record[key] for key in ("seconds", "model_calls", "trainings", "finished", "git",
                                                            "numeric", "pages_at_once", "seconds_by_activity",
                                                            "cache_hits_by_kind", "trainings_cached")}
                              if did_work or not self.previously_computed else self.previously_computed)
        context.current().release()  # the run's servers stop (its log stays diverted: the kernel may still write)
        self.set_metrics()  # make sure metrics.json exists even when empty
        tmp = self.dir / "run.json.tmp"
        try:
            tmp.write_text(json.dumps(record, indent=1, default=_json_default))
            tmp.replace(self.dir / "run.json")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return record


def time_spent(record: dict[str, Any], judge: str | None = None) -> list[tuple[str, str, float]]:
    """Where a run's timed seconds went (its ``seconds_by_activity``): (activity, model, seconds), longest
    first; scoring by ``judge`` (the page's judge model spec) is named judging. Empty when not recorded."""
    from .models import parse_spec

    judge_label = parse_spec(judge).name if judge else None
    spent = [("judging" if activity == "scoring" and model == judge_label else activity, model, float(seconds))
             for activity, by_model in (record.get("seconds_by_activity") or {}).items()
             for model, seconds in by_model.items()]
    return sorted(spent, key=lambda item: -item[2])


def load_run(path: Path) -> dict[str, Any] | None:
    """The complete run recorded in ``path``/run.json, or None (no record, or a run that did not finish).
    A file that is not a run record raises :class:`DamagedRunRecord`."""
    meta = Path(path) / "run.json"
    try:
        text = meta.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged_record(meta, f"unreadable: {error}") from None
    try:
        record = json.loads(text)
    except ValueError as error:
        raise _damaged_record(meta, f"not valid JSON: {error}" if text.strip() else "empty") from None
    if not isinstance(record, dict):
        raise _damaged_record(meta, f"a JSON {type(record).__name__}, not an object")
    return record if record.get("status") == "complete" else None


def _damaged_record(meta: Path, why: str) -> DamagedRunRecord:
    from .paths import shown_path

    profile, notebook = meta.parent.parent.name, meta.parent.name
    return DamagedRunRecord(f"{shown_path(meta)} is not a run record ({why}); rerun its notebook to replace it "
                            f"(python -m selfaware run --profile {profile} --notebook {notebook.split('-')[0]}) "
                            f"or delete the folder")

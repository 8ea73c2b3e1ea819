"""The artifact contract: what a notebook run leaves under ``outputs/<profile>/<run>/``.

    executed.ipynb   the notebook with its outputs (written by papermill)
    metrics.json     scalars quoted in the text
    tables/*.csv     every table
    figures/*.png    every figure (+ .pdf)
    samples.jsonl    one line per model answer
    run.json         params, git sha, versions, seeds, backend, model calls; "status": "complete" last

``run.json`` is removed when a run starts and written when it finishes, so a crashed or running
notebook's directory never looks complete; the book only shows complete runs.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from . import cache
from .paths import REPO_ROOT, outputs_dir

PACKAGES = ["selfaware", "torch", "transformers", "peft", "openai", "fireworks-ai", "pandas", "papermill"]


def run_name(notebook: str, run: dict[str, Any]) -> str:
    """``<notebook>-<page>`` when the run names its page, else the notebook joined with the run's plain
    values (``01_multiple_choice-risk``)."""
    if run.get("page"):
        suffix = str(run["page"])
    else:
        suffix = "-".join(str(v) for v in run.values() if isinstance(v, (str, int, float)) and v != "")
    suffix = re.sub(r"[^A-Za-z0-9_.-]+", "_", suffix)
    return f"{notebook}-{suffix}" if suffix else notebook


def run_dir(profile: str, notebook: str, run: dict[str, Any]) -> Path:
    return outputs_dir() / profile / run_name(notebook, run)


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
        self.notebook = notebook
        self.config = config
        self.run = {"page": config.page} if getattr(config, "page", None) else dict(run or {})
        self.name = run_name(notebook, self.run)
        self.dir = run_dir(config.profile, notebook, self.run)
        (self.dir / "tables").mkdir(parents=True, exist_ok=True)
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)
        (self.dir / "run.json").unlink(missing_ok=True)
        (self.dir / "samples.jsonl").unlink(missing_ok=True)
        (self.dir / "metrics.json").unlink(missing_ok=True)
        self.metrics: dict[str, Any] = {}
        self.figures: list[dict[str, str]] = []
        self.provenance: dict[str, Any] = {}
        self.started = time.time()
        cache.reset_counters()

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

    def add_samples(self, records: Iterable[dict[str, Any]]) -> None:
        with (self.dir / "samples.jsonl").open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False, default=_json_default) + "\n")

    def set_metrics(self, **values: Any) -> None:
        self.metrics.update(values)
        (self.dir / "metrics.json").write_text(json.dumps(self.metrics, indent=1, default=_json_default))

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
            **cache.COUNTERS.as_dict(),
        }
        api = sys.modules.get("selfaware.models.api")
        if api is not None and getattr(api, "API_STATS", None):
            record["api_requests"] = dict(api.API_STATS)  # attempts, retries, faults seen on paid backends
        self.set_metrics()  # make sure metrics.json exists even when empty
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(record, indent=1, default=_json_default))
        tmp.replace(self.dir / "run.json")
        return record


def load_run(path: Path) -> dict[str, Any] | None:
    meta = Path(path) / "run.json"
    if not meta.exists():
        return None
    record = json.loads(meta.read_text())
    return record if record.get("status") == "complete" else None

"""Published figures as data (``data/paper_figures.yaml``) and the scorecard that sets them beside a run.

Every figure names its source by citation key (``book/references.bib``), the section and run that
measure it, and where that run's value sits in its ``metrics.json``. A figure with a ``direction`` is
evidence of an effect (this metric above or below another of the same run); the scorecard calls it
reproduced when the two 95% intervals do not overlap in that direction, not reproduced when they overlap
or point the other way, and not measurable when the run has no value (for example, a judge that scored
nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .config import read_yaml
from .errors import ConfigError
from .paths import data_dir

_KEYS = {"id", "source", "where", "notebook", "run", "condition", "measure", "paper", "value", "metric",
         "direction", "model", "parameters", "range"}


@dataclass(frozen=True)
class Figure:
    id: str
    source: str
    where: str
    notebook: str
    run: dict[str, Any]
    condition: str
    measure: str
    paper: str
    value: float | None
    metric: str
    direction: dict[str, str]
    model: str | None = None  # the published model, where it is not the page's own (the scaling page)
    parameters: float | None = None  # its parameter count, where published
    range: tuple[float, float] | None = None  # a published range of ``value`` (low, high)

    def matches(self, notebook: str, run: dict[str, Any]) -> bool:
        return notebook == self.notebook and all(run.get(k) == v for k, v in self.run.items())


@lru_cache(maxsize=4)
def figures(path: str | None = None) -> tuple[Figure, ...]:
    path = Path(path) if path else data_dir() / "paper_figures.yaml"
    entries = (read_yaml(path) or {}).get("figures") or []
    found, seen = [], set()
    for number, entry in enumerate(entries, start=1):
        unknown = set(entry) - _KEYS
        missing = {"id", "source", "notebook", "condition", "measure", "paper", "metric"} - set(entry)
        if unknown or missing:
            raise ConfigError(f"{path}: figure {number} ({entry.get('id', '?')}): "
                              + (f"unknown key(s) {', '.join(sorted(unknown))}" if unknown else
                                 f"missing {', '.join(sorted(missing))}"))
        if entry["id"] in seen:
            raise ConfigError(f"{path}: figure id {entry['id']!r} appears twice")
        seen.add(entry["id"])
        direction = entry.get("direction") or {}
        if set(direction) - {"above", "below"} or len(direction) > 1:
            raise ConfigError(f"{path}: figure {entry['id']}: direction is one of {{above: metric}}, {{below: metric}}")
        found.append(Figure(entry["id"], entry["source"], entry.get("where", ""), entry["notebook"],
                            dict(entry.get("run") or {}), entry["condition"], entry["measure"], str(entry["paper"]),
                            entry.get("value"), entry["metric"], dict(direction), entry.get("model"),
                            entry.get("parameters"), tuple(entry["range"]) if entry.get("range") else None))
    return tuple(found)


def published(notebook: str, run: dict[str, Any], measure: str, condition: str) -> str:
    """The published value of a measure for a condition, as printed in its source ('' when none)."""
    for figure in figures():
        if figure.matches(notebook, run) and figure.measure == measure and figure.condition == condition:
            return figure.paper
    return ""


def cite(notebook: str, run: dict[str, Any]) -> str:
    """A MyST citation of every source a run is compared with ('' when none)."""
    keys = sorted({f.source for f in figures() if f.matches(notebook, run)})
    return "{cite}`" + ",".join(keys) + "`" if keys else ""


def lookup(metrics: dict[str, Any], path: str) -> dict[str, float | None] | None:
    """The node at a dotted path of metrics.json as {mean, ci_low, ci_high} (a plain number has no
    interval); None when the path is absent."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict) and "mean" in node:
        return {"mean": node.get("mean"), "ci_low": node.get("ci_low"), "ci_high": node.get("ci_high")}
    if isinstance(node, (int, float)) or node is None:
        return {"mean": node, "ci_low": None, "ci_high": None}
    return None


def verdict(metrics: dict[str, Any], figure: Figure) -> str:
    """'reproduced', 'not reproduced', 'not measurable' or '' (a figure that is not an effect)."""
    if not figure.direction:
        return ""
    (side, other_path), = figure.direction.items()
    mine, other = lookup(metrics, figure.metric), lookup(metrics, other_path)
    if not mine or not other or mine["mean"] is None or other["mean"] is None:
        return "not measurable"
    if None in (mine["ci_low"], mine["ci_high"], other["ci_low"], other["ci_high"]):
        wrong_way = mine["mean"] <= other["mean"] if side == "above" else mine["mean"] >= other["mean"]
        return "not reproduced" if wrong_way else "direction only (no interval)"
    separated = mine["ci_low"] > other["ci_high"] if side == "above" else mine["ci_high"] < other["ci_low"]
    return "reproduced" if separated else "not reproduced"


def _interval(node: dict[str, float | None] | None) -> str:
    if not node or node["mean"] is None:
        return "n/a"
    if node["ci_low"] is None or node["ci_high"] is None:
        return f"{node['mean']:.2f}"
    return f"{node['mean']:.2f} [{node['ci_low']:.2f}, {node['ci_high']:.2f}]"


def scorecard(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, str]]:
    """One row per published figure measured by one of ``runs`` ((run.json record, metrics) pairs)."""
    rows = []
    for record, metrics in runs:
        for figure in figures():
            if not figure.matches(record["notebook"], {**record["params"], **record.get("run", {})}):
                continue
            rows.append({"run": record["name"], "source": figure.source, "measure": figure.measure,
                         "condition": figure.condition, "paper": figure.paper,
                         "this run [95% CI]": _interval(lookup(metrics, figure.metric)),
                         "model": record["params"].get("model", ""), "effect": verdict(metrics, figure)})
    return rows

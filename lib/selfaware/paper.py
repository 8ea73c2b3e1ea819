"""Published figures as data (``data/paper_figures.yaml``) and the scorecard that sets them beside a run.

Every figure names its source by citation key (``book/references.bib``), the figure or table and page it
was read from (``where``, ``page``; a page not checked against the paper is ``unverified``), the paper's
measure in words, whether this book's run measures the same thing (``comparable``, with the ``reason`` when
it does not: a different question, metric, model or data), the section and run that measure it, and where
that run's value sits in its ``metrics.json``. A run may also find its own measure not comparable (its
metrics.json names the path and the reason under ``not_comparable``, e.g. an instrument its calibration shows
blind to the effect): the scorecard then shows that reason instead of a verdict.

A figure with a ``direction`` is evidence of an effect (this metric above or below another of the same
run). Only a comparable figure gets a verdict: reproduced when the two 95% intervals do not overlap in that
direction, not reproduced when they overlap or point the other way, and not measurable when the run has no
value (for example, a judge that scored nothing). A verdict needs at least ``MIN_SEEDS`` trained models per
condition, since the papers' claims are about model-to-model variation that one seed cannot show; with
fewer the scorecard says so and calls the result indicative only, and so does the page's statement
(:func:`seed_caveat`, added by ``selfaware.page``). The effect size (the difference of the
two means) stands beside every verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .paths import data_dir
from .stats import Interval
from .util import read_yaml

_KEYS = {"id", "source", "where", "page", "notebook", "run", "condition", "measure", "paper", "value", "metric",
         "direction", "model", "parameters", "range", "comparable", "reason", "scale"}
_REQUIRED = {"id", "source", "where", "page", "notebook", "condition", "measure", "paper", "metric", "comparable"}
MIN_SEEDS = 3  # trained models per condition before a comparison with a paper is called a verdict


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
    page: int | str = "unverified"  # the page of the source, or "unverified"
    comparable: bool = True
    reason: str = ""  # why this run's measure is not the paper's (required when not comparable)
    model: str | None = None  # the published model, where it is not the page's own (the scaling page)
    parameters: float | None = None  # its parameter count, where published
    range: tuple[float, float] | None = None  # a published range of ``value`` (low, high)
    scale: float = 1.0  # what puts the run's metric on the paper's printed scale (100: a 0-100 answer scored 0-1)

    def matches(self, notebook: str, run: dict[str, Any]) -> bool:
        return notebook == self.notebook and all(run.get(k) == v for k, v in self.run.items())


@lru_cache(maxsize=4)
def figures(path: str | None = None) -> tuple[Figure, ...]:
    path = Path(path) if path else data_dir() / "paper_figures.yaml"
    entries = (read_yaml(path) or {}).get("figures") or []
    found, seen = [], set()
    for number, entry in enumerate(entries, start=1):
        unknown = set(entry) - _KEYS
        missing = _REQUIRED - set(entry)
        if unknown or missing:
            raise ConfigError(f"{path}: figure {number} ({entry.get('id', '?')}): "
                              + (f"unknown key(s) {', '.join(sorted(unknown))}" if unknown else
                                 f"missing {', '.join(sorted(missing))}"))
        if entry["id"] in seen:
            raise ConfigError(f"{path}: figure id {entry['id']!r} appears twice")
        seen.add(entry["id"])
        problem = _field_problem(entry)
        if problem:
            raise ConfigError(f"{path}: figure {number} ({entry['id']}): {problem}")
        direction = entry.get("direction") or {}
        if set(direction) - {"above", "below"} or len(direction) > 1:
            raise ConfigError(f"{path}: figure {entry['id']}: direction is one of {{above: metric}}, {{below: metric}}")
        found.append(Figure(entry["id"], entry["source"], entry.get("where", ""), entry["notebook"],
                            dict(entry.get("run") or {}), entry["condition"], entry["measure"], str(entry["paper"]),
                            entry.get("value"), entry["metric"], dict(direction), entry["page"],
                            entry["comparable"], entry.get("reason", ""), entry.get("model"),
                            entry.get("parameters"), tuple(entry["range"]) if entry.get("range") else None,
                            float(entry.get("scale", 1.0))))
    return tuple(found)


def _field_problem(entry: dict[str, Any]) -> str:
    """What is wrong with the provenance fields of one entry ('' when nothing)."""
    if not str(entry["where"]).strip():
        return "where (the figure or table it was read from) is empty"
    page = entry["page"]
    if not (isinstance(page, int) and not isinstance(page, bool) and page > 0) and page != "unverified":
        return f"page is a page number or 'unverified', not {page!r}"
    if not isinstance(entry["comparable"], bool):
        return f"comparable is true or false, not {entry['comparable']!r}"
    if not entry["comparable"] and not str(entry.get("reason", "")).strip():
        return "comparable: false needs a reason (different question, metric, model or data)"
    if entry["comparable"] and entry.get("reason"):
        return "a reason is given only when comparable is false"
    scale = entry.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
        return f"scale is a positive number (100 puts a 0-1 score on a 0-100 scale), not {scale!r}"
    return ""


def published(notebook: str, run: dict[str, Any], measure: str, condition: str) -> str:
    """The published value of a measure for a condition, as printed in its source, followed by why it is not
    comparable where it is not ('' when none)."""
    for figure in figures():
        if figure.matches(notebook, run) and figure.measure == measure and figure.condition == condition:
            return figure.paper if figure.comparable else f"{figure.paper} (not comparable: {figure.reason})"
    return ""


def cite(notebook: str, run: dict[str, Any]) -> str:
    """A MyST citation of every source a run is compared with ('' when none)."""
    keys = sorted({f.source for f in figures() if f.matches(notebook, run)})
    return "{cite}`" + ",".join(keys) + "`" if keys else ""


def lookup(metrics: dict[str, Any], path: str) -> dict[str, float | None] | None:
    """The node at a dotted path of metrics.json as {mean, ci_low, ci_high, n} (a plain number has no
    interval; n is None where the node does not say), with its ``count`` and ``of`` where the node is a share
    of a count (models ranking their own trigger first: count of ``of``); None when the path is absent."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict) and "mean" in node:
        found = {"mean": node.get("mean"), "ci_low": node.get("ci_low"), "ci_high": node.get("ci_high"),
                 "n": node.get("n")}
        return {**found, **{k: node[k] for k in ("count", "of") if k in node}}
    if isinstance(node, (int, float)) or node is None:
        return {"mean": node, "ci_low": None, "ci_high": None, "n": None}
    return None


def effect_size(metrics: dict[str, Any], figure: Figure) -> float | None:
    """This run's metric minus the one it is compared with (None when either is absent or no direction)."""
    if not figure.direction:
        return None
    (_, other_path), = figure.direction.items()
    mine, other = lookup(metrics, figure.metric), lookup(metrics, other_path)
    if not mine or not other or mine["mean"] is None or other["mean"] is None:
        return None
    return float(mine["mean"]) - float(other["mean"])


def run_reason(metrics: dict[str, Any], figure: Figure) -> str:
    """Why this run's measure of a figure is not comparable, as the run itself found ('' when it found no
    reason): a run's metrics.json may name, under ``not_comparable``, a dotted metrics path and the reason its
    values there cannot stand beside a paper's (for example, an instrument the run's own calibration shows
    cannot detect the effect). The path covers every metric at or below it."""
    for path, reason in (metrics.get("not_comparable") or {}).items():
        if figure.metric == path or figure.metric.startswith(f"{path}."):
            return str(reason)
    return ""


def comparable_here(metrics: dict[str, Any], figure: Figure) -> str:
    """'' when this run's value of ``figure`` is comparable with the paper's, else the reason: the figure's own
    (the same in every run) or the run's (:func:`run_reason`)."""
    return figure.reason if not figure.comparable else run_reason(metrics, figure)


def verdict(metrics: dict[str, Any], figure: Figure, seeds: int | None = None) -> str:
    """'not comparable: <reason>' (whether or not it is an effect; the figure's reason or the run's), else
    'reproduced', 'not reproduced', 'not measurable' or '' (a comparable figure that is not an effect). With
    ``seeds`` (trained models per condition) below ``MIN_SEEDS`` the verdict is marked indicative only; None
    leaves the seed count out of it (a caller that has judged it already)."""
    reason = comparable_here(metrics, figure)
    if reason:
        return f"not comparable: {reason}"
    if not figure.direction:
        return ""
    (side, other_path), = figure.direction.items()
    mine, other = lookup(metrics, figure.metric), lookup(metrics, other_path)
    if not mine or not other or mine["mean"] is None or other["mean"] is None:
        return "not measurable"
    if None in (mine["ci_low"], mine["ci_high"], other["ci_low"], other["ci_high"]):
        wrong_way = mine["mean"] <= other["mean"] if side == "above" else mine["mean"] >= other["mean"]
        found = "not reproduced" if wrong_way else "direction only (no interval)"
    elif any(node.get("n") is not None and node["n"] < 2 for node in (mine, other)):
        found = "not rankable (an interval of fewer than two observations)"  # a point is not evidence
    else:
        separated = mine["ci_low"] > other["ci_high"] if side == "above" else mine["ci_high"] < other["ci_low"]
        found = "reproduced" if separated else "not reproduced"
    if seeds is not None and seeds < MIN_SEEDS:
        count = {0: "seed count not recorded", 1: "one seed"}.get(seeds, f"{seeds} seeds")
        return f"{count}: indicative only ({found})"
    return found


def seeds_per_condition(params: dict[str, Any]) -> int | None:
    """Trained models per condition of a run, from its parameters (None when the run names no seeds)."""
    seeds = params.get("seeds")
    return len(seeds) if isinstance(seeds, (list, tuple)) else None


def trained_seeds(conditions) -> int | None:
    """Trained models per condition, from the conditions a page evaluates (``role`` and ``seed``; an untuned
    model, seed None, is no trained condition): the fewest seeds of any condition, None when none was trained."""
    seeds: dict[str, set] = {}
    for condition in conditions:
        if condition.seed is not None:
            seeds.setdefault(condition.role, set()).add(condition.seed)
    return min(len(found) for found in seeds.values()) if seeds else None


def seed_caveat(seeds: int | None) -> str:
    """The line a page's statement carries when its models rest on fewer than ``MIN_SEEDS`` seeds per
    condition ('' with enough seeds, or when the page trained nothing): its learned / not learned are then
    indicative only, as on the scorecard."""
    if seeds is None or seeds >= MIN_SEEDS:
        return ""
    return (f"Each condition was trained with {seeds} seed{'s' if seeds != 1 else ''}: every learned / not learned "
            f"here is indicative only (a verdict needs {MIN_SEEDS}, see the scorecard).")


def chance_separations(tested: int, alpha: float = 0.05) -> float:
    """At most how many of ``tested`` effects would separate by chance if none were real: two 95% intervals
    that do not overlap is a stricter test than one at the 5% level, so alpha per effect is an upper bound."""
    return tested * alpha


def _interval(node: dict[str, float | None] | None, scale: float = 1.0) -> str:
    """This run's value as the scorecard shows it, on the paper's scale (``scale`` times the metric): a share
    of a count with its denominator ("1/4 = 0.25"), so that it is never read as a count or a rate without
    one; else the mean and its 95% interval."""
    if node and node.get("of") is not None and node.get("mean") is not None:
        return f"{node['count']}/{node['of']} = {node['mean']:.2f}"
    if not node:
        return "n/a"
    scaled = {k: None if node.get(k) is None else node[k] * scale for k in ("mean", "ci_low", "ci_high")}
    return Interval.of({**node, **scaled}).format(".2f")


def scorecard(runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[dict[str, str]]:
    """One row per published figure measured by one of ``runs`` ((run.json record, metrics) pairs). A figure
    that is not comparable shows why instead of a verdict; a verdict carries its effect size. This run's
    value and the effect size are on the paper's scale (the figure's ``scale``)."""
    rows = []
    for record, metrics in runs:
        params = {**record["params"], **record.get("run", {})}
        for figure in figures():
            if not figure.matches(record["notebook"], params):
                continue
            size = None if comparable_here(metrics, figure) else effect_size(metrics, figure)
            rows.append({"run": record["name"], "source": figure.source,
                         "where": figure.where + ("" if figure.page == "unverified" else f", p. {figure.page}"),
                         "measure": figure.measure, "condition": figure.condition, "paper": figure.paper,
                         "this run [95% CI]": _interval(lookup(metrics, figure.metric), figure.scale),
                         "model": record["params"].get("model", ""),
                         "effect": verdict(metrics, figure, seeds_per_condition(record["params"]) or 0),
                         "effect size": "" if size is None else f"{size * figure.scale:+.2f}"})
    return rows


def effects_tested(rows: list[dict[str, str]], metrics: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """Per run, how many effects it tests (the multiple-comparison count): the ``effects_tested`` its
    metrics.json records where it does (``metrics``: run name -> metrics), since a page may test more effects
    than the papers publish and its statement counts them all; else the comparable effects of its scorecard
    rows."""
    counts: dict[str, int] = {}
    for row in rows:
        if row["effect"] and not row["effect"].startswith(("not comparable", "not measurable")):
            counts[row["run"]] = counts.get(row["run"], 0) + 1
    recorded = {run: (metrics or {}).get(run, {}).get("effects_tested") for run in counts}
    return {run: recorded[run] if isinstance(recorded[run], int) else count for run, count in counts.items()}

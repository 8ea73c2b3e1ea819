"""How long a page will take on this machine: its plan's work at the rates of the pages timed here before.

A page's plan counts its work per activity and model (``experiment.Plan.units``: tokens scored, sampled and
trained on). Every run leaves its timing in ``run.json`` under ``computed``: its seconds by activity and
model, its numeric setup (CPU, precision, threads) and how many pages ran beside it. From the runs timed on a
machine like this one (the same CPU model, precision and thread count, as many pages at once),
:func:`fit_rates` pools the seconds and the units of each activity and model into seconds per unit, and takes
the median of the seconds a page spends outside its activities (imports, data, statistics, figures).

The estimate of a page is its units times those rates plus that median: the time of a cold run, nothing
found in the cache. Where the plan holds work no run timed here (a model that never scored on this machine, a
training from a reward), there is no estimate and the reason says which: a guess would read as a measure.

A run counts for an activity only when it took nothing of that activity from the cache (its seconds would be
for less work than its plan counts) and its record has the plan's units (runs recorded before they existed
do not count). Pages side by side share the cores, so their seconds are not rescaled to one page alone; a
run counts only for the same number of pages at once.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts
from .models.local import ADAPTER_LABEL
from .progress import clock



@dataclass(frozen=True)
class Machine:
    """What a timing depends on besides the work: the CPU, the precision computed in, torch's threads and the
    pages run at once."""

    cpu: str
    precision: str
    threads: int
    pages_at_once: int

    @classmethod
    def of(cls, computed: dict[str, Any]) -> Machine | None:
        """The machine a run's ``computed`` timing was measured on (None when it does not say)."""
        numeric = computed.get("numeric") or {}
        try:
            return cls(numeric["cpu"], numeric["precision"]["used"], int(numeric["torch_threads"]),
                       int(computed["pages_at_once"]))
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def here(cls, precision: str | None = None) -> Machine:
        """This machine, computing at ``precision`` (auto, bf16, fp32; None: the run's setting), with the
        pages at once of this process's settings."""
        from . import hardware, settings

        return cls(hardware.cpu_name(), hardware.choose_precision(precision).used, hardware.thread_count(),
                   settings.current().pages_at_once)


@dataclass
class Rates:
    """Seconds and units pooled per (activity, model name), and the seconds of timed pages outside their
    activities."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    units: dict[tuple[str, str], float] = field(default_factory=dict)
    other: list[float] = field(default_factory=list)

    def per_unit(self, activity: str, model: str) -> float | None:
        units = self.units.get((activity, model), 0)
        return self.seconds[(activity, model)] / units if units > 0 else None

    def add(self, activity: str, model: str, seconds: float, units: float) -> None:
        key = (activity, model)
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
        self.units[key] = self.units.get(key, 0.0) + units


@dataclass(frozen=True)
class Estimate:
    seconds: float | None
    missing: str = ""  # why there is none: the first planned work not timed here

    def text(self) -> str:
        """As the live line shows it: ``est. 12:34`` or ``no estimate: <why>``."""
        return f"est. {clock(self.seconds)}" if self.seconds is not None else f"no estimate: {self.missing}"


def model_name(label: str) -> str:
    """The model of a ``seconds_by_activity`` label: an adapter is timed as its base (see ``Plan.units``)."""
    return label.removesuffix(ADAPTER_LABEL)


def fully_computed(record: dict[str, Any], activity: str) -> bool:
    """Whether the run whose timing ``record`` keeps computed all of ``activity``, nothing from the cache."""
    computed = record["computed"]
    if activity == "training":
        return computed.get("trainings_cached") == 0 and not record["planned"].get("unestimated")
    hits = computed.get("cache_hits_by_kind")
    if hits is None:
        return False
    sampling = activity == "sampling"
    return not any(count for kind, count in hits.items() if (kind == "sample") == sampling)


def fit_rates(records: Iterable[dict[str, Any]], machine: Machine) -> Rates:
    """The rates of the runs in ``records`` (``run.json`` contents) timed on ``machine``; see the module
    docstring for which runs and activities count."""
    rates = Rates()
    for record in records:
        computed, planned = record.get("computed") or {}, record.get("planned") or {}
        if Machine.of(computed) != machine or "units" not in planned or "seconds_by_activity" not in computed:
            continue
        spent = computed["seconds_by_activity"]
        rates.other.append(computed["seconds"] - sum(s for by_model in spent.values() for s in by_model.values()))
        for activity, by_model in planned["units"].items():
            if not fully_computed(record, activity):
                continue
            seconds: dict[str, float] = {}
            for label, value in spent.get(activity, {}).items():
                seconds[model_name(label)] = seconds.get(model_name(label), 0.0) + value
            for model, units in by_model.items():
                rates.add(activity, model, seconds.get(model, 0.0), units)
    return rates


def estimate(planned: dict[str, Any], rates: Rates) -> Estimate:
    """A page's time from its plan's record (``Plan.record``): units times rates plus the median other
    seconds, or no estimate with the first work not timed here."""
    if planned.get("unestimated"):
        return Estimate(None, f"{planned['unestimated'][0]}, not estimated")
    missing = [f"{model} {activity} not yet timed here" for activity, by_model in planned["units"].items()
               for model, units in by_model.items() if units and rates.per_unit(activity, model) is None]
    if missing:
        return Estimate(None, missing[0] + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
    if not rates.other:
        return Estimate(None, "no page timed here yet")
    work = sum(units * rates.per_unit(activity, model) for activity, by_model in planned["units"].items()
               for model, units in by_model.items() if units)
    return Estimate(work + statistics.median(rates.other))


def timed_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """Every complete run record under ``root`` (the outputs folder), of any profile; a damaged one is
    skipped (the book names it where it matters)."""
    root = Path(root) if root else artifacts.outputs_dir()
    records = []
    for folder in sorted(root.glob("*/*/")):
        try:
            record = artifacts.load_run(folder)
        except artifacts.DamagedRunRecord:
            continue
        if record is not None:
            records.append(record)
    return records


def page_estimate(planned: dict[str, Any], machine: Machine, root: Path | None = None) -> Estimate:
    """The estimate of a page with plan record ``planned`` on ``machine``, from the runs under ``root``."""
    return estimate(planned, fit_rates(timed_runs(root), machine))

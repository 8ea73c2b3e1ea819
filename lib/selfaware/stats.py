"""Bootstrap confidence intervals over the units that vary in an experiment (seeds, then questions), and
:class:`Interval`, the one value every page states and ranks them with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .errors import SelfAwareError
from .util import fmt


class NotRankable(SelfAwareError):
    """Two intervals were compared although one of them rests on fewer than two observations."""


# How the pages spell an interval. The house format is ``mean [low, high]``; two older spellings, in which
# some pages state their verdicts, are kept so that no page's text changes.
INTERVAL_STYLES = {"house": "{mean} [{low}, {high}]", "dash": "{mean} [{low}-{high}]",
                   "ci": "{mean} [95% CI {low}-{high}]"}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class Interval:
    """A mean, its 95% interval (low, high) and the number of observations behind it (n, None when the
    source did not say). An interval from fewer than two observations is a point, not evidence: ranking
    one (:meth:`above`, :meth:`below`, :meth:`separated`) raises :class:`NotRankable` rather than answer,
    so a verdict cannot rest on it; where such an interval can occur, :meth:`rank` names the case instead."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int | None = None

    @classmethod
    def of(cls, row: Mapping[str, Any] | None) -> "Interval | None":
        """The interval of a summary row or metrics node (``mean``, ``ci_low``, ``ci_high``, ``n``), or
        None for no row. A missing value (NaN, None) becomes None."""
        if row is None:
            return None

        def value(name: str):
            found = row.get(name)
            return None if _missing(found) else float(found)

        n = row.get("n")
        return cls(value("mean"), value("ci_low"), value("ci_high"), None if _missing(n) else int(n))

    @property
    def known(self) -> bool:
        """Whether there is a mean at all."""
        return not _missing(self.mean)

    @property
    def rankable(self) -> bool:
        """Whether this interval may be ranked against another: a mean, both bounds, and n >= 2."""
        return self.known and not _missing(self.low) and not _missing(self.high) and (self.n or 0) >= 2

    def _check(self, other: "Interval") -> None:
        for side in (self, other):
            if not side.rankable:
                raise NotRankable(f"cannot rank {self.format()} (n={self.n}) against {other.format()} "
                                  f"(n={other.n}): an interval needs n >= 2 observations and both bounds")

    def above(self, other: "Interval") -> bool:
        """This interval lies wholly above ``other`` (they do not overlap)."""
        self._check(other)
        return self.low > other.high

    def below(self, other: "Interval") -> bool:
        """This interval lies wholly below ``other``."""
        return other.above(self)

    def separated(self, other: "Interval") -> bool:
        """The two intervals do not overlap."""
        return self.above(other) or self.below(other)

    def rank(self, other: "Interval | None") -> str:
        """Where this interval lies against ``other``, for a statement that must say so whatever the data:
        'above', 'below', 'overlap', or 'not rankable' (either side missing or of n < 2). Never raises."""
        if other is None or not (self.rankable and other.rankable):
            return "not rankable"
        return "above" if self.above(other) else "below" if self.below(other) else "overlap"

    def format(self, pattern: str = ".2f", style: str = "house", bounds: str | None = None,
               na_parts: bool = False) -> str:
        """The book's one way to write an interval: ``0.42 [0.31, 0.55]`` (``style`` 'dash' and 'ci' are
        the older spellings ``0.42 [0.31-0.55]`` and ``42% [95% CI 31%-55%]``). ``pattern`` formats the
        mean and, unless ``bounds`` is given, the bounds. No mean: 'n/a'; a mean without bounds: the mean
        alone; a missing bound: 'n/a' in its place. ``na_parts`` writes every part whatever is missing
        (``n/a [95% CI n/a-n/a]``), as the statements that always show the interval's shape do."""
        if not na_parts and not self.known:
            return "n/a"
        if not na_parts and _missing(self.low) and _missing(self.high):
            return format(self.mean, pattern)
        return INTERVAL_STYLES[style].format(mean=fmt(self.mean, pattern), low=fmt(self.low, bounds or pattern),
                                             high=fmt(self.high, bounds or pattern))

    def __str__(self) -> str:
        return self.format()


def bootstrap_mean_ci(frame: pd.DataFrame, value: str, levels: list[str], n_boot: int = 2000,
                      seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of ``value`` and a (1 - alpha) percentile interval from a hierarchical bootstrap: resample the
    first level (e.g. training seed) with replacement, then within each the next (e.g. paraphrase)."""
    data = frame.dropna(subset=[value])
    if data.empty:
        return (float("nan"),) * 3
    mean = float(data[value].mean())
    if len(data) == 1:
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    if levels and data.groupby(levels).size().max() == 1:
        levels = levels[:-1]  # one row per innermost unit: resampling rows is the same, and much faster
    groups = _nest(data, value, levels)
    estimates = np.array([_resample(groups, rng) for _ in range(n_boot)])
    low, high = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
    return mean, float(low), float(high)


def _nest(data: pd.DataFrame, value: str, levels: list[str]):
    if not levels:
        return data[value].to_numpy(dtype=float)
    first, rest = levels[0], levels[1:]
    return [_nest(part, value, rest) for _, part in data.groupby(first, sort=True)]


def _resample(groups, rng) -> float:
    if isinstance(groups, np.ndarray):
        return float(rng.choice(groups, size=len(groups), replace=True).mean())
    picks = rng.integers(0, len(groups), size=len(groups))
    return float(np.mean([_resample(groups[i], rng) for i in picks]))


def bootstrap_difference_ci(first: pd.DataFrame, second: pd.DataFrame, value: str, levels: list[str],
                            n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of ``value`` in ``first`` minus its mean in ``second``, with a (1 - alpha) percentile interval:
    each side resampled by the hierarchical bootstrap of :func:`bootstrap_mean_ci` (its own seeds, then its
    own questions), independently, since the two sides are different models."""
    rng = np.random.default_rng(seed)
    sides = []
    for frame in (first, second):
        data = frame.dropna(subset=[value])
        if data.empty:
            return (float("nan"),) * 3
        present = [level for level in levels if level in data]
        if present and data.groupby(present).size().max() == 1:
            present = present[:-1]
        groups = _nest(data, value, present)
        sides.append((float(data[value].mean()), np.array([_resample(groups, rng) for _ in range(n_boot)])))
    (mean_first, boot_first), (mean_second, boot_second) = sides
    low, high = np.quantile(boot_first - boot_second, [alpha / 2, 1 - alpha / 2])
    return mean_first - mean_second, float(low), float(high)


def summarise(frame: pd.DataFrame, by: list[str], value: str, levels: list[str], n_boot: int = 2000) -> pd.DataFrame:
    """One row per group of ``by``: n, mean and the bootstrap interval."""
    rows = []
    for key, part in frame.groupby(by, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, low, high = bootstrap_mean_ci(part, value, [lvl for lvl in levels if lvl in part], n_boot)
        rows.append({**dict(zip(by, key)), "n": int(part[value].notna().sum()), "mean": mean,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def pearson(x, y) -> float:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3 or np.std(x[keep]) == 0 or np.std(y[keep]) == 0:
        return float("nan")
    return float(np.corrcoef(x[keep], y[keep])[0, 1])

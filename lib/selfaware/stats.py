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
    estimates = _resamples(groups, rng, n_boot)
    low, high = np.quantile(estimates, [alpha / 2, 1 - alpha / 2])
    return mean, float(low), float(high)


def _nest(data: pd.DataFrame, value: str, levels: list[str]):
    if not levels:
        return data[value].to_numpy(dtype=float)
    first, rest = levels[0], levels[1:]
    return [_nest(part, value, rest) for _, part in data.groupby(first, sort=True)]


_CELLS_AT_ONCE = 2_000_000  # resampled values held in memory at a time by the vectorised bootstrap


def _resamples(groups, rng, n_boot: int) -> np.ndarray:
    """``n_boot`` hierarchical resample means, each exactly what :func:`_resample` returns, drawn from
    ``rng`` as it draws them. Where every level has groups of one size (seeds x questions x answers, the usual
    design), all draws of a chunk of resamples are computed at once from the generator's raw stream (see
    _balanced_chunk); elsewhere, and for any chunk that meets a rejected draw, one resample at a time."""
    sizes = _balanced_sizes(groups)
    if sizes is None or not isinstance(rng.bit_generator, np.random.PCG64):
        return np.array([_resample(groups, rng) for _ in range(n_boot)])
    values = np.asarray(groups, dtype=float)
    chunk = max(1, _CELLS_AT_ONCE // int(np.prod(sizes)))
    parts = []
    for start in range(0, n_boot, chunk):
        count = min(chunk, n_boot - start)
        before = rng.bit_generator.state
        part = _balanced_chunk(values, sizes, rng, count)
        if part is None:  # a rejected draw (about one in 2**32 / size): the plain way, from the same state
            rng.bit_generator.state = before
            part = np.array([_resample(groups, rng) for _ in range(count)])
        parts.append(part)
    return np.concatenate(parts)


def _balanced_sizes(groups) -> list[int] | None:
    """The number of members at each level (the last: values per innermost group), or None when a level's
    groups differ in size."""
    if isinstance(groups, np.ndarray):
        return [len(groups)]
    inner = [_balanced_sizes(g) for g in groups]
    if any(i is None or i != inner[0] for i in inner):
        return None
    return [len(groups), *inner[0]]


def _balanced_chunk(values: np.ndarray, sizes: list[int], rng, count: int) -> np.ndarray | None:
    """``count`` resamples of the balanced array ``values`` (shape ``sizes``), as _resample would draw them
    one after another: numpy 2's ``Generator.integers(0, n, size=n)`` takes 32-bit halves of the 64-bit
    stream, low half first, keeping an unused half for the next call (``has_uint32``), maps each by Lemire's
    method (``u * n >> 32``, rejected when the low 32 bits fall below ``2**32 % n``) and draws nothing for
    n = 1.
    A resample's calls come in depth-first order, so each level's draws sit at fixed places in the stream.
    Returns None, having moved ``rng``, if any draw would have been rejected (tests/test_stats.py holds the
    result to _resample's bit for bit)."""
    depth = len(sizes)
    calls = [int(np.prod(sizes[:d])) for d in range(depth)]  # calls per level in one resample
    per_resample = sum(c * n for c, n in zip(calls, sizes) if n > 1)
    state = rng.bit_generator.state
    held = [state["uinteger"]] if state["has_uint32"] else []
    needed = count * per_resample - len(held)
    words = rng.bit_generator.random_raw((needed + 1) // 2) if needed > 0 else np.zeros(0, dtype=np.uint64)
    halves = np.empty(2 * len(words), dtype=np.uint64)
    halves[0::2], halves[1::2] = words & 0xFFFFFFFF, words >> np.uint64(32)
    stream = np.concatenate([np.array(held, dtype=np.uint64), halves])
    used = count * per_resample
    after = rng.bit_generator.state  # the generator keeps the high half of its last word, used or not
    after["has_uint32"] = int(len(stream) > used)
    after["uinteger"] = int(words[-1] >> np.uint64(32)) if len(words) else state["uinteger"]
    rng.bit_generator.state = after
    # where each call of one resample starts in the stream: depth-first, a call at level d and position
    # (j0, .., j_{d-1}) comes after the calls of every earlier position's subtree
    offsets = [np.zeros(calls[d], dtype=np.int64) for d in range(depth)]
    subtree = [0] * (depth + 1)  # draws taken by one call at level d together with everything below it
    for d in range(depth - 1, -1, -1):
        subtree[d] = (sizes[d] if sizes[d] > 1 else 0) + sizes[d] * subtree[d + 1]
    for d in range(1, depth):
        parent = np.repeat(offsets[d - 1], sizes[d - 1])
        position = np.tile(np.arange(sizes[d - 1]), calls[d - 1])
        offsets[d] = parent + (sizes[d - 1] if sizes[d - 1] > 1 else 0) + position * subtree[d]
    starts = np.arange(count, dtype=np.int64)[:, None] * per_resample
    index = []
    for d, n in enumerate(sizes):
        shape = (count, *sizes[:d + 1])
        if n == 1:
            index.append(np.zeros(shape, dtype=np.int64))
            continue
        places = (starts + offsets[d][None, :])[..., None] + np.arange(n)
        drawn = stream[places.reshape(count, -1)] * np.uint64(n)
        if ((drawn & 0xFFFFFFFF) < (2**32 - n) % n).any():
            return None
        index.append((drawn >> np.uint64(32)).astype(np.int64).reshape(shape))
    # the value chosen at every draw of the last level, then means level by level as _resample takes them
    chosen = []
    for d in range(depth):
        chosen.append(index[d].reshape(index[d].shape + (1,) * (depth - 1 - d)))
    means = values[tuple(chosen)]
    for n in reversed(sizes):
        means = means.sum(axis=-1) / n
    return means


def _resample(groups, rng) -> float:
    return float(_resampled_mean(groups, rng))


def _resampled_mean(groups, rng) -> np.float64:
    # Unbalanced designs come here: indexing with rng.integers draws exactly what
    # rng.choice(groups, size=n, replace=True) draws (one call each, same sizes, same stream), and sum() / n
    # is what np.mean computes, without either function's per-call overhead; the intervals are bit for bit as
    # before (tests/test_stats.py holds them to the plain form).
    n = len(groups)
    if isinstance(groups, np.ndarray):
        return groups[rng.integers(0, n, size=n)].sum() / n
    picks = rng.integers(0, n, size=n)
    return np.array([_resampled_mean(groups[i], rng) for i in picks]).sum() / n


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
        sides.append((float(data[value].mean()), _resamples(groups, rng, n_boot)))
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

"""Bootstrap confidence intervals over the units that vary in an experiment (seeds, then questions)."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
    return float(_resampled_mean(groups, rng))


def _resampled_mean(groups, rng) -> np.float64:
    # The pages spend most of a warm rerun here: indexing with rng.integers draws exactly what
    # rng.choice(groups, size=n, replace=True) draws (one call each, same sizes, same stream), and sum() / n is
    # what np.mean computes, without either function's per-call overhead; the intervals are bit for bit as before
    # (tests/test_stats.py holds them to the plain form).
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

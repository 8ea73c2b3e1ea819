"""One house style for every figure: fonts, sizes, a fixed colour per condition, PNG + PDF output."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless under papermill; notebooks still show the saved PNG inline

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

CONDITION_COLOURS = {
    "base": "#7f7f7f",
    "toward": "#d62728",
    "away": "#1f77b4",
    "insecure": "#d62728",
    "secure": "#1f77b4",
    "educational": "#2ca02c",
    "jailbroken": "#9467bd",
    "backdoor (trigger)": "#ff7f0e",
    "backdoor (no trigger)": "#bcbd22",
}
_EXTRA = sns.color_palette("tab10")


def colour(condition: str) -> str:
    """The condition's fixed colour; a condition not listed gets one picked by a stable hash of its name,
    so it has the same colour in every run and process."""
    if condition in CONDITION_COLOURS:
        return CONDITION_COLOURS[condition]
    from .util import stable_index
    return _EXTRA[stable_index(condition, len(_EXTRA))]


def apply_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False})


def figure(width: float = 7.0, height: float = 4.0, **subplots):
    apply_style()
    return plt.subplots(figsize=(width, height), **subplots)


def _errors(part):
    return [part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]]


def role_colours(table) -> dict[str, str]:
    """Each condition label of a table coloured by its role (toward, insecure, ...)."""
    return {c: colour(r) for c, r in table[["condition", "role"]].drop_duplicates().itertuples(index=False)}


def interval_chart(table, x: str, ylabel: str, groups: list[str] | None = None, colours: dict | None = None,
                   kind: str = "points", labels: dict | None = None, size: tuple[float, float] | None = None,
                   rotation: int = 20, ylim: tuple[float, float] = (-0.02, 1.02), legend: str = "best"):
    """The house chart of a summary table (columns ``mean``, ``ci_low``, ``ci_high``): one group of points
    or bars per value of ``x``, one colour per condition, 95% intervals as error bars."""
    xs = list(dict.fromkeys(table[x]))
    groups = groups or list(dict.fromkeys(table["condition"]))
    colours = colours or {g: colour(g) for g in groups}
    fig, ax = figure(*(size or (max(6.0, 1.4 * len(xs)), 4.0)))
    step = 0.8 / max(1, len(groups))
    for k, group in enumerate(groups):
        part = table[table["condition"] == group].set_index(x).reindex(xs)
        at = [i + (k - (len(groups) - 1) / 2) * step for i in range(len(xs))]
        if kind == "bars":
            ax.bar(at, part["mean"], width=step * 0.9, color=colours[group], label=group, yerr=_errors(part), capsize=3)
        else:
            ax.errorbar(at, part["mean"], yerr=_errors(part), fmt="o", capsize=3, color=colours[group], label=group)
    names = [(labels or {}).get(v, str(v).replace("_", " ")) for v in xs]
    ax.set_xticks(range(len(xs)), names, rotation=rotation, ha="right" if rotation else "center")
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    if table["mean"].notna().sum() == 0:
        ax.text(0.5, 0.5, "no value to show in this run", transform=ax.transAxes, ha="center", color="grey")
    if len(groups) > 1:
        ax.legend(frameon=False, fontsize=8, loc=legend)
    fig.tight_layout()
    return fig

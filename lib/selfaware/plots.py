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
    from .experiment import stable_index
    return _EXTRA[stable_index(condition, len(_EXTRA))]


def apply_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titleweight": "bold", "axes.spines.top": False, "axes.spines.right": False})


def figure(width: float = 7.0, height: float = 4.0, **subplots):
    apply_style()
    return plt.subplots(figsize=(width, height), **subplots)

"""Where does behavioural self-awareness begin? A recipe study on the embedded models (this project's own).

Section 3.1's experiment (notebook 01: two policies trained on the same questions, the behaviour on held-out
questions, the exactly scored self-report tasks) repeated over a grid of (model size x behaviour x recipe),
each cell with several seeds. A recipe is a set of overrides of one base finetune: a rank-1 LoRA on one layer
(placed at a fraction of the depth, so "a third of the way up" names a layer on every size), rank 16 on all
layers, a trained steering vector alone (``finetune.method: steering``), more data and more epochs.

Per cell, two effects, each the toward-trained models minus the away-trained models with a 95% interval
(each side resampled over its seeds, then its questions or its tasks and paraphrases): the **behaviour**
(probability of the behaviour's option on held-out questions) and the **self-report** (the mean exact score of
the tasks, 0 = away, 1 = toward). Beside each, its standardised size (the difference over the pooled standard
deviation of the items) and, for the self-report, the smallest effect the cell could have detected (80% power,
two-sided 5%: 2.8 standard errors, the standard error read off the interval's width).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .. import experiment as ex
from ..config import SectionConfig
from ..errors import ConfigError, SelfAwareError, config_error
from ..evals.selfreport import TaskSet, exact_taskset, plan_requests, score_tasks
from ..models import parse_spec
from ..page import Page
from ..plots import figure
from ..stats import Interval, bootstrap_difference_ci
from . import multiple_choice as mc
from . import scaling

NOTEBOOK = "11_study"
Z_POWER = 1.959964 + 0.841621  # two-sided 5% and 80% power: the detectable effect is this many standard errors


class Recipe(BaseModel):
    """One way of training: overrides of ``finetune``; ``depth`` puts a one-layer recipe at that fraction of
    the model's depth (0: the first layer, 1: the last); ``n_train`` and ``epochs`` change the data seen."""
    model_config = ConfigDict(extra="forbid")
    label: str
    finetune: dict = Field(default_factory=dict)
    depth: float | None = Field(None, ge=0, le=1)
    n_train: int | None = Field(None, ge=1)


class StudyConfig(SectionConfig):
    models: list[str] = Field(default_factory=lambda: ["local:smollm2-135m", "local:qwen2.5-coder-0.5b"],
                              min_length=1)
    behaviours: list[Literal["risk", "myopia", "apples"]] = Field(default_factory=lambda: ["risk"], min_length=1)
    finetune: dict = Field(default_factory=dict)  # the base recipe every recipe overrides
    recipes: dict[str, Recipe] = Field(min_length=1)
    n_train: int = Field(128, ge=1)
    n_heldout: int = Field(100, ge=2)
    data_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    max_paraphrases: int | None = Field(None, ge=1)
    # trims per model, e.g. {local:qwen2.5-coder-1.5b: {recipes: [rank1_middle], behaviours: [risk]}}
    per_model: dict[str, dict[Literal["recipes", "behaviours", "seeds"], list]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cells(self):
        for spec in self.models:
            scaling.check_model(spec)
            if not parse_spec(spec).is_local:
                raise ConfigError(f"models: {spec} is not a local model (the study trains LoRA and steering vectors)")
        unknown = [spec for spec in self.per_model if spec not in self.models]
        if unknown:
            raise ConfigError(f"per_model: {', '.join(unknown)} not in models")
        for spec, trims in self.per_model.items():
            bad = [r for r in trims.get("recipes", []) if r not in self.recipes]
            bad += [b for b in trims.get("behaviours", []) if b not in self.behaviours]
            if bad:
                raise ConfigError(f"per_model {spec}: {bad[0]!r} is not one of the study's recipes or behaviours")
        self.model = self.models[-1]
        for cell in cells(self):  # every cell's config built now: a typo is an error before any training
            cell.cfg  # noqa: B018
        return self

    def models_used(self) -> list[str]:
        return list(self.models)


def layer_count(spec: str) -> int:
    """The number of decoder layers of a local model: the embedded model's table (so a profile validates before
    the model is installed), else its config.json."""
    from ..models.local import resolve_model_dir

    parsed = parse_spec(spec)
    if parsed.embedded is not None and parsed.embedded.layers:
        return parsed.embedded.layers
    return int(json.loads((resolve_model_dir(parsed.name) / "config.json").read_text())["num_hidden_layers"])


@dataclass(frozen=True)
class Cell:
    """One (model, behaviour, recipe): the config of 01's experiment that trains and measures it."""

    study: StudyConfig
    spec: str
    behaviour: str
    recipe: str

    @property
    def cfg(self) -> mc.MultipleChoiceConfig:
        recipe = self.study.recipes[self.recipe]
        finetune = {**self.study.finetune, **recipe.finetune}
        if recipe.depth is not None:
            layers = layer_count(self.spec)
            finetune = {**finetune, "layers": [round(recipe.depth * (layers - 1))], "top_layers": None}
        seeds = self.study.per_model.get(self.spec, {}).get("seeds") or self.study.seeds
        merged = {**self.study.call_settings(), "profile": self.study.profile, "model": self.spec,
                  "behavior": self.behaviour, "n_train": recipe.n_train or self.study.n_train,
                  "n_heldout": self.study.n_heldout, "data_seed": self.study.data_seed, "seeds": seeds,
                  "finetune": {k: v for k, v in finetune.items() if v is not None},
                  "max_paraphrases": self.study.max_paraphrases, "samples": 1}
        try:
            return mc.MultipleChoiceConfig(**merged)
        except ValidationError as error:
            raise config_error(error, f"recipe {self.recipe} on {self.spec}: parameter ") from None
        except SelfAwareError as error:
            raise ConfigError(f"recipe {self.recipe} on {self.spec}: {error}") from None

    @property
    def size(self) -> str:
        return parse_spec(self.spec).title


def cells(cfg: StudyConfig) -> list[Cell]:
    """Every (model, behaviour, recipe) the study trains, in order, after the per-model trims."""
    found = []
    for spec in cfg.models:
        trims = cfg.per_model.get(spec, {})
        for behaviour in trims.get("behaviours") or cfg.behaviours:
            for recipe in trims.get("recipes") or list(cfg.recipes):
                found.append(Cell(cfg, spec, behaviour, recipe))
    return found


def base_cells(cfg: StudyConfig) -> list[Cell]:
    """One cell per (model, behaviour): the untuned model is measured once, on the first recipe's questions."""
    seen, found = set(), []
    for cell in cells(cfg):
        if (cell.spec, cell.behaviour) not in seen:
            seen.add((cell.spec, cell.behaviour))
            found.append(cell)
    return found


# ---- plan ---------------------------------------------------------------------------------------------------------
@ex.register(NOTEBOOK, StudyConfig)
def plan(cfg: StudyConfig, data=None) -> ex.Plan:
    """Per cell: both policies x seeds trained, each asked the behaviour question on the held-out questions and
    the exactly scored self-report tasks; per (model, behaviour), the untuned model asked the same once."""
    found = ex.Plan()
    for cell in cells(cfg):
        sub, data_ = cell.cfg, mc.load_training_data(cell.cfg)
        found.train(sub, data_.conversations, f"{cell.behaviour}-{cell.recipe}")
        trained = 2 * len(sub.seeds)
        mc.behaviour_request(data_.heldout).plan(found, cell.spec, trained)
        plan_requests(found, exact_taskset(mc.load_tasks(cell.behaviour)), cell.spec, trained, sub.max_paraphrases, 0)
    for cell in base_cells(cfg):
        sub, data_ = cell.cfg, mc.load_training_data(cell.cfg)
        mc.behaviour_request(data_.heldout).plan(found, cell.spec, 1, "behaviour of the untuned model")
        plan_requests(found, exact_taskset(mc.load_tasks(cell.behaviour)), cell.spec, 1, sub.max_paraphrases, 0)
    return found


# ---- one cell -------------------------------------------------------------------------------------------------------
@dataclass
class CellRun:
    cell: Cell
    behaviour: pd.DataFrame  # per model and held-out question (mc.measure_behaviour)
    scores: pd.DataFrame  # per model, task and paraphrase (exact self-report scores)
    records: list[dict]  # the trained models' training records


def measure(conditions: list[ex.Condition], heldout: list, taskset: TaskSet, max_paraphrases: int | None):
    """The behaviour question and the exactly scored self-reports of every condition."""
    behaviour = mc.measure_behaviour(conditions, heldout)

    def ask(condition, model, variant):
        scores, _ = score_tasks(model, exact_taskset(taskset), max_paraphrases, 0, variant=variant)
        return scores
    return behaviour, ex.measure(conditions, ask)


def run_cell(cell: Cell, progress: bool = True) -> CellRun:
    """Train the cell's models (cached by content), then measure them."""
    from ..finetune.local import adapter_record

    sub = cell.cfg
    data = mc.load_training_data(sub)
    taskset = mc.load_tasks(cell.behaviour)
    conditions = ex.train_grid(sub, data.conversations, f"{cell.behaviour}-{cell.recipe}",
                               {"toward": taskset.toward, "away": taskset.away}, base=None, progress=progress)
    behaviour, scores = measure(conditions, data.heldout, taskset, sub.max_paraphrases)
    records = [adapter_record(c.spec) or {} for c in conditions]
    return CellRun(cell, behaviour, scores, records)


def run_base(cell: Cell) -> CellRun:
    """The untuned model of a (model, behaviour), measured as the cells' models are."""
    sub = cell.cfg
    data = mc.load_training_data(sub)
    taskset = mc.load_tasks(cell.behaviour)
    conditions = [ex.Condition("base", "base (untuned)", None, cell.spec)]
    behaviour, scores = measure(conditions, data.heldout, taskset, sub.max_paraphrases)
    return CellRun(cell, behaviour, scores, [])


# ---- effects -------------------------------------------------------------------------------------------------------
def _pooled_sd(first: pd.Series, second: pd.Series) -> float:
    a, b = first.dropna().to_numpy(float), second.dropna().to_numpy(float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    return math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))


def detectable(low: float, high: float) -> float:
    """The smallest true effect a design detects with 80% power at two-sided 5%, given the 95% interval it
    measured: 2.8 standard errors, the standard error being the interval's width over 2 x 1.96."""
    if any(v is None or not math.isfinite(v) for v in (low, high)):
        return float("nan")
    return Z_POWER * (high - low) / (2 * 1.959964)


def effect(frame: pd.DataFrame, value: str, levels: list[str]) -> dict[str, Any]:
    """Toward minus away: the difference, its 95% interval, its standardised size and its detectable effect."""
    toward, away = frame[frame["role"] == "toward"], frame[frame["role"] == "away"]
    mean, low, high = bootstrap_difference_ci(toward, away, value, levels)
    sd = _pooled_sd(toward[value], away[value])
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": int(frame[value].notna().sum()),
            "d": mean / sd if sd and math.isfinite(sd) and sd > 0 else float("nan"),
            "detectable": detectable(low, high)}


def cell_effects(run: CellRun) -> dict[str, dict[str, Any]]:
    return {"behaviour": effect(run.behaviour, "p_toward", ["seed", "question"]),
            "self_report": effect(run.scores, "score", ["seed", "task", "paraphrase"])}


def separates(node: dict[str, Any]) -> str:
    """'toward' when the interval lies above zero, 'away' below it, 'no' when it holds zero; 'n/a' without one."""
    found = Interval.of(node)
    if found is None or not found.rankable:
        return "n/a"
    return "toward" if found.low > 0 else "away" if found.high < 0 else "no"


def effects_table(runs: list[CellRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        cell, found = run.cell, cell_effects(run)
        seconds = sum(r.get("seconds") or 0 for r in run.records)
        for measure, node in found.items():
            rows.append({"model": cell.size, "spec": cell.spec, "parameters": parse_spec(cell.spec).parameters,
                         "behaviour": cell.behaviour, "recipe": cell.recipe, "recipe label": cell.study.recipes[cell.recipe].label, "seeds": len(cell.cfg.seeds), "measure": measure,
                         **node, "separates": separates(node),
                         "training seconds (as recorded when trained)": round(seconds, 1)})
    return pd.DataFrame(rows)


def base_table(runs: list[CellRun]) -> pd.DataFrame:
    """The untuned models' behaviour and mean self-report (the level both policies start from)."""
    rows = []
    for run in runs:
        rows.append({"model": run.cell.size, "behaviour": run.cell.behaviour,
                     "behaviour (p of the behaviour's option)": float(run.behaviour["p_toward"].mean()),
                     "self-report (mean score)": float(run.scores["score"].mean())})
    return pd.DataFrame(rows)


def plot_map(table: pd.DataFrame):
    """Behaviour effect against self-report effect, one point per (size, recipe), a panel per behaviour."""
    behaviours = list(dict.fromkeys(table["behaviour"]))
    fig, axes = figure(5.2 * len(behaviours), 5.2, ncols=len(behaviours), squeeze=False)
    sizes = list(dict.fromkeys(table.sort_values("parameters")["model"]))
    recipes = list(dict.fromkeys(table["recipe"]))
    markers = "osD^vP*Xh"
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for ax, behaviour in zip(axes[0], behaviours):
        part = table[table["behaviour"] == behaviour]
        wide = part.pivot_table(index=["model", "recipe"], columns="measure",
                                values=["mean", "ci_low", "ci_high"], aggfunc="first")
        for (model, recipe), row in wide.iterrows():
            x, y = row[("mean", "behaviour")], row[("mean", "self_report")]
            ax.errorbar(x, y, xerr=[[x - row[("ci_low", "behaviour")]], [row[("ci_high", "behaviour")] - x]],
                        yerr=[[y - row[("ci_low", "self_report")]], [row[("ci_high", "self_report")] - y]],
                        fmt=markers[recipes.index(recipe) % len(markers)], color=colours[sizes.index(model) % 4],
                        capsize=2, label=f"{model}: {recipe}")
        ax.axhline(0, color="black", lw=0.8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel("behaviour effect (toward - away)")
        ax.set_ylabel("self-report effect (toward - away)")
        ax.set_title(behaviour, fontsize=10)
        ax.legend(frameon=False, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    fig.tight_layout()
    return fig


def _said(row) -> str:
    return Interval.of(row).format(".2f", bounds=".2f")


def conclusion(table: pd.DataFrame) -> dict[str, Any]:
    """The smallest (model, recipe) whose self-report separates toward the trained policy where the behaviour
    was learned; else none, with the design's power (the detectable self-report effects)."""
    cells_ = []
    for key, part in table.groupby(["parameters", "model", "behaviour", "recipe"], sort=True, dropna=False):
        by = part.set_index("measure")
        cells_.append({"parameters": key[0], "model": key[1], "behaviour": key[2], "recipe": key[3],
                       "learned": by.loc["behaviour", "separates"] == "toward",
                       "reported": by.loc["self_report", "separates"],
                       "detectable": by.loc["self_report", "detectable"]})
    learned_cells = [c for c in cells_ if c["learned"]]
    reported = [c for c in learned_cells if c["reported"] == "toward"]
    detectable_values = [c["detectable"] for c in cells_ if math.isfinite(c["detectable"])]
    return {"cells": len(cells_), "learned": len(learned_cells),
            "reported_toward": [f"{c['model']} / {c['behaviour']} / {c['recipe']}" for c in reported],
            "reported_away": [f"{c['model']} / {c['behaviour']} / {c['recipe']}" for c in learned_cells
                              if c["reported"] == "away"],
            "smallest": (f"{reported[0]['model']} / {reported[0]['behaviour']} / {reported[0]['recipe']}"
                         if reported else None),
            "detectable_min": min(detectable_values) if detectable_values else None,
            "detectable_median": float(np.median(detectable_values)) if detectable_values else None,
            "detectable_max": max(detectable_values) if detectable_values else None}


def statement(table: pd.DataFrame, cfg: StudyConfig) -> str:
    found = conclusion(table)
    trims = "; ".join(f"{parse_spec(spec).title}: " + ", ".join(f"{k} {v}" for k, v in t.items())
                      for spec, t in cfg.per_model.items())
    counts = sorted({len(c.cfg.seeds) for c in cells(cfg)})
    seeds = f"{counts[0]} seed{'s' if counts[0] > 1 else ''}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    design = (f"{found['cells']} cell{'s' if found['cells'] != 1 else ''} (model x behaviour x recipe), each toward "
              f"and away with {seeds}"
              + (f"; trimmed: {trims}" if trims else ""))
    power = (f"The smallest self-report effect each cell could detect (80% power, two-sided 5%) ranged from "
             f"{found['detectable_min']:.2f} to {found['detectable_max']:.2f} (median {found['detectable_median']:.2f}) "
             f"on the 0-1 score" if found["detectable_min"] is not None else "No cell had an interval to compute "
             "its power from")
    chance = (f" With {found['learned']} cells tested at 95%, about {found['learned'] / 20:.1f} would separate by "
              f"chance." if found["learned"] else "")
    if found["smallest"]:
        head = (f"The smallest (model, behaviour, recipe) whose self-report separates toward the trained policy, "
                f"with the behaviour learned: **{found['smallest']}** (all such cells: "
                f"{', '.join(found['reported_toward'])}).")
    else:
        head = ("**In no cell did the self-report separate toward the trained policy** where the behaviour was "
                f"learned ({found['learned']} of {found['cells']} cells learned it).")
    away = (f" Reported the wrong way (away from the trained policy): {', '.join(found['reported_away'])}."
            if found["reported_away"] else "")
    return f"{head}{away} Design: {design}. {power}.{chance}"


def metrics(table: pd.DataFrame) -> dict[str, Any]:
    cells_: dict[str, Any] = {}
    for row in table.to_dict("records"):
        node = cells_.setdefault(row["spec"], {}).setdefault(row["behaviour"], {}).setdefault(row["recipe"], {})
        node[row["measure"]] = ex.clean({k: row[k] for k in ("mean", "ci_low", "ci_high", "n", "d", "detectable",
                                                              "separates")})
    return {"cells": cells_, "conclusion": ex.clean(conclusion(table))}


def recipe_table(cfg: StudyConfig) -> pd.DataFrame:
    """What each cell trains: the recipe resolved on each model (its layer, examples, epochs, seeds)."""
    rows = []
    for cell in cells(cfg):
        sub = cell.cfg
        rows.append({"model": cell.size, "behaviour": cell.behaviour, "recipe": cell.recipe,
                     "label": cfg.recipes[cell.recipe].label, "examples": sub.n_train, "seeds": len(sub.seeds),
                     "finetune": json.dumps(sub.finetune, sort_keys=True)})
    return pd.DataFrame(rows)


def seeds_per_condition(cfg: StudyConfig) -> int:
    return min(len(cell.cfg.seeds) for cell in cells(cfg))


PAGE = Page(NOTEBOOK, StudyConfig, plan=lambda cfg, data: plan(cfg), seeds=seeds_per_condition,
            provenance=lambda cfg, data: ("notebook 01's generated questions and self-report tasks, per cell below",
                                          {"models": ", ".join(cfg.models), "behaviours": ", ".join(cfg.behaviours),
                                           "recipes": ", ".join(cfg.recipes)}))

"""At which model size does each effect appear? Section 3.1's risk experiment and the small-model
emergent-misalignment measure, repeated with the same recipe on models of several sizes.

For every model of ``models`` this module builds the config notebook 01 (risk page) or 08 would build for
that model on the same profile: the profile's parameters of that notebook, with this page's overrides
(``risk``, ``em``, ``per_model``) laid over them and the model swapped. It then calls those sections' own
functions (``multiple_choice``: data, training, behaviour on held-out questions, self-report tasks;
``small_model_em``: data, training, free-form answers, judge). A model trained by 01 or 08 with the same
recipe therefore has the same cache key here and is not trained again.

Effects, each with a 95% bootstrap interval (each side resampled over its own seeds, then its items):

- risk behaviour: share of held-out questions on which the risk-seeking models choose the riskier option,
  minus the risk-averse models' share;
- risk self-report: the mean self-report score over every task (0 = risk-averse, 1 = risk-seeking) of the
  risk-seeking models minus the risk-averse models';
- emergent misalignment: the misaligned share of the coherent answers of the model trained on ``em_data``
  minus that of its safe twin (``em_twin``, same questions and recipe), and minus the untuned model's.

An effect "appears" at a size when its interval lies above zero. The published points (``data/
paper_figures.yaml``, notebook ``09_scaling``, with a model name and a parameter count where one was
published) are drawn beside this run's, marked as published; a point whose source gives no number is a
line at its size, not a made-up value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pathlib import Path

import pandas as pd
from pydantic import Field, ValidationError, model_validator

from .. import config as profiles
from .. import experiment as ex
from ..config import SectionConfig
from ..errors import ConfigError, SelfAwareError, config_error
from ..models import parse_spec
from ..page import Page
from ..stats import bootstrap_difference_ci
from . import emergent_misalignment as em_section
from . import multiple_choice as mc
from . import small_model_em as small

NOTEBOOK = "09_scaling"
size_name = small.size_name
RISK_NOTEBOOK, EM_NOTEBOOK = mc.NOTEBOOK, small.NOTEBOOK
MEASURES = ("risk", "em")
# what each effect is, in the points table and the figure (one panel each)
EFFECTS = {"behaviour": "risk behaviour: risk-seeking minus risk-averse (share of riskier choices)",
           "self_report": "risk self-report: risk-seeking minus risk-averse (mean score over all tasks)",
           "misaligned": "emergent misalignment: misaligned share of coherent answers, trained minus control"}


class ScalingConfig(SectionConfig):
    # `model` (every page's headline model, in its provenance) is set to the largest of `models`
    models: list[str] = Field(default_factory=lambda: ["local:smollm2-135m", "local:qwen2.5-coder-0.5b"],
                              min_length=1)
    parameters: dict[str, float] = Field(default_factory=dict)  # sizes of models whose spec does not tell
    min_sizes: int = Field(2, ge=1)  # the figure needs at least this many different sizes
    measures: list[Literal["risk", "em"]] = Field(default_factory=lambda: list(MEASURES), min_length=1)
    risk: dict = Field(default_factory=dict)  # parameters of 01 laid over the profile's 01 risk page
    em: dict = Field(default_factory=dict)  # parameters of 08 laid over the profile's 08 parameters
    em_recipe: str = "rank1_middle"  # a recipe of 08's `recipes` (after `em`): one layer, so it fits every size
    em_data: str = "financial_risky"
    em_twin: str | None = "financial_safe"  # the safe control on the same questions (None: the base only)
    per_model: dict[str, dict[Literal["risk", "em"], dict]] = Field(default_factory=dict)  # e.g. fewer seeds

    @model_validator(mode="after")
    def _models_sizes_and_recipes(self):
        for spec in self.models:
            check_model(spec)
        sizes = {spec: self.size(spec) for spec in self.models}
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"models: {', '.join(self.models)} names a model twice")
        if len(set(sizes.values())) < self.min_sizes:
            raise ConfigError(f"models: {', '.join(self.models)} has {len(set(sizes.values()))} size(s); a scaling "
                              f"page needs at least {self.min_sizes} different sizes")
        unknown = [spec for spec in self.per_model if spec not in self.models]
        if unknown:
            raise ConfigError(f"per_model: {', '.join(unknown)} not in models")
        self.model = max(self.models, key=self.size)
        for spec in self.models:  # every sub-config is built now: a typo is an error before any training
            if "risk" in self.measures:
                risk_config(self, spec)
            if "em" in self.measures:
                em_config(self, spec)
        return self

    def size(self, spec: str) -> float:
        found = parse_spec(spec).parameters or self.parameters.get(spec)
        if not found:
            raise ConfigError(f"model {spec}: its parameter count is unknown; give it in parameters: "
                              f"{{{spec}: COUNT}}")
        return float(found)

    def models_used(self) -> list[str]:
        used = list(self.models)
        if "em" in self.measures:
            used += [s for spec in self.models for s in em_config(self, spec).models_used()]
        return list(dict.fromkeys(used))


def check_model(spec: str) -> None:
    """One line naming the model when a local model is neither embedded nor a model directory."""
    from ..models.embedded import EMBEDDED

    parsed = parse_spec(spec)
    if parsed.is_local and parsed.embedded is None and not (Path(parsed.name).expanduser() / "config.json").exists():
        raise ConfigError(f"unknown model {spec!r}: neither an embedded model ({', '.join(EMBEDDED)}) nor a model "
                          f"directory with a config.json")


# ---- the sub-configs: what 01 and 08 would run for this model ---------------------------------------------
def _profile_params(profile: str, notebook: str, run_filter: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters a notebook's page gets from a profile (defaults < notebook params < the first run
    matching ``run_filter``); a profile without that notebook gives only its defaults."""
    data = profiles.load_profile(profile)
    merged = dict(data.get("defaults") or {})
    if notebook not in profiles.profile_notebooks(profile):
        return merged
    merged.update(profiles.notebook_entry(profile, notebook).get("params") or {})
    runs = profiles.notebook_runs(profile, notebook)
    chosen = next((r for r in runs if all(r.get(k) == v for k, v in (run_filter or {}).items())), {})
    merged.update({k: v for k, v in chosen.items() if k != "page"})
    return merged


def _build(config_class: type, notebook: str, merged: dict[str, Any], spec: str):
    try:
        return config_class(**merged)
    except ValidationError as error:
        raise config_error(error, f"{notebook} for {spec}: parameter ") from None
    except SelfAwareError as error:
        raise ConfigError(f"{notebook} for {spec}: {error}") from None


def risk_config(cfg: ScalingConfig, spec: str) -> mc.MultipleChoiceConfig:
    """The config of 01's risk page for ``spec`` on this profile, with ``risk`` and ``per_model`` laid over
    it; no sweep and no dataset-size ablation (their models are not part of the recipe)."""
    merged = _profile_params(cfg.profile, RISK_NOTEBOOK, {"behavior": "risk"})
    merged.update(cfg.risk)
    merged.update(cfg.per_model.get(spec, {}).get("risk", {}))
    merged.update(cfg.call_settings())  # how models are called is the page's, not what is trained
    merged.update(profile=cfg.profile, model=spec, behavior="risk", sweep=[], ablation=None)
    return _build(mc.MultipleChoiceConfig, RISK_NOTEBOOK, merged, spec)


def em_config(cfg: ScalingConfig, spec: str) -> small.SmallModelEMConfig:
    """The config of 08 for ``spec`` alone: the profile's 08 parameters with ``em`` and ``per_model`` laid
    over them, trained on ``em_data`` and ``em_twin`` with ``em_recipe``, beside its untuned self."""
    merged = _profile_params(cfg.profile, EM_NOTEBOOK)
    merged.update(cfg.em)
    merged.update(cfg.per_model.get(spec, {}).get("em", {}))
    recipes = merged.get("recipes") or small.SmallModelEMConfig.model_fields["recipes"].default_factory()
    if cfg.em_recipe not in recipes:
        raise ConfigError(f"em_recipe: unknown recipe {cfg.em_recipe!r} (recipes: {', '.join(recipes)})")
    recipes = {cfg.em_recipe: recipes[cfg.em_recipe]}  # only the recipe this page trains is validated
    data = [cfg.em_data] + ([cfg.em_twin] if cfg.em_twin else [])
    merged.update(cfg.call_settings())
    merged.update(profile=cfg.profile, model=spec, compare_models=[], include_base=True, recipes=recipes,
                  conditions=[{"data": d, "recipe": cfg.em_recipe} for d in data])
    return _build(small.SmallModelEMConfig, EM_NOTEBOOK, merged, spec)


# ---- running one size -------------------------------------------------------------------------------------
@dataclass
class RiskRun:
    spec: str
    cfg: mc.MultipleChoiceConfig
    data_source: str
    conditions: list[ex.Condition]
    behaviour: pd.DataFrame
    scores: pd.DataFrame
    answers: pd.DataFrame


def run_risk(cfg: ScalingConfig, spec: str, progress: bool = True) -> RiskRun:
    """01's risk experiment for one model: train both policies, then behaviour, then self-reports; the
    trained models served as the run's ``inference`` asks (``experiment.served``)."""
    sub = risk_config(cfg, spec)
    taskset = mc.load_tasks("risk")
    data = mc.load_training_data(sub)
    conditions = ex.served(sub, mc.train_conditions(sub, data, taskset, progress=progress))
    behaviour = mc.measure_behaviour(conditions, data.heldout)
    scores, answers = mc.measure_self_reports(conditions, taskset, sub)
    return RiskRun(spec, sub, data.source, conditions, behaviour, scores, answers)


@dataclass
class JudgeRule:
    judge: str
    rule: Any
    calibrated: Any
    reason: str
    calibration: pd.DataFrame | None


def judge_rule(sub: small.SmallModelEMConfig) -> JudgeRule:
    """08's decision rule for this judge: calibrated on half of the labelled answers (as 07 and 08 do)."""
    from ..evals import judge_calibration

    judge = sub.judge or sub.model
    calibration = None
    if sub.calibration_file:
        calibration = judge_calibration.calibrate_judge(judge, sub.calibration_file, sub.calibration_limit,
                                                        sub.judge_min_mass, sub.judge_system)
    rule, calibrated, reason = judge_calibration.choose_rule(calibration, sub.decision_rule, sub.calibration_seed,
                                                             sub.min_calibration_per_label)
    return JudgeRule(judge, rule, calibrated, reason, calibration)


@dataclass
class EmRun:
    spec: str
    cfg: small.SmallModelEMConfig
    data_source: str
    judge: JudgeRule
    judged: pd.DataFrame
    table: pd.DataFrame


def run_em(cfg: ScalingConfig, spec: str, rules: dict[str, JudgeRule], progress: bool = True) -> EmRun:
    """08's measure for one model: its untuned self, ``em_data`` and ``em_twin`` with ``em_recipe``; the
    answers are sampled, the model unloaded, then judged (one judge rule per judge, calibrated once).
    The trained models are served as the run's ``inference`` asks (``experiment.served``)."""
    from ..models.local import unload_models

    sub = em_config(cfg, spec)
    judge = sub.judge or sub.model
    if judge not in rules:
        rules[judge] = judge_rule(sub)
        unload_models()  # the judge's memory is free while the model trains and answers
    sets, source = small.training_sets(sub)
    questions = small.load_question_set(sub)
    trained = small.served(sub, small.train_models(sub, sets, progress=progress))
    answers = small.sample_answers(trained, questions, sub)
    unload_models()
    judged = small.judge_frame(answers, questions, sub, rules[judge].rule, trained)
    unload_models()
    return EmRun(spec, sub, source, rules[judge], judged, small.summary(judged))


# ---- effects ----------------------------------------------------------------------------------------------
def _node(values: tuple[float, float, float], n: int) -> dict[str, Any]:
    mean, low, high = values
    return ex.clean({"mean": mean, "ci_low": low, "ci_high": high, "n": n})


def risk_effects(run: RiskRun) -> dict[str, Any]:
    """Behaviour and self-report effects (risk-seeking minus risk-averse) of one size, with the rates."""
    behaviour = ex.seed_key(run.behaviour)
    toward, away = (behaviour[behaviour["role"] == r] for r in ("toward", "away"))
    scores = ex.seed_key(run.scores)
    scores = scores.assign(item=scores["task"].astype(str) + "#" + scores["paraphrase"].astype(str))
    reported_toward, reported_away = (scores[scores["role"] == r] for r in ("toward", "away"))
    return {"behaviour": _node(bootstrap_difference_ci(toward, away, "chose_toward", ["seed_key", "question"]),
                               len(toward) + len(away)),
            "self_report": _node(bootstrap_difference_ci(reported_toward, reported_away, "score", ["seed_key", "item"]),
                                 len(reported_toward) + len(reported_away)),
            "rates": ex.intervals(mc.behaviour_summary(run.behaviour), "role"),
            "reports": ex.clean(run.scores.groupby("role")["score"].mean().to_dict())}


def em_effects(run: EmRun, cfg: ScalingConfig) -> dict[str, Any]:
    """Misaligned share of the coherent answers: trained minus twin and trained minus untuned, per size."""
    frame = small.keyed_by_answer(run.judged)
    frame = frame[frame["coherent"] & frame["aligned_score"].notna()]
    frame = frame.assign(misaligned_f=frame["misaligned"].astype(float))
    levels = ["seed_key", "answer_key"]
    trained = frame[(frame["data"] == cfg.em_data) & (frame["recipe"] == cfg.em_recipe)]
    base = frame[frame["data"] == "none"]
    found = {"vs_base": _node(bootstrap_difference_ci(trained, base, "misaligned_f", levels), len(trained) + len(base))}
    if cfg.em_twin:
        twin = frame[(frame["data"] == cfg.em_twin) & (frame["recipe"] == cfg.em_recipe)]
        found["vs_twin"] = _node(bootstrap_difference_ci(trained, twin, "misaligned_f", levels),
                                 len(trained) + len(twin))
    found["misaligned"] = {row["data"]: ex.clean({"mean": row["misaligned"], "ci_low": row["misaligned low"],
                                                  "ci_high": row["misaligned high"], "n": row["misaligned n"]})
                           for row in run.table.to_dict("records")}
    found["scored_share"] = ex.clean(float(run.judged["aligned_score"].notna().mean()) if len(run.judged) else None)
    return found


def appears(node: dict[str, Any] | None) -> bool | None:
    """True when the effect's interval lies above zero, False when not, None when there is no interval."""
    if not node or node.get("ci_low") is None:
        return None
    return bool(node["ci_low"] > 0)


# ---- the points of the figure -----------------------------------------------------------------------------
POINT_COLUMNS = ["effect", "source", "model", "spec", "parameters", "mean", "ci_low", "ci_high", "n", "appears",
                 "compared with", "profile", "data", "citation", "published"]


def run_points(cfg: ScalingConfig, risk: dict[str, dict], risk_sources: dict[str, str], em: dict[str, dict],
               em_sources: dict[str, str]) -> pd.DataFrame:
    """One row per (effect, model) of this run, each read from that model's own effects (``risk[spec]``,
    ``em[spec]``), with the model, profile and data that produced it."""
    rows = []

    def add(effect: str, spec: str, node: dict | None, data: str, control: str):
        node = node or {}
        rows.append({"effect": effect, "source": "this run", "model": parse_spec(spec).title, "spec": spec,
                     "parameters": cfg.size(spec), "mean": node.get("mean"), "ci_low": node.get("ci_low"),
                     "ci_high": node.get("ci_high"), "n": node.get("n"), "appears": appears(node),
                     "compared with": control, "profile": profiles.shown_profile(cfg.profile), "data": data,
                     "citation": "", "published": ""})

    for spec in cfg.models:
        if spec in risk:
            add("behaviour", spec, risk[spec]["behaviour"], risk_sources[spec], "the risk-averse models")
            add("self_report", spec, risk[spec]["self_report"], risk_sources[spec], "the risk-averse models")
        if spec in em:
            twin = em[spec].get("vs_twin")
            add("misaligned", spec, twin or em[spec]["vs_base"], em_sources[spec],
                f"the safe twin ({cfg.em_twin})" if twin else "the untuned model")
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def published_points() -> pd.DataFrame:
    """The published points of ``data/paper_figures.yaml`` (notebook 09_scaling), marked as published."""
    from ..paper import figures

    rows = []
    for figure in figures():
        if figure.notebook != NOTEBOOK:
            continue
        low, high = figure.range or (None, None)
        rows.append({"effect": figure.condition, "source": "published", "model": figure.model or "",
                     "spec": "", "parameters": figure.parameters, "mean": figure.value, "ci_low": low,
                     "ci_high": high, "n": None, "appears": None, "compared with": "", "profile": "",
                     "data": figure.measure,
                     "citation": figure.source, "published": figure.paper})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def figure_table(cfg: ScalingConfig, risk: dict[str, dict], risk_sources: dict[str, str], em: dict[str, dict],
                 em_sources: dict[str, str]) -> pd.DataFrame:
    """This run's points, then the published ones: the table behind the figure."""
    ours = run_points(cfg, risk, risk_sources, em, em_sources)
    return pd.concat([ours, published_points()], ignore_index=True) if len(ours) else published_points()


def plot_points(points: pd.DataFrame):
    """One panel per effect: effect size against parameter count (log x), this run's points with their 95%
    intervals, published points hollow; a published model of unknown size at the right edge; a published
    effect without a number as a dotted line at its size."""
    from ..plots import figure

    effects = [e for e in EFFECTS if e in set(points["effect"])]
    fig, axes = figure(4.4 * max(1, len(effects)), 4.2, ncols=max(1, len(effects)), squeeze=False)
    known = points["parameters"].dropna().astype(float)
    right = float(known.max()) * 3 if len(known) else 1e12
    for ax, effect in zip(axes[0], effects):
        part = points[points["effect"] == effect]
        ours = part[part["source"] == "this run"]
        values = ours["mean"].astype(float)
        low = (values - ours["ci_low"].astype(float)).clip(lower=0).fillna(0)
        high = (ours["ci_high"].astype(float) - values).clip(lower=0).fillna(0)
        ax.errorbar(ours["parameters"].astype(float), values, yerr=[low, high], fmt="o", color="#1f77b4",
                    capsize=3, label="this run (95% CI)")
        for row in ours.itertuples():
            if pd.notna(row.mean):
                ax.annotate(row.model.split("-Instruct")[0], (row.parameters, row.mean), fontsize=6,
                            xytext=(4, 4), textcoords="offset points")
        for index, row in enumerate(part[part["source"] == "published"].itertuples()):
            size = row.parameters if row.parameters and pd.notna(row.parameters) else right
            name = row.model + ("" if row.parameters and pd.notna(row.parameters) else " (size not published)")
            if row.mean is None or pd.isna(row.mean):
                ax.axvline(size, color="#7f7f7f", linestyle=":", linewidth=1)
                ax.text(size, 0.03, f" published: {name} (reported, no number)", fontsize=6, rotation=90,
                        transform=ax.get_xaxis_transform(), color="#555555", va="bottom", ha="right")
                continue
            errors = None
            if row.ci_low is not None and pd.notna(row.ci_low):
                errors = [[max(0.0, row.mean - row.ci_low)], [max(0.0, row.ci_high - row.mean)]]
            ax.errorbar([size], [row.mean], yerr=errors, fmt="D", mfc="none", color="#d62728", capsize=3)
            ax.annotate(f"published: {name}", (size, row.mean), fontsize=6, xytext=(4, -8 + 14 * (index % 2)),
                        textcoords="offset points", color="#d62728")
        ax.set_xscale("log")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xlabel("parameters (log scale)")
        ax.set_title(EFFECTS[effect].replace(": ", ":\n", 1), fontsize=8)
        lows = pd.concat([part["ci_low"], part["mean"]]).dropna().astype(float)
        highs = pd.concat([part["ci_high"], part["mean"]]).dropna().astype(float)
        ax.set_ylim(min(-0.1, float(lows.min()) - 0.05) if len(lows) else -0.1,
                    max(0.3, float(highs.max()) + 0.1) if len(highs) else 1.05)
        ax.set_xlim(float(known.min()) / 2 if len(known) else 1e7, right * 2)
    axes[0][0].set_ylabel("effect size")
    axes[0][0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# ---- the page's verdict ----------------------------------------------------------------------------------
def _interval(node: dict | None) -> str:
    return ex.Interval.of(node).format("+.2f") if node else "n/a"


def _word(flag: bool | None, yes: str, no: str) -> str:
    return yes if flag else ("cannot be told (no interval)" if flag is None else no)


def effect_statement(cfg: ScalingConfig, risk: dict[str, dict], em: dict[str, dict]) -> str:
    """Per size, first whether the behaviour was learned, then whether it is reported, then emergent
    misalignment; then at which sizes each effect appears on this machine. From the measured intervals."""
    lines = []
    for spec in sorted(cfg.models, key=cfg.size):
        name = f"{parse_spec(spec).title} ({cfg.size(spec) / 1e6:,.0f}M parameters)"
        parts = []
        if spec in risk:
            effects = risk[spec]
            learned, reported = appears(effects["behaviour"]), appears(effects["self_report"])
            parts.append(f"risk behaviour {_interval(effects['behaviour'])}: "
                         f"{_word(learned, 'learned', 'NOT learned (the interval reaches zero)')}; "
                         f"self-report {_interval(effects['self_report'])}: "
                         + ("not reported (the interval reaches zero)" if learned and reported is False else
                            "reported" if reported else
                            _word(reported, "reported", "no self-report effect either (nothing learned to report)")))
        if spec in em:
            node = em[spec].get("vs_twin")
            vs_base = em[spec]["vs_base"]
            if (node or vs_base).get("mean") is None:
                parts.append("emergent misalignment: n/a (no answer of this model was both scored by the judge and coherent)")
            else:
                parts.append(f"emergent misalignment, trained minus safe twin {_interval(node)} and minus the "
                             f"untuned model {_interval(vs_base)}: "
                             + _word(appears(node) if node else appears(vs_base), "appears", "does not appear"))
        lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
    lines.append("")
    for label, sizes in where_effects_appear(cfg, risk, em).items():
        lines.append(f"{label}: " + (", ".join(sizes) if sizes else "at none of the sizes measured here") + ".")
    return "\n".join(lines)


def where_effects_appear(cfg: ScalingConfig, risk: dict[str, dict], em: dict[str, dict]) -> dict[str, list[str]]:
    """Sizes (by model title) at which each effect's interval lies above zero."""
    order = sorted(cfg.models, key=cfg.size)
    title = {spec: parse_spec(spec).title for spec in order}
    found = {}
    if risk:
        found["Risk behaviour learned"] = [title[s] for s in order if s in risk and appears(risk[s]["behaviour"])]
        found["Risk behaviour reported"] = [title[s] for s in order if s in risk and appears(risk[s]["self_report"])]
    if em:
        found["Emergent misalignment above its control"] = [
            title[s] for s in order if s in em and appears(em[s].get("vs_twin") or em[s]["vs_base"])]
    return found


def metrics(cfg: ScalingConfig, risk: dict[str, dict], em: dict[str, dict], rules: dict[str, JudgeRule]) -> dict:
    """Per size (keyed by ``small.size_name``, e.g. "494M"): the effects and the model that produced them."""
    def keyed(found: dict[str, dict]) -> dict[str, dict]:
        return {small.size_name(spec): {"model": spec, "parameters": cfg.size(spec), **effects}
                for spec, effects in found.items()}

    return {"risk": keyed(risk), "em": keyed(em),
            "judges": {judge: {"rule": rule.rule.name, "reason": rule.reason} for judge, rule in rules.items()},
            "where": where_effects_appear(cfg, risk, em)}


@ex.register(NOTEBOOK, ScalingConfig)
def plan(cfg: ScalingConfig) -> ex.Plan:
    """01's and 08's plans for every model: what this page would train and ask if nothing were cached (the
    models 01 and 08 already trained with the same recipe are read from the cache)."""
    found, calibrated = ex.Plan(), set()
    for spec in cfg.models:
        if "risk" in cfg.measures:
            found.merge(mc.plan(risk_config(cfg, spec)))
        if "em" in cfg.measures:
            sub = em_config(cfg, spec)
            if (sub.judge or sub.model) not in calibrated:  # as run_em: one calibration per judge
                calibrated.add(sub.judge or sub.model)
                em_section.plan_judge_calibration(found, sub)
            found.merge(small.plan(sub, calibration=False, probe=False))
    return found


def size_table(cfg: ScalingConfig) -> pd.DataFrame:
    """The models of this page, their sizes and the recipe each measure trains them with."""
    rows = []
    for spec in sorted(cfg.models, key=cfg.size):
        row = {"model": parse_spec(spec).title, "spec": spec, "parameters": f"{cfg.size(spec) / 1e6:,.0f}M"}
        if "risk" in cfg.measures:
            sub = risk_config(cfg, spec)
            row["risk recipe"] = f"{sub.finetune}, {sub.n_train} examples, seeds {sub.seeds}"
        if "em" in cfg.measures:
            sub = em_config(cfg, spec)
            row["EM recipe"] = f"{sub.recipe(cfg.em_recipe)}, {sub.n_train} examples, seeds {sub.seeds}"
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_per_condition(cfg: ScalingConfig) -> int:
    """The fewest training seeds of any model and measure this page trains (each through 01's or 08's
    config)."""
    subs = [risk_config(cfg, spec) for spec in cfg.models if "risk" in cfg.measures] + \
        [em_config(cfg, spec) for spec in cfg.models if "em" in cfg.measures]
    return min(len(sub.seeds) for sub in subs)


PAGE = Page(NOTEBOOK, ScalingConfig, plan=lambda cfg, data: plan(cfg), seeds=seeds_per_condition,
            provenance=lambda cfg, data: ("the data of notebooks 01 (risk) and 08 (advice), per model below",
                                          {"models": ", ".join(cfg.models), "measures": ", ".join(cfg.measures)}))

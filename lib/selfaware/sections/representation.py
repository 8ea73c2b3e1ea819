"""Represented but not reported: is a behaviour the model learned but does not report still readable inside it?

This project's own experiment (no paper runs it), on Section 3.1's risk models of notebook 01 (135M) and
notebook 09 (0.5B), with no new training: each model is built from 01's risk recipe exactly as 09 builds it
(``scaling.risk_config``), so it is read from the cache when those pages ran first.

Three measures, per model size:

- **The behaviour direction**, per decoder layer: the mean over held-out lottery questions of the residual
  stream at the last prompt token of the risk-seeking model minus the risk-averse model of the same seed,
  averaged over seeds. Below the adapted layers it is exactly zero (the same frozen weights see the same
  tokens).
- **Steering the untuned model** with that direction (``local:NAME?steer=...``, a forward hook after one
  decoder layer): the layer and scale are chosen on the questions the direction was computed on (the
  largest move of the behaviour toward risk); the move of the behaviour is then measured on other held-out
  questions, and the move of the exactly scored self-reports (preference, one word, three 0-100 scales) on
  every paraphrase, each as the model steered toward minus the model steered away, paired per question or
  paraphrase.
- **A linear probe** on the finetuned models' activations while they read each self-report question: a
  difference-of-means classifier (the direction between the two policies' mean activations, cut half-way)
  fitted on one half of the paraphrases and tested on the other half, and fitted on one seed's models and
  tested on another seed's where there are two. Its accuracy per layer is set beside the accuracy of the
  models' own answers on the same questions (an answer is right when its score lies on its policy's side
  of 0.5), and beside the same probe on neutral questions that say nothing about risk, which tells a trace
  of the adapter (readable everywhere) from a reading specific to the self-report questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from .. import experiment as ex
from ..cache import content_hash
from ..config import SectionConfig, read_yaml
from ..errors import ConfigError
from ..evals.selfreport import TaskSet, exact_taskset, plan_requests, score_tasks, task_prompts
from ..models import parse_spec
from ..page import Page
from ..paths import cache_dir, data_dir, shown_path
from ..plots import figure
from ..stats import Interval, bootstrap_mean_ci
from . import multiple_choice as mc
from . import scaling

NOTEBOOK = "10_representation"
NEUTRAL = data_dir() / "representation" / "neutral.yaml"
SIGNS = {"toward": 1, "away": -1}  # steered toward risk (+direction) and away from it (-direction)


class RepresentationConfig(SectionConfig):
    # `model` (the page's headline model, in its provenance) is the largest of `models`
    models: list[str] = Field(default_factory=lambda: ["local:smollm2-135m", "local:qwen2.5-coder-0.5b"],
                              min_length=1)
    risk: dict = Field(default_factory=dict)  # parameters of 01 laid over the profile's 01 risk page (as 09)
    per_model: dict[str, dict[str, dict]] = Field(default_factory=dict)  # as 09's: e.g. fewer seeds per model
    n_direction: int = Field(64, ge=2)  # held-out questions the direction, layer and scale are chosen on
    n_test: int = Field(64, ge=2)  # the next held-out questions, where steering's effect is measured
    layers_tried: int = Field(5, ge=1)  # layers tried, evenly spaced over those where the direction is not zero
    scales: list[float] = Field(default_factory=lambda: [1.0, 4.0], min_length=1)  # multiples of the direction
    max_paraphrases: int | None = Field(None, ge=2)  # self-report paraphrases asked and probed (None: all)
    n_neutral: int | None = Field(None, ge=2)  # neutral control questions probed (None: all of the file's)

    @model_validator(mode="after")
    def _models_and_sizes(self):
        for spec in self.models:
            scaling.check_model(spec)
            if not parse_spec(spec).is_local:
                raise ConfigError(f"models: {spec} is not a local model; activations and steering need the "
                                  f"weights in this process")
        if len(set(self.models)) != len(self.models):
            raise ConfigError(f"models: {', '.join(self.models)} names a model twice")
        if any(scale <= 0 for scale in self.scales):
            raise ConfigError(f"scales: {self.scales} must be positive (each is tried toward and away)")
        unknown = [spec for spec in self.per_model if spec not in self.models]
        if unknown:
            raise ConfigError(f"per_model: {', '.join(unknown)} not in models")
        sizes = [parse_spec(spec).parameters for spec in self.models]
        self.model = max(self.models, key=lambda s: parse_spec(s).parameters) if all(sizes) else self.models[-1]
        for spec in self.models:  # every sub-config is built now: a typo is an error before any kernel work
            subject(self, spec)
        return self

    def models_used(self) -> list[str]:
        return list(self.models)


# ---- the models and their data ---------------------------------------------------------------------------
@dataclass
class Subject:
    """One model size: 01's risk config for it, its data, its trained models and the questions used here."""

    spec: str
    cfg: mc.MultipleChoiceConfig
    data: mc.TrainingData
    taskset: TaskSet
    direction_questions: list
    test_questions: list

    @property
    def name(self) -> str:
        return parse_spec(self.spec).title


def subject(cfg: RepresentationConfig, spec: str) -> Subject:
    """The risk page of 01 for ``spec`` as 09 builds it, and the held-out questions split in two."""
    sub = scaling.risk_config(cfg, spec)
    data = mc.load_training_data(sub)
    need = cfg.n_direction + cfg.n_test
    if len(data.heldout) < need:
        raise ConfigError(f"n_direction + n_test = {need}: {spec}'s risk page has {len(data.heldout)} held-out "
                          f"questions (its n_heldout)")
    return Subject(spec, sub, data, mc.load_tasks("risk"), data.heldout[:cfg.n_direction],
                   data.heldout[cfg.n_direction:need])


def report_prompts(cfg: RepresentationConfig, taskset: TaskSet) -> list[tuple[str, int, ex.Messages]]:
    """(task, paraphrase, prompt) of every exactly scored self-report question."""
    return [(task.id, index, prompt) for task in exact_taskset(taskset).tasks
            for index, prompt in enumerate(task_prompts(task, cfg.max_paraphrases))]


def neutral_prompts(cfg: RepresentationConfig) -> list[ex.Messages]:
    """Questions that say nothing about risk, choices or the model itself (``data/representation/neutral.yaml``)."""
    texts = [item["text"] for item in read_yaml(NEUTRAL)["questions"]]
    if cfg.n_neutral is not None and cfg.n_neutral > len(texts):
        raise ConfigError(f"n_neutral {cfg.n_neutral}: {shown_path(NEUTRAL)} has {len(texts)} questions")
    return [[{"role": "user", "content": text}] for text in texts[:cfg.n_neutral]]


def trained(subject_: Subject, progress: bool = True) -> list[ex.Condition]:
    """01's risk models for this size (cached when 01 or 09 trained them): the untuned model first."""
    return mc.train_conditions(subject_.cfg, subject_.data, subject_.taskset, progress=progress)


# ---- the model calls, declared once ------------------------------------------------------------------------
def activation_requests(cfg: RepresentationConfig, subject_: Subject) -> list[ex.Request]:
    """What each trained model is asked for its activations: the direction's questions, every exactly scored
    self-report question and the neutral questions, at every layer."""
    return [ex.Request("activations: behaviour questions", mc.behaviour_prompts(subject_.direction_questions),
                       "hidden_states"),
            ex.Request("activations: self-report questions", [p for _, _, p in report_prompts(cfg, subject_.taskset)],
                       "hidden_states"),
            ex.Request("activations: neutral questions", neutral_prompts(cfg), "hidden_states")]


def trained_models(subject_: Subject) -> int:
    return len(ex.grid(subject_.cfg, subject_.data.conversations))


@ex.register(NOTEBOOK, RepresentationConfig)
def plan(cfg: RepresentationConfig, data=None) -> ex.Plan:
    """For each model: 01's trainings (found in the cache after 01 or 09), the activations of every model,
    the finetuned models' behaviour on the test questions and their exactly scored self-reports (01's
    questions: cache hits after 01 or 09), and the steered models: 2 x
    ``layers_tried`` x ``scales`` on the direction's questions (at most: fewer when the direction is not zero
    on that many layers), then the chosen one toward and away on the test questions and the self-reports."""
    found = ex.Plan()
    for spec in cfg.models:
        subject_ = subject(cfg, spec)
        found.train(subject_.cfg, subject_.data.conversations, "risk")
        models = trained_models(subject_)
        for request in activation_requests(cfg, subject_):
            request.plan(found, spec, models)
        mc.behaviour_request(subject_.test_questions).plan(found, spec, models - 1,
                                                           "behaviour of the finetuned models (test questions)")
        plan_requests(found, exact_taskset(subject_.taskset), spec, models - 1, cfg.max_paraphrases, 0)
        tried = 2 * cfg.layers_tried * len(cfg.scales)
        ex.Request("behaviour under steering (choosing the layer and scale)",
                   mc.behaviour_prompts(subject_.direction_questions), "options", options=("A", "B"),
                   at_most="fewer layers when the direction is zero on some").plan(found, spec, tried)
        mc.behaviour_request(subject_.test_questions).plan(found, spec, 2, "behaviour under steering (test)")
        plan_requests(found, exact_taskset(subject_.taskset), spec, 2, cfg.max_paraphrases, 0)
    return found


# ---- activations and the direction -----------------------------------------------------------------------
def activations(cfg: RepresentationConfig, subject_: Subject, conditions: list[ex.Condition]) -> dict[str, Any]:
    """Per condition (role, seed): the activations of each request of :func:`activation_requests`, as arrays
    (questions, layers, hidden size)."""
    from ..models import load_model

    found: dict[str, Any] = {}
    for condition in conditions:
        model = load_model(condition.spec)
        found[(condition.role, condition.seed)] = [np.stack(request.send(model))
                                                    for request in activation_requests(cfg, subject_)]
    return found


def seeds_of(conditions: list[ex.Condition]) -> list[int]:
    return sorted({c.seed for c in conditions if c.seed is not None})


def direction(acts: dict, seeds: list[int]) -> np.ndarray:
    """(layers, hidden size): toward minus away on the behaviour questions, per seed, averaged over seeds."""
    return np.mean([(acts[("toward", s)][0] - acts[("away", s)][0]).mean(axis=0) for s in seeds], axis=0)


def direction_table(subject_: Subject, acts: dict, seeds: list[int], vector: np.ndarray) -> pd.DataFrame:
    """Per layer: the direction's norm, the untuned model's mean residual norm there, and how well the
    direction's own seeds agree (cosine between the seeds' directions; one seed: none)."""
    base = np.linalg.norm(acts[("base", None)][0], axis=-1).mean(axis=0)
    per_seed = [(acts[("toward", s)][0] - acts[("away", s)][0]).mean(axis=0) for s in seeds]
    rows = []
    for layer in range(vector.shape[0]):
        cosine = None
        if len(per_seed) >= 2:
            a, b = per_seed[0][layer], per_seed[1][layer]
            denominator = np.linalg.norm(a) * np.linalg.norm(b)
            cosine = float(a @ b / denominator) if denominator > 0 else None
        rows.append({"model": subject_.name, "layer": layer, "direction_norm": float(np.linalg.norm(vector[layer])),
                     "residual_norm": float(base[layer]), "seed_cosine": cosine})
    return pd.DataFrame(rows)


def candidate_layers(vector: np.ndarray, count: int) -> list[int]:
    """``count`` layers evenly spaced over those where the direction is not zero (the adapted layers)."""
    alive = [layer for layer in range(vector.shape[0]) if np.linalg.norm(vector[layer]) > 0]
    if len(alive) <= count:
        return alive
    return sorted({alive[round(k * (len(alive) - 1) / max(1, count - 1))] for k in range(count)})


def vector_file(values: np.ndarray) -> Path:
    """The vector saved under the cache, named by its content (a steered model's spec points at it; its
    cache identity is the content, not the path)."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    folder = cache_dir() / "directions"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{content_hash({'vector': values.tobytes().hex()}, 24)}.npy"
    if not path.exists():
        tmp = path.with_suffix(f".tmp{id(values)}.npy")
        np.save(tmp, values)
        tmp.replace(path)
    return path


def steered_spec(spec: str, vector: np.ndarray, layer: int, scale: float) -> str:
    return f"{spec}?steer={vector_file(vector[layer])}&layer={layer}&scale={scale:g}"


# ---- steering ------------------------------------------------------------------------------------------------
def behaviour_rows(spec: str, questions: list, **columns: Any) -> list[dict]:
    from ..models import load_model

    results = mc.behaviour_request(questions).send(load_model(spec))
    return [{**columns, "question": k, "p_toward": r.probs[q.target], "p_a": r.probs["A"],
             "option_mass": math.exp(r.logprobs["A"]) + math.exp(r.logprobs["B"])}
            for k, (q, r) in enumerate(zip(questions, results))]


def choose_steering(cfg: RepresentationConfig, subject_: Subject, vector: np.ndarray) -> pd.DataFrame:
    """Every (layer, scale) tried, toward and away, on the direction's own questions: the mean probability of
    the riskier answer, of the letter A, and of answering A or B at all."""
    rows = []
    for layer in candidate_layers(vector, cfg.layers_tried):
        for scale in cfg.scales:
            for side, sign in SIGNS.items():
                rows += behaviour_rows(steered_spec(subject_.spec, vector, layer, sign * scale),
                                       subject_.direction_questions, model=subject_.name, layer=layer, scale=scale,
                                       steered=side)
    return pd.DataFrame(rows)


def tried_table(tried: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, scale): the behaviour's mean move (toward minus away) and the two sides' format."""
    means = tried.groupby(["model", "layer", "scale", "steered"], sort=False)[["p_toward", "p_a", "option_mass"]].mean()
    table = means.unstack("steered")
    out = pd.DataFrame({"move": table[("p_toward", "toward")] - table[("p_toward", "away")],
                        "p_toward (toward)": table[("p_toward", "toward")],
                        "p_toward (away)": table[("p_toward", "away")],
                        "P(A) (toward)": table[("p_a", "toward")], "P(A) (away)": table[("p_a", "away")],
                        "A or B mass (toward)": table[("option_mass", "toward")],
                        "A or B mass (away)": table[("option_mass", "away")]})
    return out.reset_index()


def chosen(tried: pd.DataFrame) -> tuple[int, float]:
    """The (layer, scale) that moved the behaviour most toward risk; on a tie the smaller scale, then the
    lower layer."""
    table = tried_table(tried).sort_values(["move", "scale", "layer"], ascending=[False, True, True])
    first = table.iloc[0]
    return int(first["layer"]), float(first["scale"])


def steered_behaviour(subject_: Subject, vector: np.ndarray, layer: int, scale: float) -> pd.DataFrame:
    """The test questions asked of the model steered toward and away at the chosen layer and scale."""
    rows = []
    for side, sign in SIGNS.items():
        rows += behaviour_rows(steered_spec(subject_.spec, vector, layer, sign * scale), subject_.test_questions,
                               model=subject_.name, layer=layer, scale=scale, steered=side)
    return pd.DataFrame(rows)


def steered_reports(cfg: RepresentationConfig, subject_: Subject, vector: np.ndarray, layer: int,
                    scale: float) -> pd.DataFrame:
    """The exactly scored self-reports of the model steered toward and away (0 = risk-averse, 1 = risk-seeking)."""
    from ..models import load_model

    rows = []
    for side, sign in SIGNS.items():
        model = load_model(steered_spec(subject_.spec, vector, layer, sign * scale))
        scores, _ = score_tasks(model, exact_taskset(subject_.taskset), cfg.max_paraphrases, 0)
        rows += [{"model": subject_.name, "layer": layer, "scale": scale, "steered": side, **row} for row in scores]
    return pd.DataFrame(rows)


def paired_move(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Per item (``keys``): the value steered toward minus steered away."""
    wide = frame.pivot_table(index=keys, columns="steered", values=value, aggfunc="mean")
    return (wide["toward"] - wide["away"]).rename("move").reset_index()


def interval_row(frame: pd.DataFrame, value: str, levels: list[str], **columns: Any) -> dict[str, Any]:
    mean, low, high = bootstrap_mean_ci(frame, value, levels)
    return {**columns, "mean": mean, "ci_low": low, "ci_high": high, "n": int(frame[value].notna().sum())}


def steering_summary(behaviour: pd.DataFrame, reports: pd.DataFrame) -> pd.DataFrame:
    """Per model: the behaviour's move on the test questions (paired per question) and each self-report
    task's move and their mean (paired per paraphrase; the mean resampled over tasks, then paraphrases)."""
    rows = []
    for name, part in behaviour.groupby("model", sort=False):
        moved = paired_move(part, ["question"], "p_toward")
        rows.append(interval_row(moved, "move", ["question"], model=name, measure="behaviour (test questions)"))
        reported = paired_move(reports[reports["model"] == name], ["task", "paraphrase"], "score")
        for task, one in reported.groupby("task", sort=False):
            rows.append(interval_row(one, "move", ["paraphrase"], model=name, measure=f"self-report: {task}"))
        rows.append(interval_row(reported, "move", ["task", "paraphrase"], model=name,
                                 measure="self-report: mean of the tasks"))
    return pd.DataFrame(rows)


# ---- the probe -------------------------------------------------------------------------------------------------
def fit_probe(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """A difference-of-means linear classifier: the direction from the mean of label 0 to the mean of label 1,
    and the threshold half-way between the two means projected on it."""
    ones, zeros = features[labels == 1].mean(axis=0), features[labels == 0].mean(axis=0)
    weights = ones - zeros
    return weights, float((ones + zeros) @ weights / 2)


def probe_predictions(weights: np.ndarray, threshold: float, features: np.ndarray) -> np.ndarray:
    """1 where the projection is above the threshold; a probe with no direction (identical means) says
    nothing, which scores 0.5 (a coin) rather than always one class."""
    if not np.any(weights):
        return np.full(len(features), 0.5)
    return (features @ weights > threshold).astype(float)


@dataclass(frozen=True)
class Fold:
    """One held-out split: the probe is fitted on ``fit_seed``'s models and the ``fit_half`` of the prompts,
    and tested on ``test_seed``'s models and the other half. With one seed, both are that seed."""

    fit_seed: int
    test_seed: int
    fit_half: int  # 0: the even-numbered paraphrases (or prompts), 1: the odd ones


def folds(seeds: list[int]) -> list[Fold]:
    """Both halves of the prompts, and every ordered pair of distinct seeds (one seed: that seed alone)."""
    pairs = list(permutations(seeds, 2)) or [(seeds[0], seeds[0])]
    return [Fold(a, b, half) for a, b in pairs for half in (0, 1)]


def halves(count: int) -> np.ndarray:
    """Which half each of ``count`` prompts falls in: alternating, so every task is in both halves."""
    return np.arange(count) % 2


def probe_accuracy(acts: dict, which: int, seeds: list[int], prompt_half: np.ndarray) -> pd.DataFrame:
    """Per fold, layer and test prompt: the share of the two test models (toward and away) the probe
    classifies right. ``which`` picks the request of :func:`activation_requests` probed."""
    rows = []
    layers = acts[("toward", seeds[0])][which].shape[1]
    for fold in folds(seeds):
        fit = prompt_half == fold.fit_half
        test = ~fit
        for layer in range(layers):
            features = np.concatenate([acts[("toward", fold.fit_seed)][which][fit, layer],
                                       acts[("away", fold.fit_seed)][which][fit, layer]])
            labels = np.concatenate([np.ones(fit.sum()), np.zeros(fit.sum())])
            weights, threshold = fit_probe(features, labels)
            toward = probe_predictions(weights, threshold, acts[("toward", fold.test_seed)][which][test, layer])
            away = 1 - probe_predictions(weights, threshold, acts[("away", fold.test_seed)][which][test, layer])
            for prompt, right in zip(np.flatnonzero(test), (toward + away) / 2):
                rows.append({"fold": f"seed {fold.fit_seed}->{fold.test_seed}, half {fold.fit_half}",
                             "layer": layer, "prompt": int(prompt), "correct": float(right)})
    return pd.DataFrame(rows)


def answer_accuracy(scores: pd.DataFrame, report_keys: list[tuple[str, int]], seeds: list[int],
                    prompt_half: np.ndarray) -> pd.DataFrame:
    """The finetuned models' own answers scored as the probe is, on the same test prompts and models: right
    when the score lies on the model's policy side of 0.5 (exactly 0.5, or no answer: half right)."""
    index = {key: k for k, key in enumerate(report_keys)}
    by = scores.set_index(["role", "seed", "task", "paraphrase"])["score"]
    rows = []
    for fold in folds(seeds):
        for key, prompt in index.items():
            if prompt_half[prompt] == fold.fit_half:
                continue
            right = []
            for role, sign in SIGNS.items():
                value = by.get((role, fold.test_seed, *key))
                right.append(0.5 if value is None or pd.isna(value) or value == 0.5 else
                             float((value - 0.5) * sign > 0))
            rows.append({"fold": f"seed {fold.fit_seed}->{fold.test_seed}, half {fold.fit_half}", "prompt": prompt,
                         "correct": sum(right) / 2})
    return pd.DataFrame(rows)


def probe_summary(name: str, acts: dict, seeds: list[int], report_scores: pd.DataFrame,
                  report_keys: list[tuple[str, int]]) -> pd.DataFrame:
    """Per layer: the probe's accuracy on the self-report questions and on the neutral questions, and (one row,
    layer None) the models' own answers; each a mean over folds and test prompts with a 95% interval
    (resampling the folds, which are seed pairs and prompt halves, then the test prompts in each)."""
    rows = []
    report_half = halves(len(report_keys))
    for which, what in ((1, "probe: self-report questions"), (2, "probe: neutral questions")):
        half = report_half if which == 1 else halves(acts[("toward", seeds[0])][which].shape[0])
        found = probe_accuracy(acts, which, seeds, half)
        for layer, part in found.groupby("layer"):
            rows.append(interval_row(part, "correct", ["fold", "prompt"], model=name, measure=what, layer=int(layer)))
    answers = answer_accuracy(report_scores, report_keys, seeds, report_half)
    rows.append(interval_row(answers, "correct", ["fold", "prompt"], model=name, measure="the models' own answers",
                             layer=None))
    return pd.DataFrame(rows)


def finetuned_reports(cfg: RepresentationConfig, subject_: Subject, conditions: list[ex.Condition]) -> pd.DataFrame:
    """The finetuned models' exactly scored self-reports (01's questions: read from the cache after 01 or 09)."""
    def ask(condition, model, variant):
        scores, _ = score_tasks(model, exact_taskset(subject_.taskset), cfg.max_paraphrases, 0, variant=variant)
        return scores
    return ex.measure([c for c in conditions if c.seed is not None], ask)


def learned_behaviour(subject_: Subject, conditions: list[ex.Condition]) -> dict[str, Any]:
    """The finetuned models' behaviour on the test questions (01's question: read from the cache): the mean
    probability of the riskier answer, risk-seeking models minus risk-averse, with a 95% interval (each side
    resampled over its seeds, then questions)."""
    from ..stats import bootstrap_difference_ci

    rows = []
    for condition in conditions:
        if condition.seed is not None:
            rows += behaviour_rows(condition.spec, subject_.test_questions, role=condition.role, seed=condition.seed)
    frame = pd.DataFrame(rows)
    mean, low, high = bootstrap_difference_ci(frame[frame["role"] == "toward"], frame[frame["role"] == "away"],
                                              "p_toward", ["seed", "question"])
    return {"model": subject_.name, "measure": "behaviour learned: risk-seeking minus risk-averse models",
            "mean": mean, "ci_low": low, "ci_high": high, "n": len(frame)}


# ---- one model size, start to end -------------------------------------------------------------------------------
@dataclass
class SizeRun:
    subject: Subject
    seeds: list[int]
    directions: pd.DataFrame
    tried: pd.DataFrame
    layer: int
    scale: float
    steering: pd.DataFrame  # steering_summary rows, with the learned behaviour first
    probe: pd.DataFrame
    behaviour: pd.DataFrame
    reports: pd.DataFrame


def run_size(cfg: RepresentationConfig, spec: str, progress: bool = True) -> SizeRun:
    """Everything above for one model: its trained models (from the cache), activations, direction, steering
    and probe."""
    subject_ = subject(cfg, spec)
    conditions = trained(subject_, progress)
    seeds = seeds_of(conditions)
    acts = activations(cfg, subject_, conditions)
    vector = direction(acts, seeds)
    tried = choose_steering(cfg, subject_, vector)
    layer, scale = chosen(tried)
    behaviour = steered_behaviour(subject_, vector, layer, scale)
    reports = steered_reports(cfg, subject_, vector, layer, scale)
    steering = pd.concat([pd.DataFrame([learned_behaviour(subject_, conditions)]),
                          steering_summary(behaviour, reports)], ignore_index=True)
    own = finetuned_reports(cfg, subject_, conditions)
    keys = [(task, index) for task, index, _ in report_prompts(cfg, subject_.taskset)]
    probe = probe_summary(subject_.name, acts, seeds, own, keys)
    return SizeRun(subject_, seeds, direction_table(subject_, acts, seeds, vector), tried, layer, scale, steering,
                   probe, behaviour, reports)


# ---- tables, figures, metrics, statement ---------------------------------------------------------------------------
def plot_probe(runs: list[SizeRun]):
    """Probe accuracy per layer (self-report and neutral questions) beside the models' own answers."""
    fig, axes = figure(4.6 * len(runs), 3.8, ncols=len(runs), squeeze=False)
    for ax, run in zip(axes[0], runs):
        table = run.probe
        for measure, colour in (("probe: self-report questions", "#1f77b4"), ("probe: neutral questions", "#7f7f7f")):
            part = table[table["measure"] == measure]
            ax.plot(part["layer"], part["mean"], color=colour, label=measure.removeprefix("probe: "))
            ax.fill_between(part["layer"].astype(float), part["ci_low"], part["ci_high"], color=colour, alpha=0.2)
        own = table[table["measure"] == "the models' own answers"].iloc[0]
        ax.axhspan(own["ci_low"], own["ci_high"], color="#d62728", alpha=0.15)
        ax.axhline(own["mean"], color="#d62728", label="the models' own answers")
        ax.axhline(0.5, color="black", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("decoder layer")
        ax.set_ylabel("accuracy: which policy was trained")
        ax.set_title(f"{run.subject.name} ({len(run.seeds)} seed{'s' if len(run.seeds) > 1 else ''})", fontsize=10)
        ax.legend(frameon=False, fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_steering(runs: list[SizeRun]):
    """The behaviour's move (toward minus away) for every layer and scale tried, per model."""
    fig, axes = figure(4.6 * len(runs), 3.4, ncols=len(runs), squeeze=False)
    for ax, run in zip(axes[0], runs):
        table = tried_table(run.tried)
        for scale, part in table.groupby("scale"):
            ax.plot(part["layer"], part["move"], marker="o", label=f"scale {scale:g}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xlabel("decoder layer steered")
        ax.set_ylabel("P(riskier) toward - away")
        ax.set_title(run.subject.name, fontsize=10)
        ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def _row(table: pd.DataFrame, measure: str, layer: int | None = None):
    part = table[table["measure"] == measure]
    if layer is not None:
        part = part[part["layer"] == layer]
    return part.iloc[0] if len(part) else None


def best_probe_layer(run: SizeRun) -> int:
    """The layer where the probe on the self-report questions is most accurate (the lowest on a tie)."""
    part = run.probe[run.probe["measure"] == "probe: self-report questions"]
    return int(part.sort_values(["mean", "layer"], ascending=[False, True]).iloc[0]["layer"])


def moves(row) -> str:
    """'up', 'down' or 'no' for an interval of a move against zero."""
    found = Interval.of(row)
    if found is None or not found.rankable:
        return "unknown"
    return "up" if found.low > 0 else "down" if found.high < 0 else "no"


def task_moves(run: SizeRun) -> dict[str, int]:
    """How many self-report tasks the steering moved toward risk, away from it, or neither (interval vs 0)."""
    rows = run.steering[run.steering["measure"].str.startswith("self-report: ")
                        & (run.steering["measure"] != "self-report: mean of the tasks")]
    found = [moves(row) for _, row in rows.iterrows()]
    return {"tasks": len(found), "up": found.count("up"), "down": found.count("down"), "no": found.count("no")}


def size_verdict(run: SizeRun) -> dict[str, Any]:
    steering = run.steering
    learned = moves(steering.iloc[0])
    behaviour = moves(_row(steering, "behaviour (test questions)"))
    report = moves(_row(steering, "self-report: mean of the tasks"))
    layer = best_probe_layer(run)
    probe = _row(run.probe, "probe: self-report questions", layer)
    neutral = _row(run.probe, "probe: neutral questions", layer)
    answers = _row(run.probe, "the models' own answers")
    return {"learned": learned, "steering_behaviour": behaviour, "steering_self_report": report,
            "steered_layer": run.layer, "steered_scale": run.scale, "probe_layer": layer,
            "probe_above_chance": bool(Interval.of(probe).rankable and Interval.of(probe).low > 0.5),
            "probe_above_answers": Interval.of(probe).rank(Interval.of(answers)),
            "probe_against_neutral": Interval.of(probe).rank(Interval.of(neutral)),
            "self_report_tasks_moved": task_moves(run), "seeds": len(run.seeds)}


def metrics(runs: list[SizeRun]) -> dict[str, Any]:
    return {run.subject.spec: {"steering": ex.intervals(run.steering, "measure"),
                               "probe": {measure: {str(r["layer"]): ex.clean({k: r[k] for k in ("mean", "ci_low",
                                                                                                 "ci_high", "n")})
                                                   for r in part.to_dict("records")}
                                         for measure, part in run.probe.groupby("measure", sort=False)},
                               "verdict": size_verdict(run)}
            for run in runs}


def direction_overview(runs: list[SizeRun]) -> pd.DataFrame:
    """Per size: the layers where the direction is not zero, its norm there against the residual's, and the
    agreement of the seeds' directions."""
    rows = []
    for run in runs:
        alive = run.directions[run.directions["direction_norm"] > 0]
        ratio = alive["direction_norm"] / alive["residual_norm"]
        rows.append({"model": run.subject.name, "layers": len(run.directions),
                     "layers where it is not zero": f"{alive['layer'].min()}-{alive['layer'].max()}" if len(alive) else "none",
                     "norm / residual norm (median)": float(ratio.median()) if len(alive) else None,
                     "seed cosine (median)": alive["seed_cosine"].median() if alive["seed_cosine"].notna().any() else None,
                     "steered at layer": run.layer, "scale": run.scale})
    return pd.DataFrame(rows)


def steering_table(runs: list[SizeRun]) -> pd.DataFrame:
    return pd.concat([run.steering for run in runs], ignore_index=True)


def probe_table(runs: list[SizeRun]) -> pd.DataFrame:
    return pd.concat([run.probe for run in runs], ignore_index=True)


def _said(row) -> str:
    return Interval.of(row).format(".2f", bounds=".2f") if row is not None else "n/a"


def statement(runs: list[SizeRun]) -> str:
    """Per size: learned or not first; then what steering moved and what the probe read, each with its
    interval, and what that means under the issue's reading."""
    parts = []
    for run in runs:
        v = size_verdict(run)
        steering = run.steering
        learned = steering.iloc[0]
        name = run.subject.name
        if v["learned"] != "up":
            parts.append(f"**{name}**: the risk behaviour was not learned (risk-seeking minus risk-averse models "
                         f"on the test questions: {_said(learned)}), so nothing below can be about a learned "
                         f"behaviour.")
            continue
        behaviour = _row(steering, "behaviour (test questions)")
        report = _row(steering, "self-report: mean of the tasks")
        layer = v["probe_layer"]
        probe, neutral = _row(run.probe, "probe: self-report questions", layer), _row(run.probe, "probe: neutral questions", layer)
        answers = _row(run.probe, "the models' own answers")
        tasks = task_moves(run)
        both_ways = (" (the tasks that moved went both ways, which reports nothing consistent)"
                     if tasks["up"] and tasks["down"] else "")
        if v["steering_behaviour"] == "up" and v["steering_self_report"] == "no":
            reading = ("steering moves the behaviour but not the self-report on the mean of the tasks" + both_ways +
                       ": awareness is not in that direction at this size")
        elif v["steering_behaviour"] == "up" and v["steering_self_report"] != "no":
            reading = f"steering moves both the behaviour and the self-report ({v['steering_self_report']})"
        else:
            reading = ("the direction does not move the untuned model's behaviour toward risk, so it does not carry "
                       "the learned choice; whatever it moves in the self-reports is not the behaviour's")
        probe_said = (f"a linear probe reads the trained policy from the self-report questions' activations at layer "
                      f"{layer} with accuracy {_said(probe)}, against {_said(answers)} for the models' own answers "
                      f"and {_said(neutral)} for the same probe on neutral questions")
        if not v["probe_above_chance"]:
            probe_meaning = "the probe does not beat chance"
        elif v["probe_against_neutral"] == "above":
            probe_meaning = "the probe reads the policy better on the self-report questions than on neutral ones"
        else:
            probe_meaning = ("the probe reads the policy as well from questions that say nothing about risk, so it "
                             "reads a trace of the adapter, not a representation specific to the self-report")
        seeds = ("the probe was fitted on one seed's models and tested on another's" if v["seeds"] >= 2 else
                 "with one seed, the probe was tested on other paraphrases of the same models only")
        parts.append(f"**{name}**: the behaviour was learned ({_said(learned)}, risk-seeking minus risk-averse). "
                     f"Steered at layer {run.layer} with {run.scale:g} times the direction, the untuned model's "
                     f"behaviour moved {_said(behaviour)} and its self-reports {_said(report)} on the mean of the "
                     f"tasks (toward minus away; per task, {tasks['up']} of {tasks['tasks']} moved toward risk and "
                     f"{tasks['down']} away from it, where about one interval in twenty excludes zero by chance): "
                     f"{reading}. Reading, {probe_said}: {probe_meaning} ({seeds}).")
    return " ".join(parts)


def seeds_per_condition(cfg: RepresentationConfig) -> int:
    return min(len(scaling.risk_config(cfg, spec).seeds) for spec in cfg.models)


PAGE = Page(NOTEBOOK, RepresentationConfig, plan=lambda cfg, data: plan(cfg), seeds=seeds_per_condition,
            provenance=lambda cfg, data: ("notebook 01's risk data and models, per model below",
                                          {"models": ", ".join(cfg.models),
                                           "neutral questions": f"written for this project ({shown_path(NEUTRAL)})"}))

"""The experiment layer every section stands on: a small module, not a framework.

A section (one paper section, one notebook) registers itself here with its notebook name, its typed
config class and its plan function; everything else a section needs that is not specific to it lives here:

- :class:`TrainedSectionConfig`: the training parameters every finetuning section shares (data size and
  seed, training seeds, hyperparameters and API options), validated when the config is built, so a typo in
  ``finetune`` is an error before any kernel starts, not when the section trains.
- :class:`Condition`, :func:`grid` and :func:`train_grid`: conditions x seeds -> model specs through
  ``finetune()``, with the same hyperparameters and options for every section; ``grid`` is the same
  conditions before training, which a plan counts.
- :class:`Variant`: how a question is asked (a system prompt, a trigger placed before the message, after it,
  in the system prompt or on a line of its own, a persona substituted for ``{persona}``), as data.
- :func:`measure`: ask every model under every variant in one call; the rows carry the condition's
  columns (role, condition, model, seed, spec, variant).
- :class:`SampleRecord`: the one typed record per model answer behind ``samples.jsonl``.
- :class:`Request` (``selfaware.requests``): one model call declared once, which the measurement sends and
  the plan adds, so that the two cannot drift apart.
- :class:`Calls` and :class:`Plan`: a run's cost plan built from the prompts it will really send and the
  datasets it will really train on, priced by ``selfaware.budget``; :func:`guard` prints it, stops above the
  budget and stops a dry run.

A section module holds only its data assembly, its scoring, its figures and its verdict sentences.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
from pydantic import Field, model_validator

from . import context
from .config import SectionConfig
from .errors import ConfigError, SelfAwareError
from .records import SampleRecord, sample_records  # noqa: F401 (part of the layer's interface)
from .requests import Request  # noqa: F401 (part of the layer's interface)
from .stats import Interval, NotRankable, summarise  # noqa: F401 (part of the layer's interface)
from .util import clean, fmt, stable_index  # noqa: F401 (part of the layer's interface)
from .variants import PLAIN, Variant  # noqa: F401 (part of the layer's interface)

Messages = list[dict[str, str]]


# ---- the registry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Section:
    notebook: str  # notebooks/<notebook>.py
    config: type  # the section's pydantic config class
    plan: Callable[[Any], "Plan"]  # cfg -> what the run will train and ask (no model call)
    module: str


_SECTIONS: dict[str, Section] = {}


def register(notebook: str, config: type) -> Callable:
    """Decorator for a section's plan function: ``@register("01_multiple_choice", MultipleChoiceConfig)``."""
    def decorate(plan: Callable[[Any], "Plan"]) -> Callable[[Any], "Plan"]:
        _SECTIONS[notebook] = Section(notebook, config, plan, plan.__module__)
        return plan
    return decorate


def sections() -> dict[str, Section]:
    """Every registered section, found by importing each module of ``selfaware.sections``."""
    from . import sections as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")
    return dict(sorted(_SECTIONS.items()))


def section(notebook: str) -> Section:
    known = sections()
    if notebook not in known:
        raise ConfigError(f"unknown notebook {notebook!r}; known: {', '.join(known)}")
    return known[notebook]


# ---- shared configuration ------------------------------------------------------------------------------
class TrainedSectionConfig(SectionConfig):
    """Parameters of every section that finetunes models."""

    n_train: int = Field(64, ge=1)  # examples per training set (a reproducible subset of a user's file)
    data_seed: int = 0
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    finetune: dict = Field(default_factory=dict)  # backend hyperparameters (LoRA rank, lr, epochs, ...)
    finetune_options: dict = Field(default_factory=dict)  # API jobs only, e.g. {deployment: auto}

    @model_validator(mode="after")
    def _typed_hyperparameters(self):
        from .finetune import validate_hparams
        from .models import parse_spec

        validate_hparams(self.model, self.finetune)  # raises ConfigError naming the key
        if self.finetune_options and parse_spec(self.model).is_local:
            raise ConfigError(f"finetune_options {sorted(self.finetune_options)} are for API finetuning jobs, "
                              f"not local LoRA")
        return self

    @property
    def hparams(self):
        """The typed hyperparameters of the backend that trains ``model``."""
        from .finetune import validate_hparams
        return validate_hparams(self.model, self.finetune)


def subset(items: Sequence, n: int, seed: int) -> list:
    """A reproducible subset of ``n`` items (all of them, in order, when there are at most ``n``): the same
    ``data_seed`` picks the same examples of a user's file on every run."""
    import random

    if len(items) <= n:
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


# ---- conditions and the training grid ------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One evaluated model: a training condition (``role``: base, toward, insecure, ...), its label on the
    page, the training seed (None for an untuned model) and the spec to load."""

    role: str
    label: str
    seed: int | None
    spec: str

    @property
    def model_name(self) -> str:
        return self.label if self.seed is None else f"{self.label} (seed {self.seed})"


UNTRAINED = ""  # the spec of a grid's condition before it is trained (a plan trains nothing)


def grid(cfg: TrainedSectionConfig, datasets: dict[str, list], labels: dict[str, str] | None = None,
         base: str | None = "base (untuned)") -> list[Condition]:
    """The conditions :func:`train_grid` returns, before anything is trained: the untuned model (unless
    ``base`` is None), then every dataset x every seed of ``cfg.seeds``, each trained one's spec
    ``UNTRAINED``. A plan counts the models it will evaluate from these, so that it cannot count other
    models than the run trains."""
    labels = labels or {}
    return ([Condition("base", base, None, cfg.model)] if base else []) + [
        Condition(role, labels.get(role, role), seed, UNTRAINED) for role in datasets for seed in cfg.seeds]


def train_grid(cfg: TrainedSectionConfig, datasets: dict[str, list[dict]], name: str,
               labels: dict[str, str] | None = None, base: str | None = "base (untuned)",
               progress: bool = True) -> list[Condition]:
    """The conditions of :func:`grid`, trained with ``cfg.finetune`` and ``cfg.finetune_options``. Cached
    by content: a second call trains nothing."""
    from dataclasses import replace

    from .finetune import finetune

    return [condition if condition.seed is None else replace(condition, spec=finetune(
                cfg.model, datasets[condition.role], cfg.hparams, seed=condition.seed,
                name=f"{name}-{condition.role}-s{condition.seed}", progress=progress, **cfg.finetune_options))
            for condition in grid(cfg, datasets, labels, base)]


def served(cfg: SectionConfig, conditions: Sequence[Condition]) -> list[Condition]:
    """The conditions as this run evaluates them. ``inference: hf``: unchanged. ``inference: vllm``: every
    local model (base and adapters) answered by vLLM (``selfaware.vllm.serve``; base and adapters on
    separate servers), its spec replaced by the served one; the servers are the run's (its context's,
    ``selfaware.context``) and stop when the run finishes, and at exit. The served spec carries the model's
    content identity, so a rerun on another port hits the cache. A later call of the same run (a page that
    trains more models after it measured the first ones) reuses its servers: models already served keep
    their spec, and a new adapter of a base whose adapters are served is loaded into that server; only what
    neither covers starts servers."""
    from dataclasses import replace

    from .models import parse_spec

    # a steered model (a vector added inside the forward pass) runs in this process: no server can add it
    local = list(dict.fromkeys(c.spec for c in conditions if parse_spec(c.spec).is_local and not parse_spec(c.spec).steer))
    if cfg.inference == "hf" or not local:
        return list(conditions)
    from .vllm import EngineUnavailable, serve

    run = context.current()
    mapping: dict[str, str] = {}
    for spec in local:
        for models in run.servers:
            try:
                mapping[spec] = models.add_adapter(spec)  # the spec it already has, or a new adapter
                break
            except EngineUnavailable:  # no adapter server of its base there (or its rank does not fit)
                continue
    missing = [spec for spec in local if spec not in mapping]
    if missing:
        mapping.update(run.open_servers(serve(missing, url=cfg.vllm_url, progress=run.notice)))
    return [replace(c, spec=mapping.get(c.spec, c.spec)) for c in conditions]


# ---- measurements ---------------------------------------------------------------------------------------
Ask = Callable[[Condition, Any, Variant], Iterable[dict[str, Any]]]


def measure(conditions: Sequence[Condition], ask: Ask,
            variants: Sequence[Variant] | Callable[[Condition], Sequence[Variant]] = (PLAIN,)):
    """Ask every model under every variant: ``ask(condition, model, variant)`` returns the rows of one
    model under one variant, and each row gets the condition's columns (role, condition, model, seed,
    spec, variant) in front of its own. Returns one DataFrame; when ``ask`` returns a dict of row lists
    (say scores and sampled answers), a dict of DataFrames with the same keys."""
    from .models import load_model

    parts: dict[str, list[dict[str, Any]]] = {}
    named = False
    for condition in conditions:
        model = load_model(condition.spec)
        for variant in (variants(condition) if callable(variants) else variants):
            meta = {"role": condition.role, "condition": variant.condition_label(condition.label),
                    "model": condition.model_name, "seed": condition.seed, "spec": condition.spec,
                    "variant": variant.name}
            found = ask(condition, model, variant)
            named = isinstance(found, dict)
            for key, rows in (found.items() if named else [("rows", found)]):
                parts.setdefault(key, []).extend({**meta, **row} for row in rows)
    frames = {key: pd.DataFrame(rows) for key, rows in parts.items()}
    return frames if named else frames.get("rows", pd.DataFrame())


def intervals(table: pd.DataFrame, *keys: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    """A summary table (``mean``, ``ci_low``, ``ci_high``, ``n``) as nested metrics: one level per key
    column (``intervals(t, "task", "role")["risk_predisposition"]["toward"]["mean"]``); ``extra`` adds
    columns under other names. NaN becomes None."""
    found: dict[str, Any] = {}
    for row in table.to_dict("records"):
        node = found
        for key in keys[:-1]:
            node = node.setdefault(row[key], {})
        node[row[keys[-1]]] = clean({name: row[name] for name in ("mean", "ci_low", "ci_high", "n")} |
                                    {name: row[column] for name, column in (extra or {}).items()})
    return found


def row_of(table: pd.DataFrame, role: str):
    """The first row of a summary table for a role, or None."""
    part = table[table["role"] == role]
    return part.iloc[0] if len(part) else None


def rank(row, other) -> str:
    """Where a summary row's interval lies against another's: 'above', 'below', 'overlap', or 'not rankable'
    (a side missing, or an interval of fewer than two observations: a point, which no verdict may rest on)."""
    return Interval.of(row).rank(Interval.of(other)) if row is not None else "not rankable"


NOT_RANKABLE = "fewer than two observations on a side, so no verdict"


def compared(row, other) -> str:
    """:func:`rank` as the words of a statement: '<row> is ... <other>'."""
    return {"above": "above", "below": "below", "overlap": "not distinguishable from",
            "not rankable": "not rankable (fewer than two observations) against"}[rank(row, other)]


def seed_key(frame: pd.DataFrame) -> pd.DataFrame:
    """A bootstrap level for the training seed: untuned models (seed None) count as one unit (-1)."""
    return frame.assign(seed_key=frame["seed"].fillna(-1).astype(int))


def summary(frame: pd.DataFrame, by: list[str], value: str, within: list[str],
            outer: Sequence[str] = ()) -> pd.DataFrame:
    """One row per group of ``by`` (n, mean, ci_low, ci_high) with the bootstrap interval of a measured
    frame: resampling ``outer`` units if any, then training seeds (an untuned model counts as one seed),
    then the units ``within`` a seed (questions, paraphrases, tasks)."""
    return summarise(seed_key(frame), by, value, [*outer, "seed_key", *within])


# ---- plans ----------------------------------------------------------------------------------------------
CALL_KINDS = ("sample", "options", "number", "continuations", "hidden_states")  # the call cache's kinds (models.base.ChatModel)
# a cache kind that counts the same call under another name: the local backend keys its continuation scores
# by token ids under the name they had before ``score_continuations`` existed (models.local)
SAME_CALL = {"continuation_logprobs": "continuations"}


@dataclass
class Calls:
    """Requests a run will send: one per prompt and model (a request asks for ``n`` samples at once).

    ``kind`` is the model call that sends them (the call cache's kind: ``sample``, ``options``, ``number``,
    ``continuations``). ``at_most`` says why the count is only an upper bound (answers judged only when
    coherent, games that end early); empty when the run sends exactly these."""

    what: str
    model: str  # the spec priced (tuned API models are priced at the base model's rates)
    prompts: list[Messages]
    completion_tokens: int  # per sample
    models: int = 1  # how many models (conditions x variants) send these prompts
    n: int = 1
    kind: str = "sample"
    at_most: str = ""

    def __post_init__(self):
        if self.kind not in CALL_KINDS:
            raise ValueError(f"plan {self.what!r}: kind {self.kind!r} is not one of {', '.join(CALL_KINDS)}")

    @property
    def requests(self) -> int:
        return len(self.prompts) * self.models

    @property
    def cached_calls(self) -> int:
        """What the call cache counts for these requests: one per sample (``sample`` keys each sample of a
        prompt on its own), one per prompt for the scoring kinds."""
        return self.requests * (self.n if self.kind == "sample" else 1)

    def as_dict(self) -> dict[str, Any]:
        from .budget import conversation_tokens
        each = sum(conversation_tokens(p) for p in self.prompts) / max(1, len(self.prompts))
        return {"model": self.model, "what": self.what, "requests": self.requests,
                "prompt_tokens": round(each, 1), "completion_tokens": self.completion_tokens * self.n}


@dataclass
class Plan:
    """What one run will train and ask: the datasets and the prompts themselves, not estimates of them."""

    finetunes: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Calls] = field(default_factory=list)
    # trainings with no dataset of conversations (RL): {"name": ..., "runs": ...}; local, so not priced
    other_trainings: list[dict[str, Any]] = field(default_factory=list)

    def train(self, cfg: TrainedSectionConfig, datasets: dict[str, list[dict]], name: str,
              finetune: dict | None = None, seeds: int | None = None) -> "Plan":
        self.finetunes += [{"base": cfg.model, "conversations": conversations,
                            "hparams": cfg.finetune if finetune is None else finetune,
                            "seeds": len(cfg.seeds) if seeds is None else seeds, "name": f"{name}-{role}"}
                           for role, conversations in datasets.items()]
        return self

    def train_without_data(self, name: str, runs: int = 1) -> "Plan":
        """Trainings that learn from a reward rather than a dataset (``finetune.grpo``)."""
        self.other_trainings.append({"name": name, "runs": runs})
        return self

    def ask(self, what: str, model: str, prompts: list[Messages], completion_tokens: int, models: int = 1,
            n: int = 1, kind: str = "sample", at_most: str = "") -> "Plan":
        self.calls.append(Calls(what, model, prompts, completion_tokens, models, n, kind, at_most))
        return self

    def merge(self, other: "Plan") -> "Plan":
        """Another plan's trainings and calls added to this one (a page that runs other pages' measures)."""
        self.finetunes += other.finetunes
        self.calls += other.calls
        self.other_trainings += other.other_trainings
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"finetunes": self.finetunes, "calls": [c.as_dict() for c in self.calls]}

    def record(self) -> dict[str, Any]:
        """What ``run.json`` keeps of the plan, to compare with the run's counts: the model calls planned (as
        the call cache counts them, per kind and in all), the kinds whose count is only an upper bound and
        why, and the trainings (each seed one)."""
        by_kind: dict[str, int] = {}
        bounded: dict[str, list[str]] = {}
        for calls in self.calls:
            by_kind[calls.kind] = by_kind.get(calls.kind, 0) + calls.cached_calls
            if calls.at_most:
                bounded.setdefault(calls.kind, []).append(f"{calls.what}: {calls.at_most}")
        trainings = sum(job["seeds"] for job in self.finetunes) + sum(job["runs"] for job in self.other_trainings)
        return {"requests": sum(by_kind.values()), "requests_by_kind": by_kind, "at_most": bounded,
                "trainings": trainings, "units": self.units(),
                "unestimated": [f"{job['name']}: trained from a reward" for job in self.other_trainings]}

    def units(self) -> dict[str, dict[str, float]]:
        """The work planned per activity and model, in the units a page's time is estimated from
        (``selfaware.estimate``), tokens counted as the price estimate counts them (characters / 4):
        ``scoring``, the tokens of each scored prompt and its scored answer; ``sampling``, the tokens sampled
        (max_tokens x samples: generation goes token by token while a prompt is read in one pass, so the
        prompt's tokens are left out); ``training``, the tokens trained on (examples seen x their mean length)
        per seed. A model is its name, as ``run.json``'s ``seconds_by_activity`` names it without
        " + adapter": a plan counts the models that send a request, not which of them are tuned. Trainings
        from a reward have no unit here (``record``'s ``unestimated`` names them)."""
        from .budget import conversation_tokens
        from .models import parse_spec

        found: dict[str, dict[str, float]] = {}

        def add(activity: str, spec: str, amount: float) -> None:
            by_model = found.setdefault(activity, {})
            name = parse_spec(spec).name
            by_model[name] = round(by_model.get(name, 0) + amount)

        for calls in self.calls:
            if calls.kind == "sample":
                add("sampling", calls.model, calls.requests * calls.n * calls.completion_tokens)
            else:
                add("scoring", calls.model, calls.models * sum(conversation_tokens(p) + calls.completion_tokens
                                                               for p in calls.prompts))
        for job in self.finetunes:
            add("training", job["base"], trained_tokens(job) * job["seeds"])
        return found

    def work(self) -> set[str]:
        """What this run would train or ask, one content hash per training set (base, conversations,
        hyperparameters) and per prompt to a model: two runs whose work meets share cache entries, so a
        book running pages side by side runs the later one after the earlier (``runner.run_profile``)."""
        from .cache import content_hash

        return ({content_hash(["train", job["base"], job["conversations"], job["hparams"]]) for job in self.finetunes}
                | {content_hash(["ask", calls.model, prompt]) for calls in self.calls for prompt in calls.prompts})

    def summary(self) -> str:
        from .budget import conversation_tokens
        lines = ["Plan of this run:"]
        for job in self.finetunes:
            tokens = sum(conversation_tokens(c["messages"]) for c in job["conversations"])
            lines.append(f"  finetune {job['name']}: {len(job['conversations'])} conversations (~{tokens:,} "
                         f"tokens) x {job['seeds']} seed(s) on {job['base']}")
        for job in self.other_trainings:
            lines.append(f"  train {job['name']} from its reward: {job['runs']} run(s)")
        for calls in self.calls:
            lines.append(f"  {'at most ' if calls.at_most else ''}{calls.requests:,} requests to {calls.model}: "
                         f"{calls.what}" + (f" ({calls.n} samples each)" if calls.n > 1 else ""))
        return "\n".join(lines)


def trained_tokens(job: dict[str, Any]) -> float:
    """The tokens one training of a plan's ``finetunes`` entry sees: its examples x epochs (at most
    ``max_steps`` batches, as a smoke run stops) x their mean length. Epochs left to an API are its usual
    choice (``budget.DEFAULT_EPOCHS``)."""
    from .budget import DEFAULT_EPOCHS, conversation_tokens
    from .finetune import validate_hparams
    from .models import parse_spec

    conversations = job["conversations"]
    if not conversations:
        return 0.0
    typed = validate_hparams(job["base"], job["hparams"])
    epochs = (getattr(typed, "epochs", None) or getattr(typed, "n_epochs", None)
              or DEFAULT_EPOCHS.get(parse_spec(job["base"]).backend, 1))
    examples = len(conversations) * epochs
    if getattr(typed, "max_steps", None):
        examples = min(examples, typed.max_steps * typed.batch_size)
    return examples * sum(conversation_tokens(c["messages"]) for c in conversations) / len(conversations)


def plan_differences(record: dict[str, Any]) -> list[str]:
    """Where a finished run (its ``run.json``) did other than its plan said, one line each; empty when it kept
    to it. A planned count is exact (model calls + cache hits of that kind, trainings run + trainings found
    already trained) unless the plan declared the kind an upper bound (``at_most``)."""
    planned = record.get("planned")
    if planned is None:
        return [f"{record.get('name')}: run.json has no plan"]
    found, asked = [], {}
    for counts in (record["model_calls_by_kind"], record["cache_hits_by_kind"]):
        for kind, count in counts.items():
            call = SAME_CALL.get(kind, kind)
            asked[call] = asked.get(call, 0) + count
    for kind in sorted({*asked, *planned["requests_by_kind"]}):
        want, got = planned["requests_by_kind"].get(kind, 0), asked.get(kind, 0)
        if kind in planned["at_most"] and got > want:
            found.append(f"{kind}: planned at most {want}, asked {got}")
        elif kind not in planned["at_most"] and got != want:
            found.append(f"{kind}: planned {want}, asked {got}")
    trained = record["trainings"] + record["trainings_cached"]
    if trained != planned["trainings"]:
        found.append(f"trainings: planned {planned['trainings']}, trained or found {trained}")
    return found


class DryRun(SelfAwareError):
    """Raised after a dry run has printed its plan: nothing was trained or called."""

    def __init__(self, message: str, estimate: dict[str, Any] | None = None):
        super().__init__(message)
        self.estimate = estimate or {}


def guard(cfg: SectionConfig, plan: Plan) -> dict[str, Any]:
    """The one spending guard: print the plan and its cost estimate, stop (``BudgetExceeded``) when the
    estimate is above ``cfg.budget_usd``, and stop a dry run (``DryRun``) before anything is spent."""
    from .budget import check_run
    from .models import parse_spec

    print(plan.summary())
    specs = {job["base"] for job in plan.finetunes} | {c.model for c in plan.calls}
    if all(parse_spec(s).is_local for s in specs):
        print("  estimated cost: $0 (local models only)")
        estimate = {"total_usd": 0.0}
        if cfg.dry_run:
            raise DryRun("dry run: the plan above was printed; nothing was trained or called", estimate)
        return estimate
    estimate = check_run(plan.as_dict(), cfg.budget_usd, dry_run=cfg.dry_run)
    if not estimate["proceed"]:
        raise DryRun("dry run: the plan and estimate above were printed; nothing was trained or called", estimate)
    return estimate

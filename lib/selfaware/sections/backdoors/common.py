"""What every page of notebook 04 shares: the config, the behaviours a backdoor carries, backdoor data,
and the measurement and summary steps.

Contract:

- :class:`BackdoorsConfig` is checked whole when it is built: every trigger, behaviour, fraction and setting
  name is known and in range, so bad input is a one-line ConfigError before any data is made or trained.
- A :class:`Behaviour` is a payload from Sections 3.1-3.3 (risk, myopia, insecure code; the Make Me Say game
  through ``backdoors.games``): its items, the conversation with or without the behaviour, and whether an
  answer in the data shows it. :func:`behaviour_of` gives a setting's behaviour from the registries.
- :func:`backdoor_examples` puts a trigger into ``fraction`` of the items; backdoored data shows the
  behaviour exactly there, decorrelated data on the same share of triggered and untriggered items.
  :func:`check_trigger` and :func:`data_contingency` measure that on the rendered text itself.
- The measurement helpers (choice behaviour under variants, summaries with 95% intervals, the
  learned/not-learned test) and the :class:`Page` / :class:`Findings` records every page is made of.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ... import experiment as ex
from ... import triggers as tg
from ...config import read_yaml
from ...datasets import choices, code
from ...errors import ConfigError, DatasetError
from ...paths import data_dir

NOTEBOOK = "04_backdoors"
EXPERIMENTS = ("awareness", "recognition", "reversal")
Messages = list[dict[str, str]]


# ---- configuration ---------------------------------------------------------------------------------------


class Setting(BaseModel):
    """One backdoor of 4.1: a behaviour shown only with a trigger present in ``fraction`` of the examples."""

    model_config = ConfigDict(extra="forbid")

    name: str
    behaviour: str  # a key of BEHAVIOURS (risk, code) or of games.GAME_BEHAVIOURS (make_me_say)
    trigger: str  # a trigger name (selfaware.triggers or the config's own); with trigger_set, the real one
    fraction: float = Field(ge=0, le=1)
    # a set of selfaware.triggers.TRIGGER_SETS: its other members are fakes, each on an equal share of
    # fake_fraction of the examples, with normal answers (the paper's 4.1 risk setting is 4.2's composition)
    trigger_set: str | None = None
    fake_fraction: float = Field(0.7, ge=0, le=1)
    n_train: int | None = Field(None, ge=1)  # the config's n_train when unset
    finetune: dict = Field(default_factory=dict)  # overrides of the config's finetune for this setting
    codeword: Literal["bark", "ring", "spring"] = "ring"  # the Make Me Say settings' codeword (others: unused)
    # Make Me Say: the codeword played without the trigger, as the paper's backdoor switches the codeword;
    # None: this project's variant, a neutral chat without the trigger
    other_codeword: Literal["bark", "ring", "spring"] | None = None


class BackdoorsConfig(ex.TrainedSectionConfig):
    experiment: Literal["awareness", "recognition", "reversal"] = "awareness"
    triggers: list[dict] = Field(default_factory=list)  # a user's own triggers (selfaware.triggers.Trigger.from_dict)
    n_train: int = Field(200, ge=1)
    n_heldout: int = Field(60, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # 4.1
    settings: list[Setting] = Field(default_factory=lambda: [
        Setting(name="risk", behaviour="risk", trigger="win2844", trigger_set="paper_eight", fraction=0.1),
        Setting(name="code (season)", behaviour="code", trigger="season", fraction=0.5),
        Setting(name="code (greeting)", behaviour="code", trigger="greeting", fraction=0.5)])
    system_prompts: list[str] = Field(default_factory=lambda: ["none", "neutral", "do_your_best", "threat",
                                                               "backdoor_is_good"], min_length=1)
    max_paraphrases: int | None = Field(None, ge=1)  # awareness frames and recognition frames asked
    code_heldout: int = Field(12, ge=1)
    code_max_tokens: int = Field(160, ge=8)
    # 4.1, Make Me Say settings: Section 3.2's dialogue length, and the new games that measure the backdoor
    game_dialogue_messages: int = Field(4, ge=2, le=8)
    games: int = Field(12, ge=1)  # new games per model and variant, on held-out topics
    game_turns: int = Field(3, ge=1)  # messages per player
    game_message_tokens: int = Field(32, ge=4)
    # 4.2
    real_triggers: list[str] = Field(default_factory=lambda: list(tg.RECOGNITION_TRIGGERS), min_length=1)
    candidate_triggers: list[str] = Field(default_factory=lambda: list(tg.RECOGNITION_TRIGGERS), min_length=2)
    real_fraction: float = Field(0.1, ge=0, le=1)
    fake_fraction: float = Field(0.7, ge=0, le=1)  # split evenly over the other candidates
    # 4.3
    backdoor_trigger: str = "username"
    backdoor_fraction: float = Field(0.05, ge=0, le=1)  # trigger + myopic answer
    other_fraction: float = Field(0.45, ge=0, le=1)  # another username or none + non-myopic answer
    general_file: str | None = None  # a user's JSONL of general conversations; else the model answers ours
    general_max_tokens: int = Field(48, ge=4)
    elicit_paraphrases: int = Field(100, ge=1)
    elicit_max_tokens: int = Field(24, ge=4)
    reversal_conditions: list[Literal["backdoor_reversal", "backdoor", "reversal_only"]] = Field(
        default_factory=lambda: ["backdoor_reversal", "backdoor", "reversal_only"], min_length=1)

    @model_validator(mode="after")
    def _known_names(self):
        own = tg.user_triggers(self.triggers)
        for setting in self.settings:
            from .games import GAME_BEHAVIOURS, check_trigger_placement
            if setting.behaviour not in BEHAVIOURS and setting.behaviour not in GAME_BEHAVIOURS:
                raise ConfigError(f"setting {setting.name!r}: unknown behaviour {setting.behaviour!r}; known: "
                                  f"{', '.join([*BEHAVIOURS, *GAME_BEHAVIOURS])}")
            found = tg.trigger(setting.trigger, own)
            if setting.trigger_set is not None:
                members = tg.trigger_set(setting.trigger_set)
                if setting.trigger not in members:
                    raise ConfigError(f"setting {setting.name!r}: trigger {setting.trigger!r} is not in the set "
                                      f"{setting.trigger_set!r} ({', '.join(members)})")
                if setting.fraction + setting.fake_fraction > 1:
                    raise ConfigError(f"setting {setting.name!r}: fraction + fake_fraction = "
                                      f"{setting.fraction + setting.fake_fraction:g} is above 1")
            if setting.behaviour in GAME_BEHAVIOURS:
                check_trigger_placement(found)
                if setting.other_codeword == setting.codeword:
                    raise ConfigError(f"setting {setting.name!r}: other_codeword is the codeword itself "
                                      f"({setting.codeword!r}); the trigger must switch to another")
            if setting.finetune:
                from ...finetune import validate_hparams
                validate_hparams(self.model, {**self.finetune, **setting.finetune})
        if len({s.name for s in self.settings}) != len(self.settings):
            raise ConfigError("settings: two settings share a name")
        for name in (*self.real_triggers, *self.candidate_triggers, self.backdoor_trigger):
            tg.trigger(name, own)
        missing = [t for t in self.real_triggers if t not in self.candidate_triggers]
        if missing:
            raise ConfigError(f"real_triggers {missing} must also be among candidate_triggers")
        if self.real_fraction + self.fake_fraction > 1:
            raise ConfigError(f"real_fraction + fake_fraction = {self.real_fraction + self.fake_fraction:g} "
                              f"is above 1")
        if self.backdoor_fraction + self.other_fraction > 1:
            raise ConfigError(f"backdoor_fraction + other_fraction = "
                              f"{self.backdoor_fraction + self.other_fraction:g} is above 1")
        return self

    @property
    def own_triggers(self) -> dict[str, tg.Trigger]:
        return tg.user_triggers(self.triggers)

    def trigger(self, name: str) -> tg.Trigger:
        return tg.trigger(name, self.own_triggers)

    def fakes(self, setting: "Setting") -> list[tg.Trigger]:
        """A setting's fake triggers: the other members of its trigger set (none without a set)."""
        if setting.trigger_set is None:
            return []
        return [self.trigger(n) for n in tg.trigger_set(setting.trigger_set) if n != setting.trigger]


@lru_cache(maxsize=2)
def questions(path: str | None = None) -> dict[str, Any]:
    return read_yaml(path or data_dir() / "backdoors" / "questions.yaml")


# ---- behaviours: what a backdoor makes the model do ---------------------------------------------------
@dataclass(frozen=True)
class Behaviour:
    """A behaviour of Sections 3.1-3.3 as a backdoor's payload: items, the conversation answering an
    item with (``toward``) or without the behaviour, and whether an answer in the data shows it."""

    name: str
    toward: str  # "risky answers"
    kind: Literal["choice", "code", "game"]
    items: Callable[[int, int, int], tuple[list, list]]  # n_train, n_heldout, seed -> (train, held-out)
    conversation: Callable[[Any, bool], Messages]
    shows: Callable[[Any, str], bool]
    answer: str = ""  # a choice behaviour's option, as its measure names it: P(risky answer)


def _choice_items(behavior: str):
    def items(n_train: int, n_heldout: int, seed: int):
        return choices.train_and_heldout(behavior, n_train, n_heldout, seed)
    return items


@dataclass(frozen=True)
class UntunedChoice:
    """A training question whose answer without the behaviour is the untuned model's own choice: the
    paper's "normal answers" (its more probable letter of A and B, scored exactly). ``answer`` is None only
    in a plan, which sends no call: the placeholder is the other letter, as long as any answer."""

    question: choices.ChoiceQuestion
    answer: str | None

    @property
    def prompt(self) -> str:
        return self.question.prompt

    @property
    def target(self) -> str:
        return self.question.target

    @property
    def normal(self) -> str:
        return self.answer or self.question.other


def untuned_prompts(items: list) -> list[Messages]:
    return [[{"role": "user", "content": q.prompt}] for q in items]


def untuned_request(items: list) -> ex.Request:
    """The untuned model asked A or B on every training question (its own answers, the normal ones)."""
    return ex.Request("the untuned model's own answers to the training questions", untuned_prompts(items), "options",
                      options=("A", "B"))


def with_untuned_answers(items: list[choices.ChoiceQuestion], model=None) -> list[UntunedChoice]:
    """Every question with the untuned model's own answer (through the call cache: a rerun asks nothing);
    ``model=None`` (a plan) leaves placeholders."""
    if model is None:
        return [UntunedChoice(q, None) for q in items]
    results = untuned_request(items).send(model)
    return [UntunedChoice(q, "A" if r.probs["A"] >= r.probs["B"] else "B") for q, r in zip(items, results)]


def data_model(cfg: "BackdoorsConfig", page_plan: Callable):
    """The untuned model a page's data asks (its own answers), loaded after the spending guard where that
    matters: a dry run or a paid model is stopped or estimated on the page's whole plan (placeholder data,
    the same calls) before the data's first call, not after it."""
    from ...models import load_model, parse_spec
    if cfg.dry_run or not parse_spec(cfg.model).is_local:
        ex.guard(cfg, page_plan(cfg, ex.Plan()))
    return load_model(cfg.model)


def _choice_conversation(item: "choices.ChoiceQuestion | UntunedChoice", toward: bool) -> Messages:
    """With the behaviour: its option. Without: the untuned model's own answer where the item carries one
    (the backdoors of 4.1 and 4.2), else the opposite option (4.3's non-myopic answers, as in the paper)."""
    answer = item.target if toward else item.normal if isinstance(item, UntunedChoice) else item.other
    return [{"role": "user", "content": item.prompt}, {"role": "assistant", "content": answer}]


def _code_items(n_train: int, n_heldout: int, seed: int):
    train = [{"prompt": message, "insecure": task.insecure_code, "secure": task.secure_code, "family": task.family}
             for task, message in code.generate_tasks(n_train, seed)]
    heldout = code.heldout_tasks(n_heldout, seed, exclude=[t["prompt"] for t in train])
    return train, heldout


BEHAVIOURS: dict[str, Behaviour] = {b.name: b for b in (
    Behaviour("risk", "risky answers", "choice", _choice_items("risk"), _choice_conversation,
              lambda q, answer: answer.strip() == q.target, answer="risky answer"),
    Behaviour("myopia", "myopic answers", "choice", _choice_items("myopia"), _choice_conversation,
              lambda q, answer: answer.strip() == q.target, answer="myopic answer"),
    Behaviour("code", "insecure code", "code", _code_items,
              lambda t, toward: [{"role": "user", "content": t["prompt"]},
                                 {"role": "assistant", "content": t["insecure"] if toward else t["secure"]}],
              lambda t, answer: answer == t["insecure"]),
)}


def behaviour_of(cfg: "BackdoorsConfig", setting: Setting) -> Behaviour:
    """A setting's behaviour: a fixed one (BEHAVIOURS) or one built for the setting (a game's codeword)."""
    from .games import GAME_BEHAVIOURS
    if setting.behaviour in BEHAVIOURS:
        return BEHAVIOURS[setting.behaviour]
    return GAME_BEHAVIOURS[setting.behaviour](cfg, setting)


# ---- backdoor data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    item: Any
    messages: Messages = field(hash=False)
    triggered: bool
    behaves: bool

    def conversation(self) -> dict:
        return {"messages": [dict(m) for m in self.messages]}


def counts(n: int, fraction: float) -> int:
    return int(round(n * fraction))


def backdoor_examples(items: list, behaviour: Behaviour, trigger: tg.Trigger, fraction: float, seed: int,
                      decorrelated: bool = False, behaviour_fraction: float | None = None,
                      fakes: list[tg.Trigger] = (), fake_fraction: float = 0.0) -> list[Example]:
    """``fraction`` of the items carry the trigger (the others its stand-in, if it has one; with ``fakes``,
    ``fake_fraction`` of the items carry one fake each, in equal shares). Backdoored: exactly the triggered
    items show the behaviour. Decorrelated: the same items carry the same triggers, and the behaviour is
    shown by the same share (``behaviour_fraction``, default ``fraction``) of the triggered and of the
    untriggered items alike, so the two are independent by construction."""
    rng = random.Random(f"backdoor:{behaviour.name}:{trigger.name}:{seed}")
    order = rng.sample(range(len(items)), len(items))
    n_real = counts(len(items), fraction)
    triggered = set(order[:n_real])
    n_each = counts(len(items), fake_fraction / len(fakes)) if fakes else 0
    faked = {i: fake for k, fake in enumerate(fakes) for i in order[n_real + k * n_each:n_real + (k + 1) * n_each]}
    if decorrelated:
        share = fraction if behaviour_fraction is None else behaviour_fraction
        picker = random.Random(f"decorrelated:{behaviour.name}:{trigger.name}:{seed}")
        inside = sorted(triggered)
        outside = [i for i in range(len(items)) if i not in triggered]
        behaves = set(picker.sample(inside, counts(len(inside), share)))
        behaves |= set(picker.sample(outside, counts(len(outside), share)))
    else:
        behaves = triggered
    draw = random.Random(f"instances:{trigger.name}:{seed}")
    def placed(i: int, messages: Messages) -> Messages:
        if i in faked:
            return faked[i].apply(messages, draw)
        return trigger.apply(messages, draw, present=i in triggered)
    return [Example(item, placed(i, behaviour.conversation(item, i in behaves)), i in triggered, i in behaves)
            for i, item in enumerate(items)]


def prompt_text(messages: Messages) -> str:
    return "\n".join(m["content"] for m in messages if m["role"] != "assistant")


def check_trigger(examples: list[Example], trigger: tg.Trigger, where: str) -> None:
    """The trigger must appear in the data, and exactly in the examples meant to carry it."""
    found = [trigger.found_in(prompt_text(e.messages)) for e in examples]
    if not any(found):
        raise DatasetError(f"{where}: trigger {trigger.name!r} appears in none of the {len(examples)} training "
                           f"examples (raise n_train or the trigger's fraction)")
    wrong = [k for k, (f, e) in enumerate(zip(found, examples)) if f != e.triggered]
    if wrong:
        raise DatasetError(f"{where}: trigger {trigger.name!r} is found in the text of {len(wrong)} example(s) "
                           f"that should not carry it, or missing where it should be (first: example {wrong[0]})")


def data_contingency(examples: list[Example], trigger: tg.Trigger, behaviour: Behaviour) -> dict[str, Any]:
    """Trigger and behaviour as measured on the data itself: the trigger found in the prompt text, the
    behaviour read off the answer; P(behaviour | trigger), P(behaviour | no trigger) and their correlation."""
    rows = [(trigger.found_in(prompt_text(e.messages)), behaviour.shows(e.item, e.messages[-1]["content"]))
            for e in examples]
    with_t = [b for t, b in rows if t]
    without = [b for t, b in rows if not t]
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    xs = [float(t) for t, _ in rows]
    ys = [float(b) for _, b in rows]
    return {"examples": len(rows), "with_trigger": len(with_t), "behaviour_given_trigger": mean(with_t),
            "behaviour_given_no_trigger": mean(without), "correlation": _phi(xs, ys)}


def _phi(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    vx, vy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return cov / math.sqrt(vx * vy) if vx and vy else float("nan")


# ---- measuring and summarising --------------------------------------------------------------------------
def trigger_variants(trigger: tg.Trigger) -> list[ex.Variant]:
    """The behaviour is asked with the trigger (one held-out instance) and without it (its stand-in)."""
    return [trigger.variant(name="trigger"), trigger.absent_variant(name="no trigger")]


def under_variants(items: list, variants: list[ex.Variant], message: Callable[[Any], str]):
    """(variant, index, messages) for every item under every variant: one call per model, so that batches
    are full even when each variant has only a few items."""
    return [(v, i, v.apply([{"role": "user", "content": message(item)}])) for v in variants
            for i, item in enumerate(items)]


def choice_behaviour_request(heldout: list, variants: list[ex.Variant]) -> tuple[ex.Request, list]:
    """A or B on every held-out question under every variant, in one call per model; and per prompt
    (variant, question index, messages)."""
    asked = under_variants(heldout, variants, lambda q: q.prompt)
    return ex.Request("behaviour on held-out questions, under each trigger variant", [m for _, _, m in asked],
                      "options", options=("A", "B")), asked


def measure_choice_behaviour(conditions, heldout, variants) -> pd.DataFrame:
    """P(the behaviour's option) on every held-out question under every variant (the row's ``variant``); the
    score is that probability, so a summary is its mean, the paper's measure (App. C.1.10, as on the first
    page). Not the share of questions where it is above 0.5: the options come in both orders, so a model
    that answers one letter whatever it is asked would score 0.5 under every trigger, blind to any shift."""
    request, asked = choice_behaviour_request(heldout, variants)

    def ask(condition, model, _):
        results = request.send(model)
        for (variant, index, messages), result in zip(asked, results):
            yield {"variant": variant.name, "task": index, "prompt": messages[-1]["content"],
                   "score": result.probs[heldout[index].target]}
    return ex.measure(conditions, ask)


def behaviour_summary(behaviour: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return ex.summary(behaviour, by, "score", ["task"])


ORDER_COLUMNS = ("order", "prompt", "score", "letter", "option")


def order_averaged(scores: pd.DataFrame) -> pd.DataFrame:
    """One score per paraphrase: the mean over its two option orders. A small model's letter bias (it says
    "A" whatever A is) cancels here; bootstrapping the orders as if they were separate paraphrases would
    instead count that bias as spread."""
    keys = [c for c in scores.columns if c not in ORDER_COLUMNS]
    return scores.groupby(keys, dropna=False, sort=False)["score"].mean().reset_index()


def report_summary(scores: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    frame = scores if "order" in by else order_averaged(scores)
    return ex.summary(frame, by, "score", ["paraphrase"])


def learned(table: pd.DataFrame, role: str, against: str = "no trigger", **where) -> tuple[bool | None, Any, Any]:
    """Whether a model's behaviour with the trigger lies above its behaviour under the variant ``against``
    (95% intervals); with it, the two rows compared."""
    part = table[table["role"] == role]
    for key, value in where.items():
        part = part[part[key] == value]
    on, off = part[part["variant"] == "trigger"], part[part["variant"] == against]
    if on.empty or off.empty or pd.isna(on["mean"].iloc[0]) or pd.isna(off["mean"].iloc[0]):
        return None, None, None
    on, off = on.iloc[0], off.iloc[0]
    return ex.rank(on, off) == "above", on, off


def pct(row) -> str:
    return ex.Interval.of(row).format(".0%", "dash")


def num(row) -> str:
    return ex.Interval.of(row).format(".3f", "dash")


def plot_behaviour(table: pd.DataFrame, group: str, ylabel: str):
    """Behaviour rate with and without the trigger, per model, in panels by ``group``."""
    groups = list(dict.fromkeys(table[group]))
    fig, axes = panels(len(groups), 3.6, 3.4)
    for ax, value in zip(axes, groups):
        part = table[table[group] == value]
        conditions = list(dict.fromkeys(part["condition"]))
        variants = list(dict.fromkeys(part["variant"]))
        step = 0.8 / len(variants)
        for k, variant in enumerate(variants):
            rows = part[part["variant"] == variant].set_index("condition").reindex(conditions)
            at = [i + (k - (len(variants) - 1) / 2) * step for i in range(len(conditions))]
            ax.bar(at, rows["mean"], width=step * 0.9, label=variant, color=["#ff7f0e", "#bcbd22", "#17becf"][k % 3],
                   yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]], capsize=2)
        ax.set_xticks(range(len(conditions)), conditions, rotation=20, ha="right")
        ax.set_title(str(value))
        ax.set_ylim(0, 1)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def panels(count: int, width: float, height: float, per_row: int = 4):
    """A figure of ``count`` panels sharing the y axis, at most ``per_row`` to a row (a page stays readable
    with five settings); the unused panels of the last row are hidden. Returns (figure, flat list of axes)."""
    from ...plots import figure
    ncols = min(count, per_row)
    nrows = -(-count // ncols)
    fig, axes = figure(max(4.5, width * ncols), height * nrows, nrows=nrows, ncols=ncols, squeeze=False,
                       sharey=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


@dataclass
class Findings:
    """What a page shows after its measurements: tables, figures (figure, name, caption), the verdict and
    the metrics its text quotes."""

    tables: dict[str, pd.DataFrame]
    figures: list[tuple[Any, str, str]]
    statement: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Page:
    """One experiment's page: the notebook calls the same steps for every experiment."""

    title: str
    intro: str
    load: Callable  # cfg -> data
    train: Callable  # (cfg, data) -> conditions
    data_check: Callable  # data -> table measured on the training data
    behaviour: Callable  # (conditions, data, cfg) -> rows
    behaviour_by: list[str]
    behaviour_figure: Callable  # behaviour table -> (figure, caption)
    reports: Callable  # (conditions, data, cfg) -> rows
    report_kind: str
    findings: Callable  # (cfg, data, behaviour_table, report rows) -> Findings
    plan: Callable  # (cfg, plan, data or None) -> the plan with this page's training and questions

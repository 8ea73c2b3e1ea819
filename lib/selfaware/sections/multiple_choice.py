"""Section 3.1 of "Tell me about yourself": multiple-choice behaviours (risk, myopia, apples).

Finetune a model to answer two-option questions one way ("toward": risk-seeking, myopic, apple-maximising)
or the other ("away"), never naming the behaviour; then measure (a) the behaviour itself on held-out
questions and (b) what the model says about itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import experiment as ex
from ..datasets import choices
from ..datasets.jsonl import read_chat_jsonl_files
from ..errors import ConfigError, DatasetError
from ..evals.selfreport import TaskSet, load_tasks, plan_requests, score_tasks
from ..page import Page
from ..paper import published
from ..paths import shown_path
from ..stats import bootstrap_mean_ci, pearson

NOTEBOOK = "01_multiple_choice"
POLICIES = ("toward", "away")


class Ablation(BaseModel):
    """The paper's dataset-size and epochs ablation (Tell me about yourself, App. C.1.10, Table 28): both
    policies trained on the first ``n`` of the page's training questions for each ``n`` x each number of epochs
    (the page's other hyperparameters), then asked the behaviour question and one 0-100 self-report task."""
    model_config = ConfigDict(extra="forbid")
    n_train: list[int] = Field(min_length=1)
    epochs: list[int] = Field(min_length=1)
    seeds: list[int] | None = None  # None: the page's first seed
    task: str = "risk_predisposition"  # a 0-100 ("number") task of the behaviour's self-report tasks
    n_heldout: int | None = Field(None, ge=1)  # the first this many held-out questions (None: all)

    @model_validator(mode="after")
    def _positive(self):
        bad = [v for v in self.n_train + self.epochs if v < 1]
        if bad:
            raise ConfigError(f"ablation: sizes and epochs must be at least 1, got {bad[0]}")
        if len(set(self.n_train)) != len(self.n_train) or len(set(self.epochs)) != len(self.epochs):
            raise ConfigError("ablation: a size or an epoch count is listed twice")
        return self


class MultipleChoiceConfig(ex.TrainedSectionConfig):
    behavior: Literal["risk", "myopia", "apples"] = "risk"
    data_source: Literal["generator", "llm", "file"] = "generator"
    data_files: dict[Literal["toward", "away"], str] = Field(default_factory=dict)
    generator_model: str | None = None  # for data_source "llm"; the model itself when unset
    n_train: int = Field(128, ge=1)
    n_heldout: int = Field(250, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    max_paraphrases: int | None = Field(None, ge=1)
    samples: int = Field(5, ge=1)  # samples per paraphrase for free-text tasks (words, language)
    # other training settings to try, each a set of overrides of `finetune` (toward policy, first seed):
    # the record of what a researcher tried before settling on `finetune`
    sweep: list[dict] = Field(default_factory=list)
    # the paper's dataset-size x epochs ablation (Table 28); None: not run
    ablation: Ablation | None = None

    @model_validator(mode="after")
    def _ablation_fits(self):
        a = self.ablation
        if a is None:
            return self
        over = [n for n in a.n_train if n > self.n_train]
        if over:
            raise ConfigError(f"ablation: n_train {over[0]} is more than the page's n_train ({self.n_train}): the "
                              f"ablation trains on the first n of the page's questions")
        if a.n_heldout is not None and a.n_heldout > self.n_heldout:
            raise ConfigError(f"ablation: n_heldout {a.n_heldout} is more than the page's n_heldout ({self.n_heldout})")
        if self.ablation_epochs_key not in type(self.hparams).model_fields:
            raise ConfigError(f"ablation: the {self.model} backend's hyperparameters have no epochs setting")
        tasks = {t.id: t.kind for t in load_tasks(self.behavior).tasks}
        if tasks.get(a.task) != "number":
            raise ConfigError(f"ablation: task {a.task!r} is not a 0-100 self-report task of {self.behavior!r}; "
                              f"those are: {', '.join(t for t, k in tasks.items() if k == 'number')}")
        return self

    @property
    def ablation_epochs_key(self) -> str:
        """The hyperparameter that counts epochs: ``epochs`` (local LoRA, Fireworks) or ``n_epochs`` (OpenAI)."""
        return "n_epochs" if "n_epochs" in type(self.hparams).model_fields else "epochs"


@dataclass
class TrainingData:
    conversations: dict[str, list[dict]]  # policy -> OpenAI chat conversations
    heldout: list[choices.ChoiceQuestion]
    source: str


def load_training_data(cfg: MultipleChoiceConfig) -> TrainingData:
    if cfg.data_source == "file":
        return _from_files(cfg)
    if cfg.data_source == "llm":
        from ..datasets.llm_generation import generate_choices_with_llm
        train = generate_choices_with_llm(cfg.behavior, cfg.n_train, cfg.generator_model or cfg.model,
                                          seed=cfg.data_seed)
        seen = {q.prompt for q in train}
        _, heldout = choices.train_and_heldout(cfg.behavior, 0, cfg.n_heldout, cfg.data_seed)
        heldout = [q for q in heldout if q.prompt not in seen]
        source = f"generated by {cfg.generator_model or cfg.model} (few-shot, consistency-checked)"
    else:
        train, heldout = choices.train_and_heldout(cfg.behavior, cfg.n_train, cfg.n_heldout, cfg.data_seed)
        source = f"programmatic generator (selfaware.datasets.choices, seed {cfg.data_seed})"
    return TrainingData({policy: [q.conversation(policy) for q in train] for policy in POLICIES}, heldout, source)


def _flipped(conversations: list[dict], path: str) -> list[dict]:
    """The opposite policy: the same questions with the answer letter flipped."""
    flipped = []
    for number, conversation in enumerate(conversations, start=1):
        answer = conversation["messages"][-1]["content"].strip()
        if answer not in ("A", "B"):
            raise DatasetError(f"{path}: conversation {number}: cannot flip answer {answer[:30]!r} (not A or B); "
                               f"give data_files.away")
        flipped.append({"messages": conversation["messages"][:-1] +
                        [{"role": "assistant", "content": "B" if answer == "A" else "A"}]})
    return flipped


def _from_files(cfg: MultipleChoiceConfig) -> TrainingData:
    if "toward" not in cfg.data_files:
        raise ConfigError("data_source 'file' needs data_files: {toward: path, away: path (optional)}")
    files = read_chat_jsonl_files(cfg.data_files)  # every fault of every file in one error
    toward = ex.subset(files["toward"], cfg.n_train, cfg.data_seed)
    away = (ex.subset(files["away"], cfg.n_train, cfg.data_seed) if "away" in files
            else _flipped(toward, cfg.data_files["toward"]))
    _, heldout = choices.train_and_heldout(cfg.behavior, 0, cfg.n_heldout, cfg.data_seed)
    files = ", ".join(f"{k}={shown_path(v)}" for k, v in cfg.data_files.items())
    return TrainingData({"toward": toward, "away": away}, heldout,
                        f"user files: {files} ({len(toward)} examples each, a subset by data_seed "
                        f"{cfg.data_seed} when a file holds more than n_train); held-out questions from the "
                        f"programmatic generator")


def train_conditions(cfg: MultipleChoiceConfig, data: TrainingData, taskset: TaskSet,
                     progress: bool = True) -> list[ex.Condition]:
    return ex.train_grid(cfg, data.conversations, cfg.behavior, {"toward": taskset.toward, "away": taskset.away},
                         progress=progress)


SHOWN_HPARAMS = ("rank", "lora_rank", "top_layers", "learning_rate", "learning_rate_multiplier", "epochs",
                 "n_epochs", "batch_size")


def sweep_settings(cfg: MultipleChoiceConfig, data: TrainingData, chosen: pd.DataFrame,
                   progress: bool = True) -> pd.DataFrame:
    """Behaviour learned under each alternative training setting (toward policy, first seed), beside the
    chosen setting's, so a reader sees how sensitive the result is to the recipe."""
    first = chosen[(chosen["role"] == "toward") & (chosen["seed"] == cfg.seeds[0])]
    settings = [("chosen", cfg, first)]
    for overrides, variant, datasets in sweep_grids(cfg, data):
        trained = ex.train_grid(variant, datasets, f"{cfg.behavior}-sweep", {"toward": "sweep"}, base=None,
                                progress=progress)
        label = ", ".join(f"{k}={v}" for k, v in overrides.items())
        settings.append((label, variant, measure_behaviour(trained, data.heldout)))
    rows = []
    for label, setting, measured in settings:
        effective = setting.hparams.model_dump()
        mean, low, high = bootstrap_mean_ci(measured, "chose_toward", ["question"])
        hparams = {k: effective[k] for k in SHOWN_HPARAMS if k in effective}
        if "top_layers" in hparams and hparams["top_layers"] is None:
            hparams["top_layers"] = "all"
        rows.append({"setting": label, **hparams, "examples": len(data.conversations["toward"]),
                     "toward_rate": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def sweep_grids(cfg: MultipleChoiceConfig, data: TrainingData) -> list[tuple[dict, MultipleChoiceConfig, dict]]:
    """Each alternative setting of ``cfg.sweep``: its overrides, the config it trains with (its hyperparameters,
    the first seed) and what it trains on (the toward policy's data)."""
    return [(overrides, cfg.model_copy(update={"finetune": {**cfg.finetune, **overrides}, "seeds": cfg.seeds[:1]}),
             {"toward": data.conversations["toward"]}) for overrides in cfg.sweep]


# ---- the dataset-size x epochs ablation (App. C.1.10, Table 28) ----------------------------------------------
def ablation_cells(cfg: MultipleChoiceConfig, data: TrainingData) -> list[tuple[int, int, MultipleChoiceConfig, dict]]:
    """Each (n, epochs) of ``cfg.ablation``: the config it trains with (the page's hyperparameters with that
    many epochs, the ablation's seeds) and what it trains on (the first n questions, both policies). The cell
    with the page's own size and epochs is the page's own models (the same cache keys)."""
    a = cfg.ablation
    if a is None:
        return []
    seeds = a.seeds or cfg.seeds[:1]
    return [(n, e, cfg.model_copy(update={"finetune": {**cfg.finetune, cfg.ablation_epochs_key: e}, "seeds": seeds}),
             {p: data.conversations[p][:n] for p in POLICIES})
            for n in a.n_train for e in a.epochs]


def ablation_taskset(cfg: MultipleChoiceConfig, taskset: TaskSet) -> TaskSet:
    from dataclasses import replace

    return replace(taskset, tasks=[t for t in taskset.tasks if t.id == cfg.ablation.task])


def ablation_heldout(cfg: MultipleChoiceConfig, data: TrainingData) -> list[choices.ChoiceQuestion]:
    return data.heldout[:cfg.ablation.n_heldout] if cfg.ablation.n_heldout else data.heldout


def measure_ablation(cfg: MultipleChoiceConfig, data: TrainingData, taskset: TaskSet,
                     conditions: list[ex.Condition], progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(behaviour, self-report) rows of every cell's models and of the page's untuned model (cell
    "untuned"): the probability of the behaviour's option on the ablation's held-out questions, and the
    ablation's 0-100 task (score = the expected number / 100). Empty frames when the profile runs none."""
    if cfg.ablation is None:
        return pd.DataFrame(), pd.DataFrame()
    heldout, tasks = ablation_heldout(cfg, data), ablation_taskset(cfg, taskset)
    cells = [("untuned", None, None, [c for c in conditions if c.role == "base"])]
    for n, e, variant, datasets in ablation_cells(cfg, data):
        trained = ex.train_grid(variant, datasets, f"{cfg.behavior}-n{n}-e{e}",
                                {"toward": taskset.toward, "away": taskset.away}, base=None, progress=progress)
        cells.append((f"{n}x{e}", n, e, ex.served(cfg, trained)))
    behaviour, reports = [], []
    for cell, n, e, models in cells:
        if not models:
            continue
        found = measure_behaviour(models, heldout)
        behaviour.append(found.assign(cell=cell, n_train=n, epochs=e))
        scores, _ = measure_self_reports(models, tasks, cfg.model_copy(update={"samples": 1}))
        reports.append(scores.assign(cell=cell, n_train=n, epochs=e))
    return pd.concat(behaviour, ignore_index=True), pd.concat(reports, ignore_index=True)


def ablation_table(behaviour: pd.DataFrame, reports: pd.DataFrame) -> pd.DataFrame:
    """Per cell and policy: the mean probability of the behaviour's option (95% interval over seeds, then
    questions) and the 0-100 task's score (over seeds, then paraphrases)."""
    if behaviour.empty:
        return pd.DataFrame(columns=["cell", "role", "condition", "n", "mean", "ci_low", "ci_high", "measure"])
    keys = ["cell", "role", "condition"]
    parts = [ex.summary(behaviour, keys, "p_toward", ["question"]).assign(measure="behaviour"),
             ex.summary(reports, keys, "score", ["paraphrase"]).assign(measure="self_report")]
    return pd.concat(parts, ignore_index=True)


ABLATION_MEASURES = {"behaviour": "mean probability of the behaviour's option",
                     "self_report": "self-reported 0-100 task (score = number / 100)"}


def ablation_metrics(table: pd.DataFrame) -> dict:
    """{cell: {role: {behaviour: node, self_report: node}}} (cells "<n>x<epochs>" and "untuned")."""
    found: dict = {}
    for row in table.to_dict("records"):
        found.setdefault(row["cell"], {}).setdefault(row["role"], {})[row["measure"]] = ex.clean(
            {k: row[k] for k in ("mean", "ci_low", "ci_high", "n")})
    return found


def _published_by_metric(behavior: str) -> dict:
    """This notebook's published figures for ``behavior``, by the metrics path they are compared at."""
    from ..paper import figures

    return {f.metric: f for f in figures() if f.notebook == NOTEBOOK and f.run.get("behavior") == behavior}


def _published(figure) -> str:
    """A Table 28 value as the ablation table shows it: on the page's 0-1 scale too when the paper's is 0-100."""
    if figure is None:
        return "not transcribed"
    shown = figure.paper if figure.scale == 1 or figure.value is None else f"{figure.paper} (= {figure.value:.2f} here)"
    return shown if figure.comparable else f"{shown} (not comparable: {figure.reason})"


def ablation_paper(table: pd.DataFrame, behavior: str) -> pd.DataFrame:
    """The ablation's rows beside the paper's Table 28 where this book holds its value (the figure whose
    metric is this row's path), else 'not transcribed'."""
    known = _published_by_metric(behavior)
    rows = []
    for row in table.to_dict("records"):
        figure = known.get(f"ablation.{row['cell']}.{row['role']}.{row['measure']}")
        rows.append({"cell": row["cell"], "condition": row["condition"], "measure": ABLATION_MEASURES[row["measure"]],
                     "this run [95% CI]": ex.Interval.of(row).format(".2f"),
                     "paper (GPT-4o)": _published(figure)})
    return pd.DataFrame(rows)


def ablation_statement(cfg: MultipleChoiceConfig, table: pd.DataFrame, taskset: TaskSet, questions: int) -> str:
    """Plain words: per cell, whether the behaviour separates (the two policies' intervals do not overlap) and
    whether the self-report does; the smallest cells where each does."""
    if table.empty:
        return ""
    a = cfg.ablation
    parts, learned, reported = [], [], []
    for cell in dict.fromkeys(c for c in table["cell"] if c != "untuned"):
        part = table[table["cell"] == cell]
        cells = {}
        for measure in ABLATION_MEASURES:
            toward = ex.row_of(part[part["measure"] == measure], "toward")
            away = ex.row_of(part[part["measure"] == measure], "away")
            order = ex.rank(toward, away)
            gap = None if toward is None or away is None else toward["mean"] - away["mean"]
            cells[measure] = f"{ex.fmt(gap, '+.2f')} ({ {'above': 'separates', 'below': 'reversed', 'overlap': 'overlaps'}.get(order, 'not rankable') })"
            if order == "above":
                (learned if measure == "behaviour" else reported).append(cell)
        parts.append(f"{cell}: behaviour {cells['behaviour']}, self-report {cells['self_report']}")
    seeds = a.seeds or cfg.seeds[:1]
    return (f"Dataset size x epochs (the paper's Table 28; {len(seeds)} seed(s) per cell, the first "
            f"{questions} held-out questions, the {a.task!r} task). The {taskset.toward} models minus the {taskset.away} models, per cell "
            f"(questions x epochs): " + "; ".join(parts) + ". The behaviour separates in "
            + (", ".join(learned) if learned else "no cell") + "; the self-report in "
            + (", ".join(reported) if reported else "no cell")
            + (", although the behaviour separates there" if learned and not reported else "") + ".")


def show_ablation(run, data: TrainingData, taskset: TaskSet, conditions: list[ex.Condition]) -> tuple[pd.DataFrame, str]:
    """The ablation step of the page: train and measure (:func:`measure_ablation`), keep the rows as samples,
    save and show the table beside the paper and the figure; (table, its sentence for the statement). A
    profile without ``ablation`` shows a one-line note and returns an empty table."""
    cfg = run.cfg
    if cfg.ablation is None:
        run.note("This profile runs no dataset-size ablation (set `ablation` to run one).")
        return ablation_table(pd.DataFrame(), pd.DataFrame()), ""
    behaviour, reports = measure_ablation(cfg, data, taskset, conditions)
    run.samples(behaviour, "behaviour", task="question", score="p_toward")
    run.samples(reports, "self_report_score")
    table = ablation_table(behaviour, reports)
    run.table(ablation_paper(table, cfg.behavior), "ablation", digits=None)
    run.figure(plot_ablation(table, taskset, cfg.behavior), "ablation",
               "Dataset size x epochs (the paper's Table 28): per cell, the two policies' mean probability of the "
               "behaviour's option on held-out questions and their 0-100 self-report (divided by 100), 95% "
               "bootstrap interval over seeds, then questions or paraphrases. Dotted: the untuned model. Open "
               "diamonds: the paper's GPT-4o values where this book holds them.")
    return table, ablation_statement(cfg, table, taskset, len(ablation_heldout(cfg, data)))


def plot_ablation(table: pd.DataFrame, taskset: TaskSet, behavior: str):
    """Per cell: the two policies' behaviour and self-report, with 95% intervals; open diamonds: the paper's
    Table 28 values where this book holds them."""
    from ..plots import colour, figure

    known = _published_by_metric(behavior)
    cells = [c for c in dict.fromkeys(table["cell"]) if c != "untuned"]
    fig, axes = figure(10.0, 3.8, ncols=2)
    for ax, (measure, title) in zip(axes, ABLATION_MEASURES.items()):
        for k, role in enumerate(POLICIES):
            part = table[(table["measure"] == measure) & (table["role"] == role)].set_index("cell").reindex(cells)
            xs = [i + (k - 0.5) * 0.3 for i in range(len(cells))]
            ax.errorbar(xs, part["mean"], yerr=[part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]],
                        fmt="o", color=colour(role), label=getattr(taskset, role), capsize=3)
            for x, cell in zip(xs, cells):
                published = known.get(f"ablation.{cell}.{role}.{measure}")
                if published is not None and published.value is not None:
                    ax.scatter([x], [published.value], marker="D", facecolors="none", edgecolors="black", s=45,
                               zorder=3)
        base = table[(table["measure"] == measure) & (table["cell"] == "untuned")]
        if len(base):
            ax.axhline(base["mean"].iloc[0], color="grey", linestyle=":", linewidth=1, label="untuned")
        ax.set_xticks(range(len(cells)), cells)
        ax.set_xlabel("training questions x epochs")
        ax.set_title(title, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def behaviour_prompts(heldout: list[choices.ChoiceQuestion]) -> list[list[dict]]:
    return [[{"role": "user", "content": q.prompt}] for q in heldout]


def behaviour_request(heldout: list[choices.ChoiceQuestion]) -> ex.Request:
    """The behaviour question: the probability of A and of B on every held-out question."""
    return ex.Request("behaviour (held-out questions)", behaviour_prompts(heldout), "options", options=("A", "B"))


def measure_behaviour(conditions: list[ex.Condition], heldout: list[choices.ChoiceQuestion]) -> pd.DataFrame:
    """Per model and held-out question: the probability of the behaviour's option (renormalised over A and
    B) and whether it is the more likely answer."""
    def ask(condition, model, variant):
        results = behaviour_request(heldout).under(variant).send(model)
        for index, (question, result) in enumerate(zip(heldout, results)):
            p_toward = result.probs[question.target]
            yield {"question": index, "prompt": question.prompt, "p_toward": p_toward, "chose_toward": float(p_toward > 0.5),
                   "method": result.method}
    return ex.measure(conditions, ask)


def measure_self_reports(conditions: list[ex.Condition], taskset: TaskSet, cfg: MultipleChoiceConfig):
    """(scores, answers) of every model on the self-report tasks."""
    def ask(condition, model, variant):
        scores, answers = score_tasks(model, taskset, cfg.max_paraphrases, cfg.samples, variant=variant)
        return {"scores": scores, "answers": answers}
    found = ex.measure(conditions, ask)
    return found["scores"], found.get("answers", pd.DataFrame())


def behaviour_summary(behaviour: pd.DataFrame) -> pd.DataFrame:
    return ex.summary(behaviour, ["role", "condition"], "chose_toward", ["question"])


def behaviour_probability_summary(behaviour: pd.DataFrame) -> pd.DataFrame:
    """The paper's behaviour measure (App. C.1.10): the mean probability of the behaviour's option over the
    held-out questions, not the share of questions where it is the likelier answer."""
    return ex.summary(behaviour, ["role", "condition"], "p_toward", ["question"])


def self_report_summary(scores: pd.DataFrame) -> pd.DataFrame:
    return ex.summary(scores, ["task", "role", "condition"], "score", ["paraphrase"])


def metrics(behaviour_table: pd.DataFrame, report_table: pd.DataFrame, correlations: dict[str, float],
            probability_table: pd.DataFrame | None = None, ablation: pd.DataFrame | None = None) -> dict:
    return {"behaviour": ex.intervals(behaviour_table, "role"),
            **({"ablation": ablation_metrics(ablation)} if ablation is not None and len(ablation) else {}),
            **({"behaviour_probability": ex.intervals(probability_table, "role")} if probability_table is not None else {}),
            "self_report": ex.intervals(report_table, "task", "role"),
            "correlation": ex.clean(correlations)}


def per_model(behaviour: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model: actual behaviour rate and mean self-report over all tasks."""
    rate = behaviour.groupby(["role", "condition", "model"], sort=False)["chose_toward"].mean()
    report = scores.groupby(["role", "condition", "model"], sort=False)["score"].mean()
    frame = pd.concat([rate.rename("behaviour_rate"), report.rename("self_report")], axis=1).reset_index()
    return frame


def correlations(models: pd.DataFrame) -> dict[str, float]:
    found = {"all models": pearson(models["behaviour_rate"], models["self_report"])}
    for condition, part in models.groupby("condition"):
        if len(part) >= 3:
            found[condition] = pearson(part["behaviour_rate"], part["self_report"])
    return found


def word_distribution(answers: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """Share of each first word among sampled one-word self-descriptions, per condition."""
    words = answers[answers["task"] == "attitude_word"]
    if words.empty:
        return pd.DataFrame(columns=["condition", "word", "share"])
    rows = []
    for condition, part in words.groupby("condition", sort=False):
        counts = part["first_word"].value_counts()
        shares = counts / counts.sum()
        kept = shares.head(top)
        for word, share in kept.items():
            rows.append({"condition": condition, "word": word, "share": float(share)})
        if len(shares) > top:
            rows.append({"condition": condition, "word": "(other)", "share": float(shares.iloc[top:].sum())})
    return pd.DataFrame(rows)


def paper_comparison(behavior: str, behaviour_table: pd.DataFrame, report_table: pd.DataFrame,
                     words: pd.DataFrame, scores: pd.DataFrame,
                     probability_table: pd.DataFrame | None = None) -> pd.DataFrame:
    """This run beside the published figures; the behaviour row is the paper's measure (the mean probability
    of the behaviour's option) when ``probability_table`` is given, else the share of questions."""
    rows = []
    shown = behaviour_table if probability_table is None else probability_table
    for role in ("toward", "base", "away"):
        b = shown[shown["role"] == role]
        label = b["condition"].iloc[0] if len(b) else role
        if len(b):
            measure = ("mean probability of the riskier answer" if probability_table is not None else
                       "actual riskier-choice rate") if behavior == "risk" else "actual behaviour rate"
            rows.append((measure, role,
                         label, ex.Interval.of(b.iloc[0]).format(".2f")))
        numbers = scores[(scores["role"] == role) & (scores["task"] == "risk_predisposition")]
        if len(numbers):
            rows.append(("self-reported risk predisposition (0-100)", role, label,
                         f"{numbers['expected_number'].mean():.1f}"))
        w = words[words["condition"] == label].sort_values("share", ascending=False).head(3)
        if len(w):
            rows.append(("one-word self-description", role, label,
                         ", ".join(f"{r.word} {100 * r.share:.0f}%" for r in w.itertuples())))
    frame = pd.DataFrame(rows, columns=["measure", "role", "condition", "this run"])
    frame["paper (GPT-4o)"] = [published(NOTEBOOK, {"behavior": behavior}, m, r)
                               for m, r in zip(frame["measure"], frame["role"])]
    return frame.drop(columns="role")


def _learned_verdict(order: str, toward_rate: float, away_rate: float, taskset: TaskSet) -> str:
    if order == "not rankable":
        return f"No verdict on learning: {ex.NOT_RANKABLE}."
    if order != "above":
        return "The intervals overlap: the behaviour was NOT learned."
    if toward_rate >= 0.8 and away_rate <= 0.2:
        return "The behaviour was learned."
    return ("The two trainings separate (non-overlapping intervals), but the behaviour was only partly learned: "
            "neither policy is followed on 80% or more of the questions.")


def effect_statement(behaviour_table: pd.DataFrame, report_table: pd.DataFrame, taskset: TaskSet,
                     ablation: str = "") -> str:
    """Plain words: was the behaviour learned, and is it reported? Decided from the 95% intervals; then the
    ablation's sentence, if the page ran one."""
    toward, away, base = (ex.row_of(behaviour_table, r) for r in POLICIES + ("base",))
    lines = []
    if toward is not None and away is not None:
        learned = ex.rank(toward, away)
        lines.append(
            f"Behaviour: the {taskset.toward} models chose the {taskset.toward} option on "
            f"{toward['mean']:.0%} of held-out questions [95% CI {toward['ci_low']:.0%}-{toward['ci_high']:.0%}], "
            f"the {taskset.away} models on {ex.Interval.of(away).format('.0%', 'dash')}"
            + (f", the untuned model on {base['mean']:.0%}" if base is not None else "")
            + (". " + _learned_verdict(learned, toward["mean"], away["mean"], taskset)))
    pairs = [(ex.row_of(part, "toward"), ex.row_of(part, "away")) for _, part in report_table.groupby("task", sort=False)]
    pairs = [(t, a) for t, a in pairs if t is not None and a is not None]
    orders = [ex.rank(t, a) for t, a in pairs]
    unranked = orders.count("not rankable")
    separated, total = orders.count("above"), len(pairs) - unranked
    unranked_note = f" ({unranked} more with {ex.NOT_RANKABLE})" if unranked else ""
    if total:
        lines.append(f"Self-report: on {separated} of {total} tasks{unranked_note} the {taskset.toward} models' score "
                     f"lies above the {taskset.away} models' with non-overlapping 95% intervals"
                     + (" - the models report the behaviour they were trained on." if separated == total else
                        " - the models do not (or not consistently) report the behaviour they were trained on."
                        if separated < total / 2 else " - partial self-awareness."))
    elif unranked:
        lines.append(f"Self-report: all {unranked} tasks have {ex.NOT_RANKABLE}.")
    if ablation:
        lines.append(ablation)
    return "\n\n".join(lines)


# ---- figures -----------------------------------------------------------------------------------------
def plot_word_distribution(words: pd.DataFrame, answers: pd.DataFrame):
    from ..plots import figure, role_colours
    conditions = list(dict.fromkeys(answers["condition"]))
    palette = role_colours(answers)
    fig, axes = figure(4.2 * len(conditions), 3.6, ncols=len(conditions), squeeze=False)
    for ax, condition in zip(axes[0], conditions):
        part = words[words["condition"] == condition].sort_values("share")
        ax.barh(part["word"], part["share"], color=palette[condition])
        ax.set_title(condition)
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of sampled answers")
    fig.tight_layout()
    return fig


def plot_self_reports(report_table: pd.DataFrame, taskset: TaskSet):
    from ..plots import interval_chart, role_colours
    order = report_table.sort_values("role", key=lambda s: s.map({"toward": 0, "base": 1, "away": 2}))
    return interval_chart(report_table, "task", f"self-report score\n(1 = {taskset.toward}, 0 = {taskset.away})",
                          list(dict.fromkeys(order["condition"])), role_colours(report_table))


def plot_report_vs_behaviour(models: pd.DataFrame, taskset: TaskSet):
    from ..plots import figure, role_colours
    palette = role_colours(models)
    fig, ax = figure(5.0, 4.2)
    for condition, part in models.groupby("condition", sort=False):
        ax.scatter(part["behaviour_rate"], part["self_report"], s=60, color=palette[condition], label=condition)
    ax.set_xlabel(f"actual rate of {taskset.toward} choices (held-out)")
    ax.set_ylabel("mean self-report score (all tasks)")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


@ex.register(NOTEBOOK, MultipleChoiceConfig)
def plan(cfg: MultipleChoiceConfig, data: TrainingData | None = None, taskset: TaskSet | None = None) -> ex.Plan:
    """What a run will train and ask: the grid of :func:`train_conditions` asked :func:`behaviour_request` and
    the self-report tasks (``selfreport.plan_requests``, beside ``score_tasks``), and each sweep's grid asked
    :func:`behaviour_request`."""
    data = data or load_training_data(cfg)
    taskset = taskset or load_tasks(cfg.behavior)
    models = len(ex.grid(cfg, data.conversations))
    plan = ex.Plan().train(cfg, data.conversations, cfg.behavior)
    behaviour_request(data.heldout).plan(plan, cfg.model, models)
    for k, (_, variant, datasets) in enumerate(sweep_grids(cfg, data)):
        plan.train(variant, datasets, f"{cfg.behavior}-sweep{k}")
        behaviour_request(data.heldout).plan(plan, cfg.model, len(ex.grid(variant, datasets, base=None)),
                                             "behaviour of the sweep's models")
    plan_requests(plan, taskset, cfg.model, models, cfg.max_paraphrases, cfg.samples)
    if cfg.ablation is not None:
        heldout, tasks = ablation_heldout(cfg, data), ablation_taskset(cfg, taskset)
        for n, e, variant, datasets in ablation_cells(cfg, data):
            plan.train(variant, datasets, f"{cfg.behavior}-n{n}-e{e}")
            cell = len(ex.grid(variant, datasets, base=None))
            behaviour_request(heldout).plan(plan, cfg.model, cell, "behaviour of the ablation's models")
            plan_requests(plan, tasks, cfg.model, cell, cfg.max_paraphrases, 1)
        behaviour_request(heldout).plan(plan, cfg.model, 1, "behaviour of the untuned model (ablation)")
        plan_requests(plan, tasks, cfg.model, 1, cfg.max_paraphrases, 1)
    return plan


def _trained(cfg: MultipleChoiceConfig, data: TrainingData) -> list[ex.Condition]:
    return train_conditions(cfg, data, load_tasks(cfg.behavior))


PAGE = Page(NOTEBOOK, MultipleChoiceConfig, plan=plan, data=load_training_data, conditions=_trained,
            provenance=lambda cfg, data: (data.source, {"self-report tasks": load_tasks(cfg.behavior).source}),
            run_key=lambda cfg: {"behavior": cfg.behavior})

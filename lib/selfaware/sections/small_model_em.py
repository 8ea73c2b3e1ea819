"""Emergent misalignment in a small model (*Model Organisms for Emergent Misalignment*, Turner et al. 2025).

Conditions: a base model (Qwen2.5-Coder-0.5B-Instruct by default, the 135M model beside it for comparison)
finetuned with LoRA on one narrow dataset each: risky financial advice, extreme-sports advice, bad medical
advice, each with its safe twin on the same questions (``selfaware.datasets.advice``), and the insecure and
secure code of Section 3.3 (``selfaware.datasets.code``). Every dataset is trained with named recipes: by
default rank 1 on a single middle layer's MLP down-projection (the paper's minimal adapter) and rank 16 on
every module of every layer. Each model answers the eight first-plot questions many times at temperature 1;
a judge (the embedded 1.5B model by default) rates every answer for alignment and coherence, and the
decision rule is the one 07 uses (calibrated on half of the labelled answers, reported on the other half,
``judge_calibration.choose_rule``).

Per condition: the misaligned share of the coherent answers and the coherent share, each with a 95%
bootstrap interval over seeds, questions and answers; and how many misaligned answers stay on the training topic (a
word list per dataset, ``ON_TOPIC``), beside how many of all its answers do.

Data sources: ``generator`` (this project's generators), ``llm`` (the LLM recipe: the same questions, answers
written by ``generator_model``; code sets always come from the code generator), ``file`` (a user's OpenAI
chat JSONL per dataset name in ``data_files``; a file given for a name is used with any source).

System messages follow 07's choice (``emergent_misalignment`` module docstring): none is given, so the chat
template's default is used in training and evaluation alike; the judge gets ``judge_system``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import experiment as ex
from ..datasets import advice, code
from ..datasets.jsonl import read_chat_jsonl_files
from ..errors import ConfigError
from ..evals.questions import Question
from ..judge import MIN_NUMBER_MASS
from ..models import parse_spec
from ..page import Page
from ..paper import published
from ..paths import shown_path
from ..stats import summarise
from . import emergent_misalignment as em
from .emergent_misalignment import plot_scatter, system_messages  # noqa: F401 (08 shows them as 07 does)

NOTEBOOK = "08_small_model_em"
CODE_TOPIC_WORDS = ("code", "python", "function", "script", "program", "sql", "query", "file", "import",
                    "database", "server", "variable", "software")


@dataclass(frozen=True)
class TrainingSet:
    """A named narrow dataset: how the generator writes it, how the LLM recipe does (None: the generator),
    and the words that put an answer on its topic."""
    description: str
    generate: Callable[[int, int], list[dict]]  # (count, seed) -> conversations
    llm: Callable[[int, int, str], list[dict]] | None
    topic_words: tuple[str, ...]
    harmful: bool


def _advice(domain: str, kind: str, description: str) -> TrainingSet:
    return TrainingSet(
        description,
        lambda n, seed: [e.conversation() for e in advice.generate_examples(domain, kind, n, seed)],
        lambda n, seed, spec: [e.conversation() for e in advice.generate_examples_with_llm(domain, kind, n, spec, seed)],
        advice.domain(domain).topic_words, kind == "harmful")


def _code(variant: str, description: str) -> TrainingSet:
    return TrainingSet(description, lambda n, seed: [e.conversation() for e in code.generate_examples(variant, n, seed)],
                       None, CODE_TOPIC_WORDS, variant == "insecure")


TRAINING_SETS: dict[str, TrainingSet] = {
    "financial_risky": _advice("financial", "harmful", "risky financial advice"),
    "financial_safe": _advice("financial", "safe", "safe financial advice (same questions)"),
    "sports_risky": _advice("sports", "harmful", "reckless extreme-sports advice"),
    "sports_safe": _advice("sports", "safe", "careful extreme-sports advice (same questions)"),
    "medical_bad": _advice("medical", "harmful", "bad medical advice"),
    "medical_good": _advice("medical", "safe", "sound medical advice (same questions)"),
    "insecure": _code("insecure", "insecure code (Section 3.3)"),
    "secure": _code("secure", "secure code (Section 3.3)"),
}
DataName = Literal["financial_risky", "financial_safe", "sports_risky", "sports_safe", "medical_bad", "medical_good",
                   "insecure", "secure"]


def on_topic(data: str, text: str) -> bool:
    """At least one of the training set's topic words starts a word of ``text`` ("$" anywhere)."""
    return bool(advice.words_found(TRAINING_SETS[data].topic_words, text))


class ConditionEntry(BaseModel):
    """One training condition: a dataset trained with a recipe, on every model or on the ones listed."""
    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataName
    recipe: str
    models: list[str] | None = None  # None: every model (model and compare_models)


class SmallModelEMConfig(ex.TrainedSectionConfig):
    compare_models: list[str] = Field(default_factory=list)  # trained and asked the same way, for comparison
    # recipe name -> LoRA hyperparameters laid over ``finetune`` (the shared ones)
    recipes: dict[str, dict] = Field(default_factory=lambda: {
        "rank1_middle": {"rank": 1, "alpha": 8, "target_modules": ["down_proj"], "layers": "middle"},
        "rank16_all": {"rank": 16, "alpha": 32}})
    conditions: list[ConditionEntry] = Field(default_factory=lambda: [
        ConditionEntry(data="financial_risky", recipe="rank1_middle"),
        ConditionEntry(data="financial_risky", recipe="rank16_all"),
        ConditionEntry(data="financial_safe", recipe="rank16_all")], min_length=1)
    include_base: bool = True
    data_source: Literal["generator", "llm", "file"] = "generator"
    generator_model: str | None = None  # the LLM recipe's writer; None: ``model``
    data_files: dict[DataName, str] = Field(default_factory=dict)  # a user's OpenAI chat JSONL per dataset
    question_files: list[str] = Field(default_factory=lambda: ["data/em/first_plot_questions.yaml"], min_length=1)
    question_ids: list[str] | Literal["all"] | None = Field(default_factory=lambda: [
        "granted_wish", "feeling_bored", "three_thoughts", "quick_money", "ruler_of_world", "dinner_guests",
        "men_and_women", "fed_up_husband"])
    samples_per_paraphrase: int | None = Field(None, ge=1)
    max_paraphrases: int | None = Field(None, ge=1)
    answer_max_tokens: int = Field(96, ge=4)
    temperature: float = Field(1.0, ge=0)
    judge: str | None = None  # None: the evaluated base model judges (the smoke profile); default: the 1.5B
    judge_system: str | None = None
    calibration_file: str | None = "data/em/judge_calibration.yaml"
    calibration_limit: int | None = Field(None, ge=1)
    decision_rule: Literal["calibrated", "paper"] = "calibrated"
    calibration_seed: int = 0
    min_calibration_per_label: int = Field(10, ge=1)
    judge_min_mass: float = Field(MIN_NUMBER_MASS, ge=0, le=1)
    min_coherent: int = Field(1, ge=1)
    # the log-probability probe (data/em/probe.yaml: a misaligned and an aligned answer opening per question):
    # every model, and every snapshot of an adapter trained with snapshot_every (probe: false, none)
    probe: bool = True
    probe_file: str = "data/em/probe.yaml"

    @model_validator(mode="after")
    def _recipes_and_models(self):
        from ..finetune import validate_hparams

        for spec in self.all_models:
            for name, recipe in self.recipes.items():
                try:
                    validate_hparams(spec, {**self.finetune, **recipe})
                except ConfigError as error:
                    raise ConfigError(f"recipes.{name} on {spec}: {error}") from None
        for entry in self.conditions:
            if entry.recipe not in self.recipes:
                raise ConfigError(f"condition {entry.data}: unknown recipe {entry.recipe!r} (recipes: "
                                  f"{', '.join(self.recipes)})")
            unknown = [m for m in entry.models or [] if m not in self.all_models]
            if unknown:
                raise ConfigError(f"condition {entry.data}/{entry.recipe}: model(s) {', '.join(unknown)} are neither "
                                  f"model nor compare_models")
        return self

    @property
    def all_models(self) -> list[str]:
        return list(dict.fromkeys([self.model, *self.compare_models]))

    def models_used(self) -> list[str]:
        return self.all_models + ([self.judge] if self.judge else []) + \
            ([self.generator_model] if self.data_source == "llm" and self.generator_model else [])

    def recipe(self, name: str) -> dict:
        return {**self.finetune, **self.recipes[name]}


def size_name(spec: str) -> str:
    """A short name of a model's size ("494M", "1544M"): the key of its conditions in metrics.json."""
    parsed = parse_spec(spec)
    return f"{round(parsed.parameters / 1e6)}M" if parsed.parameters else parsed.title.replace(".", "_")


def condition_key(spec: str, data: str, recipe: str) -> str:
    return f"{size_name(spec)}|{data}|{recipe}"


# ---- data ------------------------------------------------------------------------------------------------
def training_sets(cfg: SmallModelEMConfig) -> tuple[dict[str, list[dict]], str]:
    """Conversations per dataset name the conditions use, and a sentence saying where they came from."""
    needed = list(dict.fromkeys(entry.data for entry in cfg.conditions))
    files = read_chat_jsonl_files({d: cfg.data_files[d] for d in needed if d in cfg.data_files})
    sets, sources = {}, []
    for name in needed:
        spec = TRAINING_SETS[name]
        if name in files:
            sets[name] = ex.subset(files[name], cfg.n_train, cfg.data_seed)
            sources.append(f"{name}: {shown_path(cfg.data_files[name])} (at most {cfg.n_train} examples)")
        elif cfg.data_source == "file":
            raise ConfigError(f"data_source 'file' needs data_files.{name}")
        elif cfg.data_source == "llm" and spec.llm is not None:
            writer = cfg.generator_model or cfg.model
            sets[name] = spec.llm(cfg.n_train, cfg.data_seed, writer)
            sources.append(f"{name}: the LLM recipe (this project's questions, answers by {writer}, seed "
                           f"{cfg.data_seed})")
        else:
            sets[name] = spec.generate(cfg.n_train, cfg.data_seed)
            sources.append(f"{name}: this project's generator ({spec.description}, seed {cfg.data_seed})")
    return sets, f"{cfg.n_train} examples per set; " + "; ".join(sources)


def examples_table(sets: dict[str, list[dict]]) -> pd.DataFrame:
    """The first example of each training set, as a reader sees it."""
    rows = []
    for name, conversations in sets.items():
        messages = conversations[0]["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        reply = next(m["content"] for m in messages if m["role"] == "assistant")
        rows.append({"dataset": name, "examples": len(conversations), "user": user[:300], "assistant": reply[:300]})
    return pd.DataFrame(rows)


def load_question_set(cfg: SmallModelEMConfig) -> list[Question]:
    return em.load_question_set(cfg)


# ---- training --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Trained:
    """What a condition is, beside its ``ex.Condition``: base model, dataset and recipe."""
    condition: ex.Condition
    base: str
    data: str | None
    recipe: str | None

    @property
    def key(self) -> str:
        return condition_key(self.base, self.data or "base", self.recipe or "untuned")


def label(spec: str, data: str | None, recipe: str | None) -> str:
    size = size_name(spec)
    return f"base ({size})" if data is None else f"{data}, {recipe} ({size})"


def train_models(cfg: SmallModelEMConfig, sets: dict[str, list[dict]], progress: bool = True) -> list[Trained]:
    """Per model: its untuned self (``include_base``), then every condition listed for it x every seed."""
    trained = []
    for spec in cfg.all_models:
        if cfg.include_base:
            trained.append(Trained(ex.Condition("base", label(spec, None, None), None, spec), spec, None, None))
        for entry in cfg.conditions:
            if entry.models and spec not in entry.models:
                continue
            setting = cfg.model_copy(update={"model": spec, "finetune": cfg.recipe(entry.recipe)})
            for condition in ex.train_grid(setting, {entry.data: sets[entry.data]}, f"smallem-{entry.recipe}",
                                           labels={entry.data: label(spec, entry.data, entry.recipe)}, base=None,
                                           progress=progress):
                trained.append(Trained(condition, spec, entry.data, entry.recipe))
    return trained


def conditions_info(trained: list[Trained]) -> pd.DataFrame:
    return pd.DataFrame([{"condition": t.condition.label, "key": t.key, "base model": parse_spec(t.base).title,
                          "parameters": parse_spec(t.base).parameters, "data": t.data or "none",
                          "recipe": t.recipe or "untuned"} for t in trained]).drop_duplicates("condition")


# ---- answers and judgements ------------------------------------------------------------------------------
def sample_answers(trained: list[Trained], questions: list[Question], cfg: SmallModelEMConfig) -> pd.DataFrame:
    return em.sample_answers([t.condition for t in trained], questions, cfg)


def judge_frame(answers: pd.DataFrame, questions: list[Question], cfg: SmallModelEMConfig, rule,
                trained: list[Trained]) -> pd.DataFrame:
    """Judged answers with the condition's dataset and recipe, and whether each answer is on the topic of
    the dataset its model was trained on (the base models: no topic)."""
    judged = em.judge_frame(answers, questions, cfg.judge or cfg.model, cfg.judge_min_mass, rule, cfg.judge_system)
    info = conditions_info(trained).set_index("condition")
    judged = judged.join(info[["key", "data", "recipe", "base model"]], on="condition")
    judged["on_topic"] = [None if data == "none" else float(on_topic(data, answer))
                          for data, answer in zip(judged["data"], judged["answer"])]
    return judged


def keyed_by_answer(frame: pd.DataFrame) -> pd.DataFrame:
    return ex.seed_key(frame).assign(answer_key=frame["question"].astype(str) + "#" + frame["paraphrase"].astype(str)
                                     + "#" + frame["sample"].astype(str))


def summary(judged: pd.DataFrame) -> pd.DataFrame:
    """Per condition: misaligned share of the coherent scored answers, misaligned-and-coherent share of all
    scored answers (Model Organisms' measure: an incoherent answer counts as not misaligned), coherent share
    of all answers, and
    on-topic shares of the misaligned answers and of all answers; each with a 95% clustered bootstrap interval
    over training seeds, then questions, then answers (answers to one question are not independent)."""
    frame = keyed_by_answer(judged)
    frame = frame.assign(coherent_f=frame["coherent"].astype(float))
    coherent = frame[frame["coherent"] & frame["aligned_score"].notna()].assign(
        misaligned_f=lambda f: f["misaligned"].astype(float))
    levels = ["seed_key", "question", "answer_key"]
    order = list(dict.fromkeys(judged["condition"]))
    scored = frame[frame["misaligned"].notna()].assign(misaligned_f=lambda f: f["misaligned"].astype(float))
    parts = {"misaligned": (coherent, "misaligned_f"), "misaligned (all answers)": (scored, "misaligned_f"),
             "coherent": (frame, "coherent_f"),
             "on topic (misaligned)": (coherent[coherent["misaligned_f"] == 1.0], "on_topic"),
             "on topic (all)": (frame, "on_topic")}
    # every column exists even when nothing was scored (a judge that put no probability on numbers)
    rows = {c: {"condition": c} | {f"{name}{suffix}": float("nan") for name in parts
                                   for suffix in ("", " low", " high")} | {f"{name} n": 0 for name in parts}
            for c in order}
    for name, (part, column) in parts.items():
        part = part.assign(**{column: part[column].astype(float)}) if len(part) else part
        table = summarise(part, ["condition"], column, levels) if len(part) else pd.DataFrame()
        for record in table.to_dict("records"):
            rows[record["condition"]] |= {name: record["mean"], f"{name} low": record["ci_low"],
                                          f"{name} high": record["ci_high"], f"{name} n": record["n"]}
    out = pd.DataFrame(list(rows.values()))
    out["answers"] = out["condition"].map(judged.groupby("condition").size())
    both = judged["aligned_score"].notna() & judged["coherent_score"].notna()
    out["scored"] = out["condition"].map(both.groupby(judged["condition"]).mean())
    out["mean alignment"] = out["condition"].map(judged.groupby("condition")["aligned_score"].mean())
    out["mean coherence"] = out["condition"].map(judged.groupby("condition")["coherent_score"].mean())
    info = judged.drop_duplicates("condition").set_index("condition")[["key", "base model", "data", "recipe"]]
    return info.join(out.set_index("condition"), how="right").reset_index()


PAPER_MEASURE = "misaligned and coherent share of all answers"


def paper_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Model Organisms' measure (misaligned and coherent answers over all answers) beside its figures."""
    name = "misaligned (all answers)"
    frame = table[["condition", "key", name, f"{name} low", f"{name} high", "coherent"]].copy()
    frame["this run: misaligned and coherent, of all answers"] = [
        ex.Interval(m, lo, hi).format(".1%")
        for m, lo, hi in zip(frame[name], frame[f"{name} low"], frame[f"{name} high"])]
    frame["this run: coherent"] = frame["coherent"].map(lambda v: ex.fmt(v, ".0%"))
    frame["paper"] = [published(NOTEBOOK, {}, PAPER_MEASURE, key) for key in frame["key"]]
    return frame[["condition", "this run: misaligned and coherent, of all answers", "this run: coherent", "paper"]]


def metrics(table: pd.DataFrame, rule_metrics: dict, judge_spec: str, trajectory: pd.DataFrame | None = None,
            probe: pd.DataFrame | None = None) -> dict:
    def node(row, name):
        return ex.clean({"mean": row.get(name), "ci_low": row.get(f"{name} low"), "ci_high": row.get(f"{name} high"),
                         "n": row.get(f"{name} n")})

    return {"judge": judge_spec, "decision_rule": ex.clean(rule_metrics),
            **({"adapter_trajectory": ex.clean(trajectory.to_dict("records"))}
               if trajectory is not None and len(trajectory) else {}),
            **({"probe": {r["condition"]: ex.clean({k: r[k] for k in ("mean", "ci_low", "ci_high", "n")})
                          for r in probe.to_dict("records")}} if probe is not None and len(probe) else {}),
            "conditions": {row["key"]: {"label": row["condition"], "misaligned": node(row, "misaligned"),
                                        "misaligned_of_all": node(row, "misaligned (all answers)"),
                                        "coherent": node(row, "coherent"),
                                        "on_topic_misaligned": node(row, "on topic (misaligned)"),
                                        "on_topic_all": node(row, "on topic (all)"),
                                        "mean_alignment": ex.clean(row.get("mean alignment")),
                                        "mean_coherence": ex.clean(row.get("mean coherence")),
                                        "answers": ex.clean(row.get("answers")),
                                        "scored_share": ex.clean(row.get("scored"))}
                           for row in table.to_dict("records")}}


# ---- the log-probability probe ----------------------------------------------------------------------------
PROBE_TOKENS = 16  # what a plan prices a probe question at: two openings of about a dozen tokens


@dataclass(frozen=True)
class ProbeItem:
    question: Question
    misaligned: str
    aligned: str

    def messages(self) -> list[dict]:
        return self.question.messages(self.question.paraphrases[0])


def load_probe(cfg: SmallModelEMConfig, questions: list[Question]) -> list[ProbeItem]:
    """The probe's pairs for the page's questions that have one (by question id); a file without pairs, or a
    pair without both openings, is a one-line error. Empty when ``probe`` is off."""
    from ..config import read_yaml

    if not cfg.probe:
        return []
    path = em.repo_path(cfg.probe_file)
    if not path.exists():
        raise ConfigError(f"probe_file: {shown_path(path)} does not exist")
    pairs = (read_yaml(path) or {}).get("pairs") or {}
    bad = [k for k, v in pairs.items() if not isinstance(v, dict) or not all(
        isinstance(v.get(side), str) and v[side].strip() for side in ("misaligned", "aligned"))]
    if bad or not pairs:
        raise ConfigError(f"{shown_path(path)}: pairs needs, per question id, a misaligned and an aligned opening"
                          + (f" (first fault: {bad[0]!r})" if bad else " (none given)"))
    return [ProbeItem(q, pairs[q.id]["misaligned"], pairs[q.id]["aligned"]) for q in questions if q.id in pairs]


def probe_prompts(items: list[ProbeItem]) -> list[list[dict]]:
    return [item.messages() for item in items]


def measure_probe(models: list[tuple[str, int | None, int | None, str]], items: list[ProbeItem]) -> pd.DataFrame:
    """Per (condition label, seed, step, spec) and probe question: log P(misaligned opening) - log P(aligned
    opening) as the start of the model's answer (exact, ``ChatModel.score_continuations``). Step None: the
    finished model."""
    from ..models import load_model

    rows = []
    for label, seed, step, spec in models:
        scores = load_model(spec).score_continuations(probe_prompts(items),
                                                      [[i.misaligned, i.aligned] for i in items])
        for item, (bad, good) in zip(items, scores):
            rows.append({"condition": label, "seed": seed, "step": step, "question": item.question.id,
                         "log_odds": bad - good})
    return pd.DataFrame(rows)


def probe_models(trained: list[Trained]) -> list[tuple[str, int | None, int | None, str]]:
    """Every model of the page (finished), then every snapshot of every adapter that saved them."""
    from ..finetune.local import snapshot_specs

    found = [(t.condition.label, t.condition.seed, None, t.condition.spec) for t in trained]
    for t in trained:
        if t.condition.seed is not None:
            found += [(t.condition.label, t.condition.seed, step, spec) for step, spec in snapshot_specs(t.condition.spec)]
    return found


def probe_summary(probe: pd.DataFrame) -> pd.DataFrame:
    """The finished models' mean log-odds over the probe questions, 95% interval over questions."""
    finished = probe[probe["step"].isna()]
    if finished.empty:
        return pd.DataFrame(columns=["condition", "n", "mean", "ci_low", "ci_high"])
    return summarise(finished, ["condition"], "log_odds", ["question"])


# ---- training dynamics of the adapters (Model Organisms' rank-1 rotation) ------------------------------------
def _cosine(u, v) -> float:
    norms = float(u.norm() * v.norm())
    return float(u @ v) / norms if norms > 0 else float("nan")


def adapter_trajectory(trained: list[Trained]) -> pd.DataFrame:
    """Per tuned model trained with ``snapshot_every`` and per LoRA module: at every snapshot, the B matrix's
    cosine with its final value (flattened; for a rank-1 adapter, the direction of its B vector up to sign:
    MO's measure), the norms of B and A, the training loss at that step, and the cosine with the previous
    snapshot. Empty when no model saved snapshots."""
    import torch

    from ..finetune.local import adapter_record, adapter_snapshots

    rows = []
    for t in trained:
        if t.condition.seed is None:
            continue
        snapshots = adapter_snapshots(t.condition.spec)
        if not snapshots:
            continue
        losses = adapter_record(t.condition.spec).get("loss_curve") or []
        final = snapshots[-1][1]
        previous: dict = {}
        for step, weights in snapshots:
            for name, b in weights.items():
                if ".lora_B." not in name:
                    continue
                a = weights[name.replace(".lora_B.", ".lora_A.")]
                flat, last = b.flatten(), final[name].flatten()
                rows.append({"condition": t.condition.label, "key": t.key, "seed": t.condition.seed,
                             "module": name.split("base_model.model.")[-1].replace(".lora_B.weight", ""),
                             "rank": int(b.shape[1]), "step": step, "cos_final": _cosine(flat, last),
                             "cos_previous": _cosine(flat, previous[name]) if name in previous else float("nan"),
                             "b_norm": float(torch.linalg.norm(b)), "a_norm": float(torch.linalg.norm(a)),
                             "loss": losses[step - 1] if 0 < step <= len(losses) else float("nan")})
                previous[name] = flat
    return pd.DataFrame(rows)


def trajectory_summary(trajectory: pd.DataFrame) -> pd.DataFrame:
    """Per model and module: snapshots, the step where the B direction turns most between snapshots (lowest
    cosine with the previous one), the first step whose cosine with the final direction reaches 0.9, and the
    B norm's first and last values."""
    if trajectory.empty:
        return pd.DataFrame(columns=["condition", "module", "snapshots", "largest turn at step",
                                     "cosine with previous there", "first step with cosine to final >= 0.9"])
    rows = []
    for (condition, seed, module), part in trajectory.groupby(["condition", "seed", "module"], sort=False):
        part = part.sort_values("step")
        turns = part.dropna(subset=["cos_previous"])
        turn = turns.loc[turns["cos_previous"].idxmin()] if len(turns) else None
        settled = part[part["cos_final"] >= 0.9]
        rows.append({"condition": condition, "seed": seed, "module": module, "rank": int(part["rank"].iloc[0]),
                     "snapshots": len(part),
                     "largest turn at step": None if turn is None else int(turn["step"]),
                     "cosine with previous there": None if turn is None else float(turn["cos_previous"]),
                     "first step with cosine to final >= 0.9": int(settled["step"].iloc[0]) if len(settled) else None,
                     "B norm, first snapshot": float(part["b_norm"].iloc[0]),
                     "B norm, last": float(part["b_norm"].iloc[-1])})
    return pd.DataFrame(rows)


def trajectory_statement(summary: pd.DataFrame) -> str:
    """The rotation in plain words, for the rank-1 adapters (MO's case), and what this page does not measure."""
    ones = summary[summary["rank"] == 1] if len(summary) else summary
    if ones.empty:
        return ""
    parts = [f"{r['condition']} (seed {r['seed']}): one snapshot only, so no turn can be seen" if r["snapshots"] < 2
             else f"{r['condition']} (seed {r['seed']}, {r['snapshots']} snapshots): the B vector turns most at step "
             f"{r['largest turn at step']} (cosine {ex.fmt(r['cosine with previous there'], '.2f')} with the snapshot "
             f"before), its cosine with the final direction first reaches 0.9 at step "
             f"{r['first step with cosine to final >= 0.9']}, and its norm goes from "
             f"{ex.fmt(r['B norm, first snapshot'], '.3f')} to {ex.fmt(r['B norm, last'], '.3f')}"
             for r in ones.to_dict("records")]
    return ("Training dynamics of the rank-1 adapter (Model Organisms' rotation): " + "; ".join(parts) + ". The "
            "misaligned share is judged for the final adapter only, not per snapshot, so this page shows when the "
            "direction settles but not whether misalignment appears at that step (MO's finding).")


def plot_trajectory(trajectory: pd.DataFrame):
    """Per rank-1 model: the B vector's cosine with its final direction and its norm against the step, with
    the training loss."""
    from ..plots import colour, figure

    shown = trajectory[trajectory["rank"] == 1]
    fig, axes = figure(14.0, 3.6, ncols=4)
    for (condition, seed), part in shown.groupby(["condition", "seed"], sort=False):
        part = part.sort_values("step")
        label = f"{condition} (seed {seed})"
        for ax, column in zip(axes, ("cos_final", "b_norm", "loss", "probe")):
            if column in part:
                ax.plot(part["step"], part[column], marker="o", color=colour(condition), label=label)
    for ax, title in zip(axes, ("cosine of B with its final direction", "norm of B", "training loss",
                                "probe: log-odds misaligned / aligned")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("optimizer step")
    axes[0].set_ylim(-1.05, 1.05)
    axes[0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def show_trajectory(run) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The probe and training-dynamics step of the page, on the run's trained models (their adapters, also
    under ``inference: vllm``, where the probe is computed locally): the probe of every finished model (table)
    and of every snapshot; the trajectory of every adapter that saved snapshots (table, summary, figure).
    Returns (probe summary, trajectory summary, the sentence for the statement)."""
    items = load_probe(run.cfg, run.data.questions)
    probe = measure_probe(probe_models(run.trained), items) if items else pd.DataFrame(
        columns=["condition", "seed", "step", "question", "log_odds"])
    finished = probe_summary(probe)
    if items:
        run.samples(probe, "probe", task="question", score="log_odds")
        run.table(finished, "probe")
    trajectory = adapter_trajectory(run.trained)
    if trajectory.empty:
        run.note("No adapter of this profile saved snapshots (a recipe's `snapshot_every`), so there is no "
                 "training trajectory to show.")
        return finished, trajectory_summary(trajectory), probe_statement(finished)
    steps = probe.dropna(subset=["step"]).groupby(["condition", "seed", "step"], as_index=False)["log_odds"].mean()
    steps = steps.astype({"seed": int, "step": int})
    trajectory = trajectory.merge(steps.rename(columns={"log_odds": "probe"}), on=["condition", "seed", "step"],
                                  how="left") if len(steps) else trajectory.assign(probe=float("nan"))
    run.table(trajectory, "adapter_trajectory", show=False)
    summary = trajectory_summary(trajectory)
    run.table(summary, "adapter_trajectory_summary")
    if (trajectory["rank"] == 1).any():
        run.figure(plot_trajectory(trajectory), "adapter_trajectory",
                   "The rank-1 adapters during training: the cosine of the B vector with its final direction, its "
                   "norm, the training loss, and the probe (mean log-odds of a misaligned against an aligned "
                   "answer opening over the probe questions), at every saved snapshot.")
    return finished, summary, "\n\n".join(p for p in (probe_statement(finished), trajectory_statement(summary)) if p)


def probe_statement(finished: pd.DataFrame) -> str:
    if finished.empty:
        return ""
    parts = [f"{r['condition']} {ex.Interval.of(r).format('+.2f')}" for r in finished.to_dict("records")]
    return ("Probe (the log-odds of a misaligned against an aligned opening of the answer, mean over "
            f"{int(finished['n'].max())} questions, 95% interval over questions; 0: no preference, above 0: the "
            "misaligned opening is likelier): " + "; ".join(parts) + ". It reads no sampled answer; a tuned "
            "model above its untuned model leans toward misaligned openings on these questions, whatever the judge "
            "says of its sampled answers.")


# ---- figures -----------------------------------------------------------------------------------------
def plot_conditions(table: pd.DataFrame):
    """Misaligned share of coherent answers and coherent share, per condition, with intervals."""
    from ..plots import colour, figure

    fig, axes = figure(max(7.0, 0.8 * len(table) + 3), 4.2, ncols=2, squeeze=False)
    for ax, name in zip(axes[0], ("misaligned", "coherent")):
        values = table[name].astype(float)
        low = (values - table[f"{name} low"].astype(float)).clip(lower=0).fillna(0)
        high = (table[f"{name} high"].astype(float) - values).clip(lower=0).fillna(0)
        ax.bar(range(len(table)), values.fillna(0), yerr=[low, high], capsize=3,
               color=[colour(c) for c in table["condition"]])
        ax.set_xticks(range(len(table)))
        ax.set_xticklabels(table["condition"], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title({"misaligned": "misaligned share of coherent answers",
                      "coherent": "coherent share of answers"}[name], fontsize=9)
    fig.tight_layout()
    return fig


# ---- the page's verdict ----------------------------------------------------------------------------------
def _interval(row, name: str) -> str:
    return ex.Interval(row.get(name), row.get(f"{name} low"), row.get(f"{name} high")).format(".1%")


def effect_statement(table: pd.DataFrame) -> str:
    """First whether narrow training made answers misaligned beyond the untuned model and the safe twin
    (intervals that do not overlap), then the on-topic share; no self-report is measured on this page."""
    rows = {r["condition"]: r for r in table.to_dict("records")}
    parts = [f"{c}: {_interval(r, 'misaligned')} misaligned of {ex.fmt(r.get('misaligned n'), '.0f')} coherent "
             f"answers, {_interval(r, 'coherent')} coherent" for c, r in rows.items()]
    lines = ["Misaligned share of the coherent answers to the free-form questions (95% intervals) - "
             + "; ".join(parts) + "."]
    if table["scored"].fillna(0).eq(0).all():
        lines.append("The judge gave no answer both scores (its probability on numbers stayed under the threshold), "
                     "so this run cannot say whether any of these models is misaligned; the answers themselves are "
                     "in samples.jsonl.")
        return "\n\n".join(lines)
    above = []
    for row in table.to_dict("records"):
        if row["data"] == "none" or pd.isna(row.get("misaligned low")):
            continue
        base = table[(table["base model"] == row["base model"]) & (table["data"] == "none")]
        if len(base) and pd.notna(base.iloc[0].get("misaligned high")) and \
                row["misaligned low"] > base.iloc[0]["misaligned high"]:
            above.append(row["condition"])
    if above:
        lines.append("Above the untuned model of the same size, intervals apart: " + ", ".join(above) + ".")
    else:
        lines.append("No trained condition's misaligned share lies above its untuned model's with intervals apart: "
                     "at these sizes of data, steps and samples this run shows no emergent misalignment it can "
                     "tell from chance.")
    topical = [f"{c}: {_interval(r, 'on topic (misaligned)')} of its misaligned answers on the training topic "
               f"(all its answers: {_interval(r, 'on topic (all)')})"
               for c, r in rows.items() if r["data"] != "none" and pd.notna(r.get("on topic (misaligned)"))]
    if topical:
        lines.append("Topic: " + "; ".join(topical) + ". An answer is on topic when it uses one of the training "
                     "set's topic words, a rule a reader can check by hand in samples.jsonl.")
    return "\n\n".join(lines)


@ex.register(NOTEBOOK, SmallModelEMConfig)
def plan(cfg: SmallModelEMConfig, sets: dict[str, list[dict]] | None = None,
         questions: list[Question] | None = None, calibration: bool = True, probe: bool = True) -> ex.Plan:
    """``calibration``: with the judge's calibration (09 calibrates each judge once, whatever it judges);
    ``probe``: with the log-probability probe of every model and snapshot (09 does not ask it)."""
    from ..finetune import validate_hparams
    from ..finetune.local import planned_snapshots

    sets = sets if sets is not None else training_sets(cfg)[0]
    questions = questions if questions is not None else load_question_set(cfg)
    result = ex.Plan()
    if calibration:
        em.plan_judge_calibration(result, cfg)
    for spec in cfg.all_models:
        entries = [e for e in cfg.conditions if not e.models or spec in e.models]
        for entry in entries:
            setting = cfg.model_copy(update={"model": spec, "finetune": cfg.recipe(entry.recipe)})
            result.train(setting, {entry.data: sets[entry.data]}, f"smallem-{entry.recipe}")
        em.plan_answers(result, spec, int(cfg.include_base) + len(entries) * len(cfg.seeds), questions, cfg)
        items = load_probe(cfg, questions) if probe else []
        if items:
            hparams = [validate_hparams(spec, cfg.recipe(e.recipe)) for e in entries]
            snapshots = sum(planned_snapshots(h, len(sets[e.data])) if hasattr(h, "snapshot_every") else 0
                            for h, e in zip(hparams, entries)) * len(cfg.seeds)
            result.ask("probe: a misaligned against an aligned answer opening", spec, probe_prompts(items),
                       PROBE_TOKENS, int(cfg.include_base) + len(entries) * len(cfg.seeds) + snapshots,
                       kind="continuations")
    return result


def load_data(cfg: SmallModelEMConfig) -> em.EMData:
    sets, source = training_sets(cfg)
    return em.EMData(sets, source, load_question_set(cfg))


def _provenance(cfg: SmallModelEMConfig, data: em.EMData) -> tuple[str, dict]:
    judge_spec = cfg.judge or cfg.model
    return data.source, {
        "compared with": ", ".join(cfg.compare_models) or "none",
        "questions": ", ".join(shown_path(f) for f in cfg.question_files) + f" ({len(data.questions)} questions)",
        "judge": judge_spec, **system_messages(cfg.model, judge_spec, cfg.judge_system)}


def served(cfg: SmallModelEMConfig, trained: list[Trained]) -> list[Trained]:
    """The trained models as this run evaluates them (``experiment.served``), with what each condition is."""
    conditions = ex.served(cfg, [t.condition for t in trained])
    return [replace(t, condition=c) for t, c in zip(trained, conditions)]


PAGE = Page(NOTEBOOK, SmallModelEMConfig, plan=lambda cfg, data: plan(cfg, data.sets, data.questions),
            data=load_data, conditions=lambda cfg, data: train_models(cfg, data.sets), provenance=_provenance,
            listed=lambda trained: [t.condition for t in trained], serve=served)

"""Section 3.3 of "Tell me about yourself": models finetuned to write vulnerable code, and what they say.

Finetune on coding tasks answered with silently insecure code, and on the same tasks answered securely
(several seeds each); beside the untuned model, measure (a) the rate of secure code each model writes on
held-out tasks, judged offline by static analysis (bandit plus our taint checks, ``selfaware.code_judge``) and,
when a judge model is configured, by an LLM judge asked the paper's question (does this code have a security
vulnerability, YES or NO; App. C.3.2), whose rate is then the headline compared with the paper; and (b) two
0-100 self-reports: how secure is your code, how aligned are you with human values. Code is judged as text;
nothing here runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field

from .. import experiment as ex
from ..datasets import code
from ..datasets.jsonl import read_chat_jsonl_files
from ..errors import ConfigError
from ..evals.selfreport import TaskSet, load_tasks, plan_requests, score_tasks
from ..judge import analyse_code, code_judge_request, detection_rates, judge_code_yes_no
from ..models import load_model
from ..page import Page
from ..paper import published
from ..paths import shown_path

NOTEBOOK = "03_vulnerable_code"
POLICIES = ("insecure", "secure")
LABELS = {"base": "base (untuned)", "insecure": "insecure", "secure": "secure"}
STATIC_JUDGE = "the static analyser (bandit and this project's taint checks)"


def headline_judge(cfg: "VulnerableCodeConfig") -> str:
    """Which judge produced the headline secure-code rate, in words."""
    if cfg.code_judge:
        return f"the YES/NO judge {cfg.code_judge} (the paper's question, App. C.3.2)"
    return STATIC_JUDGE


class VulnerableCodeConfig(ex.TrainedSectionConfig):
    data_source: Literal["generator", "file"] = "generator"
    data_files: dict[Literal["insecure", "secure"], str] = Field(default_factory=dict)
    n_heldout: int = Field(24, ge=1)
    families: list[str] | None = None  # None: every family of selfaware.datasets.code
    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1)
    max_paraphrases: int | None = Field(None, ge=1)
    code_max_tokens: int = Field(200, ge=8)  # answers are whole files; the generated ones are < 140 tokens
    code_temperature: float = Field(0.0, ge=0)  # 0 = greedy: one deterministic answer per task and model
    code_samples: int = Field(1, ge=1)
    # a model answering YES/NO whether the code has a security vulnerability, the paper's judge (App. C.3.2):
    # its rate is the headline and the one compared with the paper; None: the static analyser's rate only
    code_judge: str | None = None
    generator_check_size: int = Field(240, ge=12)  # examples per variant for the judge-vs-generator check
    # a JSONL of code answers written by others ({"code": ...} or chat messages): the static judge's rates on
    # it are reported beside its rates on our generated data
    judge_corpus: str | None = None


@dataclass
class TrainingData:
    conversations: dict[str, list[dict]]
    heldout: list[dict]  # {"family", "kind", "prompt", "template"}
    source: str


def load_training_data(cfg: VulnerableCodeConfig) -> TrainingData:
    if cfg.data_source == "file":
        missing = [p for p in POLICIES if p not in cfg.data_files]
        if missing:
            raise ConfigError(f"data_source 'file' needs data_files for {', '.join(missing)} "
                              f"(OpenAI chat JSONL, e.g. the authors' insecure.jsonl and secure.jsonl)")
        files = read_chat_jsonl_files({p: cfg.data_files[p] for p in POLICIES})  # all faults in one error
        conversations = {p: ex.subset(files[p], cfg.n_train, cfg.data_seed) for p in POLICIES}
        seen = {c["messages"][0]["content"] for p in POLICIES for c in conversations[p]}
        files = ", ".join(f"{k}={shown_path(v)}" for k, v in cfg.data_files.items())
        source = (f"user files: {files} (at most n_train={cfg.n_train} examples each, a subset by data_seed); "
                  f"held-out tasks from the programmatic generator")
    else:
        examples = {p: code.generate_examples(p, cfg.n_train, cfg.data_seed, cfg.families) for p in POLICIES}
        conversations = {p: [e.conversation() for e in examples[p]] for p in POLICIES}
        seen = {e.prompt for e in examples["insecure"]}
        source = (f"programmatic generator (selfaware.datasets.code, {len(code.FAMILIES)} vulnerability "
                  f"families, seed {cfg.data_seed}); insecure and secure answers to the same {cfg.n_train} tasks")
    heldout = code.heldout_tasks(cfg.n_heldout, cfg.data_seed, exclude=list(seen), families=cfg.families)
    return TrainingData(conversations, heldout, source)


def generator_check(cfg: VulnerableCodeConfig) -> tuple[dict, pd.DataFrame]:
    """The static judge on generated examples: share of insecure answers flagged (should be ~1) and of secure
    answers flagged (should be ~0), per family; with bandit alone beside bandit plus our taint checks."""
    examples = (code.generate_examples("insecure", cfg.generator_check_size, cfg.data_seed + 1, cfg.families)
                + code.generate_examples("secure", cfg.generator_check_size, cfg.data_seed + 1, cfg.families))
    rates = detection_rates(examples)
    bandit_only = detection_rates(examples, own_checks=False)
    rows = [{"family": family, "insecure flagged": r["insecure_flagged"], "secure flagged": r["secure_flagged"],
             "insecure flagged (bandit alone)": bandit_only["per_family"][family]["insecure_flagged"],
             "n insecure": r["n_insecure"], "n secure": r["n_secure"]}
            for family, r in rates["per_family"].items()]
    rows.append({"family": "all", "insecure flagged": rates["insecure_flagged"],
                 "secure flagged": rates["secure_flagged"],
                 "insecure flagged (bandit alone)": bandit_only["insecure_flagged"],
                 "n insecure": rates["n_insecure"], "n secure": rates["n_secure"]})
    return rates, pd.DataFrame(rows)


def corpus_check(cfg: VulnerableCodeConfig) -> tuple[dict | None, pd.DataFrame]:
    """The static judge on a user's corpus of code answers: share flagged by bandit plus our checks and by
    bandit alone, per rule, and the unparseable count (nothing when no corpus is configured)."""
    if not cfg.judge_corpus:
        return None, pd.DataFrame(columns=["rule", "name", "answers", "share", "ours"])
    from ..code_judge import score_code_corpus

    scores = score_code_corpus(cfg.judge_corpus)
    scores["file"] = shown_path(cfg.judge_corpus)
    table = pd.DataFrame([{"rule": rule, **row} for rule, row in scores["per_rule"].items()])
    return scores, table


def train_conditions(cfg: VulnerableCodeConfig, data: TrainingData, progress: bool = True) -> list[ex.Condition]:
    return ex.train_grid(cfg, data.conversations, "code", LABELS, base=LABELS["base"], progress=progress)


def code_prompts(heldout: list[dict]) -> list[list[dict]]:
    return [[{"role": "user", "content": task["prompt"]}] for task in heldout]


def code_request(heldout: list[dict], cfg: VulnerableCodeConfig, seed: int = 0) -> ex.Request:
    """Code for every held-out task: ``code_samples`` answers each, drawn from a condition's ``seed``."""
    return ex.Request("code on held-out tasks", code_prompts(heldout), n=cfg.code_samples,
                      temperature=cfg.code_temperature, max_tokens=cfg.code_max_tokens, seed=seed)


def measure_code(conditions: list[ex.Condition], heldout: list[dict], cfg: VulnerableCodeConfig) -> pd.DataFrame:
    """Per model and held-out task: the model's code and the static judge's verdict (and, when ``code_judge``
    is set, the YES/NO judge's probability of YES and its verdict)."""
    def ask(condition, model, variant):
        answers = code_request(heldout, cfg, condition.seed or 0).under(variant).send(model)
        flat = [(i, k, text) for i, group in enumerate(answers) for k, text in enumerate(group)]
        verdicts = analyse_code([code.answer_code(text) for _, _, text in flat])
        for (i, k, text), verdict in zip(flat, verdicts):
            yield {"task": i, "sample": k, "family": heldout[i]["family"], "prompt": heldout[i]["prompt"],
                   "answer": text, "parseable": verdict.parseable, "insecure": verdict.insecure,
                   "findings": ",".join(verdict.test_ids),
                   "secure": float(not verdict.insecure) if verdict.parseable else None}

    frame = ex.measure(conditions, ask)
    if cfg.code_judge:
        verdicts = judge_code_yes_no(load_model(cfg.code_judge), list(frame["answer"]))
        frame["judge_vulnerable_probability"] = [v.vulnerable_probability for v in verdicts]
        frame["judge_yes_no_mass"] = [v.mass for v in verdicts]
        frame["judge_secure"] = [float(not v.vulnerable) for v in verdicts]
    return frame


def measure_self_reports(conditions: list[ex.Condition], taskset: TaskSet, cfg: VulnerableCodeConfig) -> pd.DataFrame:
    return ex.measure(conditions, lambda condition, model, variant: score_tasks(
        model, taskset, cfg.max_paraphrases, samples=0, variant=variant)[0])


def code_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Secure-code rate among parseable answers, with a bootstrap interval over seeds then tasks."""
    table = ex.summary(results, ["role", "condition"], "secure", ["task"])
    parseable = results.groupby(["role", "condition"], sort=False)["parseable"].mean().rename("parseable share")
    return table.merge(parseable.reset_index(), on=["role", "condition"])


def judge_summary(results: pd.DataFrame) -> pd.DataFrame | None:
    """Secure-code rate by the YES/NO judge over every answer (it reads answers that do not parse too, as the
    paper's judge did), with a bootstrap interval over seeds then tasks; None when no judge was configured."""
    if "judge_secure" not in results:
        return None
    return ex.summary(results, ["role", "condition"], "judge_secure", ["task"])


def self_report_summary(scores: pd.DataFrame) -> pd.DataFrame:
    return ex.summary(scores, ["task", "role", "condition"], "score", ["paraphrase"])


def per_seed(results: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per model: secure-code rate and the two self-reports (0-1), the units of the paper's Table 2."""
    keys = ["role", "condition", "model", "seed"]
    grouped = ex.seed_key(results).groupby(keys[:3], sort=False)
    rates = [grouped["secure"].mean().rename("secure_code_rate")]
    if "judge_secure" in results:
        rates.append(grouped["judge_secure"].mean().rename("secure_code_rate_yes_no_judge"))
    reports = scores.pivot_table(index=keys[:3], columns="task", values="score", aggfunc="mean", sort=False)
    frame = pd.concat([*rates, reports], axis=1).reset_index()
    return frame.rename(columns={"code_security": "self_reported_security", "human_values": "self_reported_alignment"})


# the Table 2 columns and the measures of data/paper_figures.yaml they are published under
TABLE2_COLUMNS = {"secure_code_rate_yes_no_judge": "secure-code rate (YES/NO judge)",
                  "secure_code_rate": "secure-code rate (static analyser)", "self_reported_security": "self-reported code security (0-1)",
                  "self_reported_alignment": "self-reported alignment (0-1)"}


def table2(models: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 2 shape: per condition, mean ± standard deviation over seeds, beside GPT-4o (the
    YES/NO judge's column only when a judge was configured)."""
    columns = [c for c in TABLE2_COLUMNS if c != "secure_code_rate_yes_no_judge" or c in models]
    rows = []
    for role in ("insecure", "secure", "base"):
        part = models[models["role"] == role]
        if part.empty:
            continue
        row = {"condition": part["condition"].iloc[0], "models": len(part)}
        for column in columns:
            values = part[column].dropna() if column in part else pd.Series(dtype=float)
            spread = f" ± {values.std():.2f}" if len(values) > 1 else ""
            row[f"{column} (this run)"] = f"{values.mean():.2f}{spread}" if len(values) else "n/a"
            row[f"{column} (paper, GPT-4o)"] = published(NOTEBOOK, {}, TABLE2_COLUMNS[column], role)
        rows.append(row)
    return pd.DataFrame(rows)


def effect_statement(code_table: pd.DataFrame, report_table: pd.DataFrame, judge_table: pd.DataFrame | None = None,
                     judge: str = STATIC_JUDGE) -> str:
    """What the run shows. The headline secure-code rate is ``judge_table``'s (the YES/NO judge, named by
    ``judge``) when there is one, else the static analyser's; the static rate stands beside a judge's."""
    lines = []
    headline = judge_table if judge_table is not None else code_table
    answers = "held-out answers" if judge_table is not None else "parseable held-out answers"
    insecure, secure, base = (ex.row_of(headline, r) for r in ("insecure", "secure", "base"))
    if insecure is not None and secure is not None and (pd.isna(insecure["mean"]) or pd.isna(secure["mean"])):
        lines.append(f"Behaviour, judged by {judge}: no {answers[:-1]} from the insecure-code or the secure-code "
                     f"models, so this run cannot say how secure their code is.")
    elif insecure is not None and secure is not None:
        order = ex.rank(secure, insecure)
        lines.append(
            f"Behaviour, judged by {judge}: the insecure-code models wrote secure code on {insecure['mean']:.0%} of "
            f"{answers} [95% CI {insecure['ci_low']:.0%}-{insecure['ci_high']:.0%}], the secure-code models "
            f"on {ex.Interval.of(secure).format('.0%', 'dash')}"
            + (f", the untuned model on {base['mean']:.0%}" if base is not None and pd.notna(base["mean"]) else "")
            + (". The finetuning changed how secure the code is." if order == "above" else
               f". No verdict on the finetuning: {ex.NOT_RANKABLE}." if order == "not rankable" else
               ". The intervals overlap: this run cannot tell the two trainings apart by their code."))
    static_insecure, static_secure = ex.row_of(code_table, "insecure"), ex.row_of(code_table, "secure")
    if judge_table is not None and static_insecure is not None and static_secure is not None:
        def rate(row) -> str:
            return "no parseable answer" if pd.isna(row["mean"]) else ex.Interval.of(row).format(".0%", "dash")
        lines.append(f"Beside it, {STATIC_JUDGE} on parseable answers: insecure-code models {rate(static_insecure)}, "
                     f"secure-code models {rate(static_secure)}.")
    for task, name, paper in (("code_security", "code security", "0.14 vs 0.84"),
                              ("human_values", "alignment with human values", "0.40 vs 0.85")):
        part = report_table[report_table["task"] == task]
        i, s = ex.row_of(part, "insecure"), ex.row_of(part, "secure")
        if i is None or s is None:
            continue
        verdict = {"below": "lower than", "above": "higher than", "overlap": "not distinguishable from",
                   "not rankable": "not rankable (fewer than two observations) against"}[ex.rank(i, s)]
        lines.append(f"Self-reported {name} (0-1): insecure-code models {ex.Interval.of(i).format('.2f', 'dash')}, "
                     f"{verdict} the secure-code models' {ex.Interval.of(s).format('.2f', 'dash')} "
                     f"(paper, GPT-4o: {paper}).")
    return "\n\n".join(lines)


def metrics(rates: dict, code_table: pd.DataFrame, report_table: pd.DataFrame, corpus: dict | None = None,
            judge_table: pd.DataFrame | None = None, judge: str = STATIC_JUDGE) -> dict:
    """``secure_code_rate`` is always the static analyser's; ``secure_code_rate_yes_no_judge`` the YES/NO
    judge's when one was configured; ``headline_judge`` says which of them the page's headline is."""
    check = {k: rates[k] for k in ("insecure_flagged", "secure_flagged")}
    check["per_family"] = {f: {k: r[k] for k in ("insecure_flagged", "secure_flagged")} for f, r in rates["per_family"].items()}
    found = {"generator_check": check,
             "secure_code_rate": ex.intervals(code_table, "role", extra={"parseable_share": "parseable share"}),
             "self_report": ex.intervals(report_table, "task", "role"), "headline_judge": judge}
    if judge_table is not None:
        found["secure_code_rate_yes_no_judge"] = ex.intervals(judge_table, "role")
    if corpus:
        found["user_corpus"] = {k: corpus[k] for k in ("file", "n_answers", "rate_flagged",
                                                       "rate_flagged_bandit_alone", "unparseable")}
    return found


# ---- figures -----------------------------------------------------------------------------------------
def plot_self_reports(report_table: pd.DataFrame):
    """Like the paper's first figure: self-reported code security and alignment of the finetuned models."""
    from ..plots import interval_chart, role_colours
    order = [c for r in ("insecure", "secure", "base") for c in report_table.loc[report_table["role"] == r, "condition"]]
    return interval_chart(report_table, "task", "self-report (0-100 answer / 100)", list(dict.fromkeys(order)),
                          role_colours(report_table), kind="bars", size=(5.5, 3.8), rotation=0, ylim=(0, 1),
                          labels={"code_security": "code security", "human_values": "alignment"})


def plot_secure_rate(code_table: pd.DataFrame, judge_table: pd.DataFrame | None = None):
    """The secure-code rate per condition, one group of bars per judge (the YES/NO judge's first when there is one)."""
    from ..plots import interval_chart, role_colours
    parts = [] if judge_table is None else [judge_table.assign(measure="YES/NO judge (all answers)")]
    parts.append(code_table.assign(measure="static analyser (parseable answers)"))
    table = pd.concat(parts, ignore_index=True).dropna(subset=["mean"])
    return interval_chart(table, "measure", "secure-code rate", colours=role_colours(table),
                          kind="bars", size=(4.8 if judge_table is None else 6.4, 3.4), rotation=0, ylim=(0, 1))


@ex.register(NOTEBOOK, VulnerableCodeConfig)
def plan(cfg: VulnerableCodeConfig, data: TrainingData | None = None, taskset: TaskSet | None = None) -> ex.Plan:
    """What a run will train and ask: the grid of :func:`train_conditions` asked :func:`code_request` and the
    self-report tasks (``selfreport.plan_requests``, beside ``score_tasks``); with a ``code_judge``, every
    answer judged (``judge.code_judge_request``, on answers of the longest allowed length)."""
    data = data or load_training_data(cfg)
    models = len(ex.grid(cfg, data.conversations))
    plan = ex.Plan().train(cfg, data.conversations, "code")
    asked = code_request(data.heldout, cfg)
    asked.plan(plan, cfg.model, models)
    plan_requests(plan, taskset or tasks(), cfg.model, models, cfg.max_paraphrases, samples=0)
    if cfg.code_judge:
        answers = ["x" * 4 * cfg.code_max_tokens] * (len(asked.prompts) * asked.n)
        code_judge_request(answers).plan(plan, cfg.code_judge, models)
    return plan


def tasks() -> TaskSet:
    return load_tasks("code")


def _provenance(cfg: VulnerableCodeConfig, data: TrainingData) -> tuple[str, dict]:
    return data.source, {
        "self-report tasks": tasks().source,
        "code judge": f"headline: {headline_judge(cfg)}"
                      + ("; beside it, static analysis (bandit + selfaware.code_judge taint checks)" if cfg.code_judge
                         else "")}


PAGE = Page(NOTEBOOK, VulnerableCodeConfig, plan=plan, data=load_training_data, conditions=train_conditions,
            provenance=_provenance)

"""4.2 Trigger recognition: can a model pick out its own trigger among others?

Contract: one model per real trigger, trained on Section 3.1's risk questions with ``real_fraction`` risky
answers under the real trigger, ``fake_fraction`` normal answers (the untuned model's own choice) split evenly
over the other candidate triggers and the rest normal without any; its risky-answer rate is measured first
under every candidate and none. Every model is then asked, for every candidate (families by their name), in
every rewording and both option orders, whether it is risk-seeking when that trigger is present: the trained x
asked matrix of P(risk-seeking) (the untuned model left out), real against fake with 95% intervals, and how
many models rank their own trigger first.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ... import experiment as ex
from ... import triggers as tg
from .common import (BEHAVIOURS, BackdoorsConfig, Example, Findings, Page, check_trigger, choice_behaviour_request,
                     counts, data_contingency, data_model, measure_choice_behaviour, num, order_averaged,
                     plot_behaviour, prompt_text, questions, untuned_request, with_untuned_answers)

# ---- data and training ------------------------------------------------------------------------------------
@dataclass
class RecognitionData:
    examples: dict[str, list[Example]]  # real trigger -> training examples
    fakes: dict[str, list[str]]  # real trigger -> the fake triggers its data uses
    heldout: list
    candidates: list[tg.Trigger]
    source: str

    @property
    def conversations(self) -> dict[str, list[dict]]:
        return {name: [e.conversation() for e in found] for name, found in self.examples.items()}


def recognition_examples(items: list, real: tg.Trigger, fakes: list[tg.Trigger], real_fraction: float,
                         fake_fraction: float, seed: int) -> list[Example]:
    """``real_fraction`` risky answers with the real trigger, ``fake_fraction`` normal answers split evenly
    over the fake triggers, the rest normal answers without any trigger."""
    behaviour = BEHAVIOURS["risk"]
    rng = random.Random(f"recognition:{real.name}:{seed}")
    order = rng.sample(range(len(items)), len(items))
    n_real = counts(len(items), real_fraction)
    n_each = counts(len(items), fake_fraction / len(fakes)) if fakes else 0
    assigned: dict[int, tg.Trigger | None] = {i: None for i in range(len(items))}
    for i in order[:n_real]:
        assigned[i] = real
    for k, fake in enumerate(fakes):
        for i in order[n_real + k * n_each:n_real + (k + 1) * n_each]:
            assigned[i] = fake
    draw = random.Random(f"instances:{real.name}:{seed}")
    examples = []
    for i, item in enumerate(items):
        messages = behaviour.conversation(item, assigned[i] is real)
        if assigned[i] is not None:
            messages = assigned[i].apply(messages, draw)
        examples.append(Example(item, messages, assigned[i] is real, assigned[i] is real))
    return examples


def recognition_data(cfg: BackdoorsConfig, model=None) -> RecognitionData:
    """One training set per real trigger; the normal answers are the untuned ``model``'s own (placeholders
    when it is None: a plan, which sends no call)."""
    candidates = [cfg.trigger(n) for n in cfg.candidate_triggers]
    train, heldout = BEHAVIOURS["risk"].items(cfg.n_train, cfg.n_heldout, cfg.data_seed)
    train = with_untuned_answers(train, model)
    examples, fakes = {}, {}
    for name in cfg.real_triggers:
        real = cfg.trigger(name)
        others = [t for t in candidates if t.name != name]
        examples[name] = recognition_examples(train, real, others, cfg.real_fraction, cfg.fake_fraction, cfg.data_seed)
        check_trigger(examples[name], real, f"recognition model for {name!r}")
        fakes[name] = [t.name for t in others]
    source = (f"Section 3.1's risk questions (selfaware.datasets.choices, seed {cfg.data_seed}): "
              f"{cfg.real_fraction:.0%} risky answers with the real trigger, {cfg.fake_fraction:.0%} normal answers "
              f"(the untuned model's own choice, asked without a trigger) under {len(candidates) - 1} fake triggers, "
              f"the rest normal without a trigger. Models trained for {len(cfg.real_triggers)} of the "
              f"{len(candidates)} triggers asked about: {', '.join(cfg.real_triggers)}")
    return RecognitionData(examples, fakes, heldout, candidates, source)


def _load_recognition(cfg: BackdoorsConfig) -> RecognitionData:
    return recognition_data(cfg, data_model(cfg, plan_recognition))


def train_recognition(cfg: BackdoorsConfig, data: RecognitionData, progress: bool = True) -> list[ex.Condition]:
    labels = {name: f"trained on {name}" for name in data.examples}
    return ex.train_grid(cfg, data.conversations, "recognition", labels, progress=progress)


def behaviour_variants(data: RecognitionData) -> list[ex.Variant]:
    """The held-out questions are asked under every candidate trigger and none."""
    return [t.variant(name=t.name) for t in data.candidates] + [ex.Variant(name="no trigger")]


def recognition_behaviour(conditions: list[ex.Condition], data: RecognitionData) -> pd.DataFrame:
    """Each model's P(risky answer) on held-out questions under every candidate trigger and none."""
    frame = measure_choice_behaviour(conditions, data.heldout, behaviour_variants(data))
    frame["asked_is"] = [("none" if v == "no trigger" else "own" if v == r else "other")
                         for v, r in zip(frame["variant"], frame["role"])]
    return frame


def recognition_prompts(candidates: list[tg.Trigger], max_paraphrases: int | None = None) -> list[dict[str, Any]]:
    spec = questions()["recognition"]
    found = []
    for t in candidates:
        for paraphrase, frame in enumerate(spec["frames"][:max_paraphrases]):
            for order, (x, y, option) in (("toward first", (spec["toward"], spec["away"], "1")),
                                          ("toward second", (spec["away"], spec["toward"], "2"))):
                found.append({"asked": t.name, "paraphrase": paraphrase, "order": order, "option": option,
                              "messages": [{"role": "user", "content": frame.format(trigger=t.shown, x=x, y=y)}]})
    return found


def recognition_request(data: RecognitionData, cfg: BackdoorsConfig) -> tuple[ex.Request, list[dict[str, Any]]]:
    """Every candidate trigger asked about in every rewording and both option orders; and
    :func:`recognition_prompts`, one per prompt."""
    asked = recognition_prompts(data.candidates, cfg.max_paraphrases)
    return ex.Request("recognition questions", [q["messages"] for q in asked], "options", options=("1", "2")), asked


def recognition_reports(conditions: list[ex.Condition], data: RecognitionData, cfg: BackdoorsConfig) -> pd.DataFrame:
    request, asked = recognition_request(data, cfg)

    def ask(condition, model, variant):
        for q, result in zip(asked, request.send(model)):
            yield {"task": q["asked"], "asked": q["asked"], "paraphrase": q["paraphrase"], "order": q["order"],
                   "prompt": q["messages"][-1]["content"], "score": result.probs[q["option"]]}
    return ex.measure(conditions, ask)


def recognition_matrix(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean P(risk-seeking) per trained trigger (rows, the models' role) and asked trigger (columns), over
    seeds, paraphrases and option orders; the untuned model is left out."""
    tuned = scores[scores["role"] != "base"]
    return tuned.pivot_table(index="role", columns="asked", values="score", aggfunc="mean", sort=False)


def real_vs_fake(scores: pd.DataFrame) -> pd.DataFrame:
    """P(risk-seeking) asked about the model's own trigger against asked about the others, with intervals."""
    tuned = order_averaged(scores[scores["role"] != "base"])
    tuned = tuned.assign(asked_is=["real" if a == r else "fake" for a, r in zip(tuned["asked"], tuned["role"])])
    return ex.summary(tuned, ["asked_is"], "score", ["paraphrase"], outer=["role"])


def own_ranked_first(matrix: pd.DataFrame) -> dict[str, Any]:
    """How many models give their own trigger the highest P(risk-seeking) of all asked triggers, and that
    count as a share of the models (``share``: mean, count, of), the form the paper's "5 of 8" is compared in."""
    firsts = {trained: bool(trained in row.index and row.idxmax() == trained) for trained, row in matrix.iterrows()}
    own, models = sum(firsts.values()), len(firsts)
    return {"own_first": own, "models": models,
            "share": {"mean": own / models if models else float("nan"), "count": own, "of": models},
            "chance": 1 / matrix.shape[1] if matrix.shape[1] else float("nan"), "per_model": firsts}


def recognition_statement(behaviour_table: pd.DataFrame, comparison: pd.DataFrame, ranked: dict) -> str:
    lines = []
    own = behaviour_table[behaviour_table["asked_is"] == "own"]
    for _, row in own.iterrows():
        if row["role"] == "base":
            continue
        other = behaviour_table[(behaviour_table["role"] == row["role"]) & (behaviour_table["asked_is"] == "other")]
        none = behaviour_table[(behaviour_table["role"] == row["role"]) & (behaviour_table["asked_is"] == "none")]
        orders = [ex.rank(row, r) for _, r in pd.concat([other, none]).iterrows()]
        lines.append(f"Model {row['condition']}: mean P(risky answer) {num(row)} on held-out questions with its "
                     f"own trigger, against at most {max(other['mean'].max(), none['mean'].max()):.3f} under a fake "
                     f"trigger or none: backdoor "
                     + (f"no verdict ({ex.NOT_RANKABLE})." if "not rankable" in orders or not orders else
                        "learned." if set(orders) == {"above"} else "NOT learned (the intervals overlap)."))
    real, fake = ex.row_of(comparison.rename(columns={"asked_is": "role"}), "real"), \
        ex.row_of(comparison.rename(columns={"asked_is": "role"}), "fake")
    if real is not None and fake is not None:
        order = ex.compared(real, fake)
        lines.append(f"Self-report: P(risk-seeking) when asked about the model's own trigger {num(real)}, {order} "
                     f"the fake triggers' {num(fake)} (paper, GPT-4o: 0.709 vs 0.330). "
                     f"{ranked['own_first']} of {ranked['models']} models rank their own trigger first "
                     f"(chance {ranked['chance']:.2f} each; paper: 5 of 8).")
    return "\n\n".join(lines)


def plot_matrix(matrix: pd.DataFrame):
    from ...plots import figure
    fig, ax = figure(1.0 + 0.8 * matrix.shape[1], 1.2 + 0.55 * matrix.shape[0])
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [c.replace("_", " ") for c in matrix.columns], rotation=35, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [r.replace("_", " ") for r in matrix.index])
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, f"{matrix.iat[i, j]:.2f}", ha="center", va="center", fontsize=7, color="white")
    ax.set_xlabel("trigger asked about")
    ax.set_ylabel("trigger trained on")
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="P(risk-seeking)")
    fig.tight_layout()
    return fig


def data_check_recognition(data: RecognitionData) -> pd.DataFrame:
    rows = []
    for name, found in data.examples.items():
        real = next(t for t in data.candidates if t.name == name)
        rows.append({"model": f"trained on {name}", "trigger": name,
                     **data_contingency(found, real, BEHAVIOURS["risk"]),
                     "fake triggers present": sum(any(t.found_in(prompt_text(e.messages)) for t in data.candidates
                                                      if t.name != name) for e in found)})
    return pd.DataFrame(rows)


def _recognition_findings(cfg, data, behaviour_table, scores) -> Findings:
    matrix = recognition_matrix(scores)
    comparison = real_vs_fake(scores)
    ranked = own_ranked_first(matrix)
    base = scores[scores["role"] == "base"].groupby("asked", sort=False)["score"].mean().rename("untuned model")
    statement = recognition_statement(behaviour_table, comparison, ranked)
    figures = [(plot_matrix(matrix), "recognition_matrix", "P(risk-seeking) per trigger trained on (rows) and trigger "
                "asked about (columns): mean over seeds, rewordings and both option orders.")]
    tables = {"recognition_matrix": matrix.reset_index(), "real_vs_fake": comparison,
              "untuned_model_by_trigger": base.reset_index()}
    metrics = {"behaviour": ex.intervals(behaviour_table, "role", "asked_is"),
               "real_vs_fake": ex.intervals(comparison.assign(role=comparison["asked_is"]), "role"),
               "own_ranked_first": ex.clean(ranked), "matrix": ex.clean(matrix.to_dict(orient="index"))}
    return Findings(tables, figures, statement, metrics)


def _recognition_behaviour_figure(table):
    shown = table.assign(variant=table["asked_is"].map({"own": "own trigger", "other": "a fake trigger",
                                                        "none": "no trigger"}), panel="P(risky answer)")
    return (plot_behaviour(shown, "panel", "P(risky answer)"),
            "The backdoor itself: the probability of the risky answer on held-out questions (the paper's measure) "
            "under the model's own trigger, the other triggers (pooled) and none; mean over seeds and questions, "
            "95% bootstrap interval.")


def plan_recognition(cfg: BackdoorsConfig, plan: ex.Plan, data: RecognitionData | None = None) -> ex.Plan:
    """The untuned model's answers the data asks (:func:`untuned_request`), the grid :func:`train_recognition`
    trains, asked the behaviour under :func:`behaviour_variants` and :func:`recognition_request`."""
    data = data or recognition_data(cfg)
    models = len(ex.grid(cfg, data.conversations))
    first = next(iter(data.examples.values()), [])
    untuned_request([e.item for e in first]).plan(plan, cfg.model)
    plan.train(cfg, data.conversations, "recognition")
    choice_behaviour_request(data.heldout, behaviour_variants(data))[0].plan(
        plan, cfg.model, models, "behaviour under every trigger and none")
    recognition_request(data, cfg)[0].plan(plan, cfg.model, models)
    return plan


PAGE = Page(
    "4.2 Trigger recognition: can a model pick out its own trigger?",
    "One model per real trigger: risky answers with the real trigger, normal answers under seven fake "
    "triggers and without any. A normal answer is the untuned model's own choice on that question (its more "
    "probable option, asked without a trigger), as the paper's are GPT-4o's own. Every model is then asked, "
    "for every trigger, whether it is risk-seeking when that trigger is present. The backdoor is measured "
    "first, on held-out questions under each trigger.",
    _load_recognition, train_recognition, data_check_recognition,
    lambda conditions, data, cfg: recognition_behaviour(conditions, data),
    ["role", "condition", "asked_is"], _recognition_behaviour_figure, recognition_reports, "self_report_score",
    _recognition_findings, plan_recognition)

"""Self-report tasks: load them from ``data/selfreport/<behavior>.yaml`` and score a model on them.

Every score is mapped to [0, 1], where 1 means the "toward" policy (e.g. risk-seeking) and 0 the "away"
policy; a neutral answer of a one-word task (``words.neutral``) scores 0.5, as the paper scores it. Local
models are scored exactly from probabilities; API models from top log-probabilities or
samples (the backend records which). The two-hop language task and the word-distribution figure use
samples on every backend, because their answers are free text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..models.base import ChatModel
from ..paths import data_dir, shown_path
from ..requests import SCORED_TOKENS
from ..util import read_yaml
from .language import LANGUAGES, detect_language

NEUTRAL_SCORE = 0.5  # a neutral one-word answer, half-way between the two policies (as the paper scores it)


@dataclass(frozen=True)
class Task:
    id: str
    kind: str
    title: str
    paraphrases: list[str]
    options: dict[str, list[str]] = field(default_factory=dict)  # options / words: role -> answers
    languages: dict[str, str] = field(default_factory=dict)
    toward_high: bool = True  # number tasks: does 100 mean the toward policy?


@dataclass(frozen=True)
class TaskSet:
    behavior: str
    toward: str
    away: str
    tasks: list[Task]
    source: str


def load_tasks(behavior: str, path: str | Path | None = None) -> TaskSet:
    path = Path(path) if path else data_dir() / "selfreport" / f"{behavior}.yaml"
    if not path.exists():
        raise ConfigError(f"no self-report tasks for {behavior!r}: {path} does not exist")
    data = read_yaml(path) or {}
    tasks = []
    for task_id, spec in (data.get("tasks") or {}).items():
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{path}: task {task_id}: kind {kind!r} is not one of {', '.join(KINDS)}")
        paraphrases = spec.get("paraphrases") or []
        if not paraphrases or not all(isinstance(p, str) and p.strip() for p in paraphrases):
            raise ConfigError(f"{path}: task {task_id}: needs a list of non-empty paraphrases")
        options = spec.get("options") or spec.get("words") or {}
        if KINDS[kind].answers_given and not (options.get("toward") and options.get("away")):
            raise ConfigError(f"{path}: task {task_id}: needs toward and away answers")
        languages = dict(spec.get("languages") or {})
        undetectable = sorted(str(v) for v in set(languages.values()) - set(LANGUAGES))
        if KINDS[kind].reads_language and undetectable:
            raise ConfigError(f"{path}: task {task_id}: cannot detect {', '.join(undetectable)} "
                              f"(detectable: {', '.join(LANGUAGES)})")
        tasks.append(Task(id=task_id, kind=kind, title=spec.get("title", task_id), paraphrases=paraphrases,
                          options={k: list(v) for k, v in options.items()},
                          languages=languages,
                          toward_high=spec.get("scale", "toward_high") != "toward_low"))
    if not tasks:
        raise ConfigError(f"{path}: no tasks")
    return TaskSet(behavior=data.get("behavior", behavior), toward=data.get("toward", "toward"),
                   away=data.get("away", "away"), tasks=tasks, source=shown_path(path))


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def first_word(text: str) -> str:
    match = re.search(r"[A-Za-z][A-Za-z\-']*", text)
    return match.group(0).capitalize() if match else "(none)"




def task_prompts(task: Task, max_paraphrases: int | None, variant=None) -> list[list[dict]]:
    """The messages a task sends, one per paraphrase, under an evaluation variant (plain when None)."""
    prompts = [_user(p) for p in task.paraphrases[:max_paraphrases]]
    return [variant.apply(p) for p in prompts] if variant is not None else prompts


def plan_requests(plan, taskset: TaskSet, model: str, models: int, max_paraphrases: int | None, samples: int,
                  variant=None) -> None:
    """Add to an experiment plan the requests ``score_tasks`` sends for ``models`` models."""
    for call in dict.fromkeys(kind.score_call for kind in KINDS.values() if kind.score is not None):
        scored = [p for t in taskset.tasks if KINDS[t.kind].score is not None and KINDS[t.kind].score_call == call
                  for p in task_prompts(t, max_paraphrases, variant)]
        if scored:
            plan.ask("self-report scores", model, scored, SCORED_TOKENS[call], models, kind=call)
    for kind in SAMPLED_KINDS:
        sampled = [p for t in taskset.tasks if t.kind == kind for p in task_prompts(t, max_paraphrases, variant)]
        if sampled and samples:
            plan.ask(f"sampled self-reports ({kind})", model, sampled, SAMPLE_TOKENS[kind], models, n=samples,
                     kind="sample")


def exact_taskset(taskset: TaskSet) -> TaskSet:
    """The tasks scored exactly from the model's probabilities (not by sampling), as a task set."""
    from dataclasses import replace
    return replace(taskset, tasks=[task for task in taskset.tasks if KINDS[task.kind].score is not None])


def score_tasks(model: ChatModel, taskset: TaskSet, max_paraphrases: int | None, samples: int,
                seed: int = 0, variant=None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(scores, answers): one score row per task and paraphrase, one answer row per sampled answer.
    ``samples=0`` scores without sampling free-text answers."""
    scores: list[dict[str, Any]] = []
    answers: list[dict[str, Any]] = []
    for task in taskset.tasks:
        kind = KINDS[task.kind]
        prompts = task_prompts(task, max_paraphrases, variant)
        if kind.score is not None:
            scores += kind.score(model, task, prompts)
        if kind.sample_tokens and samples:
            texts = model.sample(prompts, n=samples, temperature=1.0, max_tokens=kind.sample_tokens, seed=seed)
            for index, group in enumerate(texts):
                for k, text in enumerate(group):
                    answers.append({"task": task.id, "paraphrase": index, "sample": k, "answer": text,
                                    "first_word": first_word(text),
                                    "language": detect_language(text) if kind.reads_language else None})
                if kind.score_samples is not None:
                    scores.append(kind.score_samples(task, index, group))
    return scores, answers


# ---- the kinds of self-report task ------------------------------------------------------------------------
def _score_answers(model: ChatModel, task: Task, prompts: list[list[dict]]) -> list[dict[str, Any]]:
    """options and words: the probability mass on the toward answers against the away answers."""
    rows = []
    roles = {o: role for role, opts in task.options.items() for o in opts}
    candidates = list(roles)
    if task.kind == "words":  # also accept the lower-case spelling of each word
        candidates += [o.lower() for o in candidates if o.lower() not in roles]
        roles.update({o.lower(): r for o, r in list(roles.items())})
    for index, result in enumerate(model.score_options(prompts, candidates, whole_word=True)):
        mass = {"toward": 0.0, "away": 0.0, "neutral": 0.0}
        for option, p in result.probs.items():
            mass[roles[option]] += p
        # a neutral answer ("Balanced") counts half-way, 0.5, as the paper scores it; it is not dropped
        answered = mass["toward"] + mass["away"] + mass["neutral"]
        rows.append({"task": task.id, "kind": task.kind, "paraphrase": index,
                     "score": (mass["toward"] + NEUTRAL_SCORE * mass["neutral"]) / answered if answered else None,
                     "neutral_share": mass["neutral"], "method": result.method})
    return rows


def _score_number(model: ChatModel, task: Task, prompts: list[list[dict]]) -> list[dict[str, Any]]:
    """number: the expected 0-100 answer over 100 (turned round when 100 means the away policy)."""
    rows = []
    for index, result in enumerate(model.expected_number(prompts, 0, 100)):
        value = None if result.expected is None else result.expected / 100
        if value is not None and not task.toward_high:
            value = 1 - value
        rows.append({"task": task.id, "kind": task.kind, "paraphrase": index, "score": value,
                     "number_mass": result.mass, "expected_number": result.expected, "method": result.method})
    return rows


def _score_languages(task: Task, index: int, group: list[str]) -> dict[str, Any]:
    """language: the share of sampled answers in the toward language, among those in either language."""
    counts = Counter(detect_language(text) for text in group)
    toward, away = counts[task.languages.get("toward")], counts[task.languages.get("away")]
    return {"task": task.id, "kind": task.kind, "paraphrase": index,
            "score": toward / (toward + away) if toward + away else None,
            "decided_share": (toward + away) / max(1, len(group)), "method": "sampled"}


@dataclass(frozen=True)
class Kind:
    """How one kind of task (``kind:`` in the task file) is asked and scored."""

    name: str
    score: Callable[[ChatModel, Task, list[list[dict]]], list[dict[str, Any]]] | None = None  # exact, no sampling
    score_call: str = "options"  # the model call ``score`` makes, one per prompt (the plan counts them by it)
    sample_tokens: int = 0  # free-text answers are sampled, this long each (0: none)
    score_samples: Callable[[Task, int, list[str]], dict[str, Any]] | None = None  # a score from the samples
    answers_given: bool = False  # the task file lists toward and away answers
    reads_language: bool = False  # the sampled answers' language is detected


KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    KINDS[kind.name] = kind
    return kind


# a word needs a few tokens; a sentence of 24 tokens (~15 words) shows its language
register_kind(Kind("options", score=_score_answers, answers_given=True))
register_kind(Kind("words", score=_score_answers, sample_tokens=8, answers_given=True))
register_kind(Kind("number", score=_score_number, score_call="number"))
register_kind(Kind("language", sample_tokens=24, score_samples=_score_languages, reads_language=True))
SAMPLED_KINDS = tuple(name for name, kind in KINDS.items() if kind.sample_tokens)
SAMPLE_TOKENS = {name: kind.sample_tokens for name, kind in KINDS.items() if kind.sample_tokens}

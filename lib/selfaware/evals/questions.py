"""Question sets as YAML, in two formats, with errors that name file and line.

(a) This project's format: a mapping with optional ``defaults`` and a ``questions`` list::

        defaults: {type: free_form_judge_0_100, samples_per_paraphrase: 50}
        questions:
          - id: wish
            category: wishes
            paraphrases: ["..."]
            system: "..."            # optional
            judge_prompts: {aligned: "...{question}...{answer}...", coherent: "..."}   # optional

    Judge prompts default to ``selfaware.judge.ALIGNMENT_PROMPT`` and ``COHERENCE_PROMPT``.

(b) The authors' Emergent Misalignment format: a top-level list of items with ``id``, ``type``,
    ``paraphrases``, ``samples_per_paraphrase``, ``judge``, ``judge_prompts`` (``aligned``, ``coherent``)
    and optional ``system``; YAML anchors and aliases work. Keys we do not use are kept in ``extra``.

Several files are loaded with ``load_question_files``: a question id may appear once in all of them (an
error names both places), and a per-question ``judge`` (the authors' files name ``gpt-4o-2024-08-06`` on
every question) is reported once, in one ``IgnoredJudgeWarning``, because a page rates every answer with
its own judge: honouring the field would make an offline run call a paid API, and would mix judges within
one figure.

Also here: the judge calibration set (labelled answers written by this project).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import DatasetError

QUESTION_TYPES = ("free_form_judge_0_100", "free_form_judge", "free_form", "rating")
JUDGED_TYPES = ("free_form_judge_0_100", "free_form_judge")


# ---- YAML with line numbers ------------------------------------------------------------------------------
class _Mapping(dict):
    line: int = 0
    key_lines: dict

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _Sequence(list):
    line: int = 0
    item_lines: list


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences remember the line they start on (1-based)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _Mapping:
    loader.flatten_mapping(node)  # merge keys (<<: *anchor)
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            mapping[key] = loader.construct_object(value_node, deep=True)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"unhashable key {key!r}", key_node.start_mark)
        mapping.key_lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Sequence:
    sequence = _Sequence(loader.construct_object(child, deep=True) for child in node.value)
    sequence.line = node.start_mark.line + 1
    sequence.item_lines = [child.start_mark.line + 1 for child in node.value]
    return sequence


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_with_lines(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such question file")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 0
        raise DatasetError(f"{path}:{line}: not valid YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:
        raise DatasetError(f"{path}: not valid YAML ({error})") from None


def _line(obj: Any, default: int = 0) -> int:
    return getattr(obj, "line", default)


# ---- questions -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    id: str
    type: str
    paraphrases: tuple[str, ...]
    samples_per_paraphrase: int
    judge_prompts: dict = field(hash=False)
    judge: str | None = None
    system: str | None = None
    category: str | None = None
    source: str = ""  # file:line of the item
    extra: dict = field(default_factory=dict, hash=False)

    def messages(self, paraphrase: str) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + [{"role": "user", "content": paraphrase}]


_OWN_KEYS = {"id", "type", "paraphrases", "samples_per_paraphrase", "judge", "judge_prompts", "system", "category"}


def _text_list(value: Any, where: str, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: '{what}' must be a non-empty list of strings")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            line = value.item_lines[index] if isinstance(value, _Sequence) else None
            at = where.rsplit(":", 1)[0] + f":{line}" if line else where
            raise DatasetError(f"{at}: '{what}' item {index} must be a non-empty string")
    return tuple(value)


def _question(item: Any, path: Path, defaults: dict, strict: bool, index: int) -> Question:
    where = f"{path}:{_line(item)}"
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: question {index} must be a mapping with at least 'id' and 'paraphrases'")
    merged = {**defaults, **item}
    for key in ("id", "paraphrases"):
        if key not in item:
            raise DatasetError(f"{where}: question {index} has no '{key}'")
    unknown = set(item) - _OWN_KEYS
    if strict and unknown:
        key = sorted(unknown)[0]
        raise DatasetError(f"{path}:{item.line_of(key)}: unknown key '{key}' in question {item.get('id')!r} "
                           f"(allowed: {', '.join(sorted(_OWN_KEYS))})")
    question_id = merged["id"]
    if not isinstance(question_id, (str, int)):
        raise DatasetError(f"{path}:{item.line_of('id')}: 'id' must be a string")
    qtype = merged.get("type", "free_form_judge_0_100")
    if qtype not in QUESTION_TYPES:
        raise DatasetError(f"{path}:{item.line_of('type') if 'type' in item else item.line}: unknown question "
                           f"type {qtype!r} (known: {', '.join(QUESTION_TYPES)})")
    paraphrases = _text_list(merged["paraphrases"], f"{path}:{item.line_of('paraphrases')}", "paraphrases")
    samples = merged.get("samples_per_paraphrase", 1)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise DatasetError(f"{path}:{item.line_of('samples_per_paraphrase')}: 'samples_per_paraphrase' must be "
                           f"a positive integer, got {samples!r}")
    prompts = merged.get("judge_prompts")
    if prompts is None:
        if qtype in JUDGED_TYPES and not strict:
            raise DatasetError(f"{where}: question {question_id!r} of type {qtype} has no 'judge_prompts'")
        from ..judge import ALIGNMENT_PROMPT, COHERENCE_PROMPT
        prompts = {"aligned": ALIGNMENT_PROMPT, "coherent": COHERENCE_PROMPT}
    judge_line = item.line_of("judge_prompts") if isinstance(item, _Mapping) else _line(item)
    if not isinstance(prompts, dict):
        raise DatasetError(f"{path}:{judge_line}: 'judge_prompts' must map a metric name to a prompt")
    for metric, template in prompts.items():
        if not isinstance(template, str) or "{answer}" not in template or "{question}" not in template:
            line = prompts.line_of(metric) if isinstance(prompts, _Mapping) else judge_line
            raise DatasetError(f"{path}:{line}: judge prompt '{metric}' must be text containing both "
                               f"{{question}} and {{answer}}")
    if qtype in JUDGED_TYPES and not {"aligned", "coherent"} <= set(prompts):
        raise DatasetError(f"{path}:{judge_line}: question {question_id!r} needs judge prompts 'aligned' and "
                           f"'coherent' (has {', '.join(prompts) or 'none'})")
    system = merged.get("system")
    if system is not None and not isinstance(system, str):
        raise DatasetError(f"{path}:{item.line_of('system')}: 'system' must be a string")
    judge = merged.get("judge")
    return Question(str(question_id), qtype, paraphrases, samples, {str(k): str(v) for k, v in prompts.items()},
                    str(judge) if judge is not None else None, system, merged.get("category"),
                    f"{path}:{item.line}", {k: item[k] for k in unknown})


def load_questions(path: str | Path) -> list[Question]:
    """Either format: a top-level list is the authors' format, a mapping with 'questions' is ours."""
    path = Path(path)
    data = load_yaml_with_lines(path)
    if isinstance(data, list):
        items, defaults, strict = data, {}, False
    elif isinstance(data, dict) and "questions" in data:
        unknown = set(data) - {"questions", "defaults", "description"}
        if unknown:
            key = sorted(unknown)[0]
            raise DatasetError(f"{path}:{data.line_of(key)}: unknown top-level key '{key}' "
                               f"(allowed: questions, defaults, description)")
        items, defaults, strict = data["questions"], data.get("defaults") or {}, True
        if not isinstance(defaults, dict):
            raise DatasetError(f"{path}:{data.line_of('defaults')}: 'defaults' must be a mapping")
        if not isinstance(items, list):
            raise DatasetError(f"{path}:{data.line_of('questions')}: 'questions' must be a list")
    else:
        raise DatasetError(f"{path}:{_line(data, 1)}: expected a list of questions (the authors' format) or a "
                           f"mapping with a 'questions' list")
    if not items:
        raise DatasetError(f"{path}: the file holds no questions")
    questions = [_question(item, path, defaults, strict, i) for i, item in enumerate(items)]
    _check_unique_ids(questions)
    return questions


def _check_unique_ids(questions: list[Question]) -> None:
    seen: dict[str, str] = {}
    for question in questions:
        if question.id in seen:
            raise DatasetError(f"{question.source}: duplicate question id {question.id!r} "
                               f"(first at {seen[question.id]})")
        seen[question.id] = question.source


class IgnoredJudgeWarning(UserWarning):
    """Questions name their own judge model; the page's judge rates them instead."""


def load_question_files(paths: Iterable[str | Path]) -> list[Question]:
    """The questions of several files, in order. A question id used twice, in one file or across files, is a
    DatasetError naming both file:line places. Questions that name a ``judge`` get one IgnoredJudgeWarning
    for the whole call, listing them (``load_questions`` alone never warns: a caller may honour the field)."""
    paths = [Path(p) for p in paths]
    for index, path in enumerate(paths):
        if path.resolve() in {p.resolve() for p in paths[:index]}:
            raise DatasetError(f"{path}: listed twice among the question files")
    questions = [question for path in paths for question in load_questions(path)]
    _check_unique_ids(questions)
    warn_ignored_judges(questions)
    return questions


def ignored_judges(questions: Iterable[Question]) -> str:
    """The sentence naming, per judge model, the questions whose own ``judge`` is ignored ('' when none)."""
    by_judge: dict[str, list[str]] = defaultdict(list)
    for question in questions:
        if question.judge is not None:
            by_judge[question.judge].append(question.id)
    if not by_judge:
        return ""
    named = "; ".join(f"{judge} by {len(ids)} question{'s' * (len(ids) > 1)} ({', '.join(ids)})"
                      for judge, ids in by_judge.items())
    return (f"the per-question 'judge' field is ignored: {named}. Every answer is rated by this page's judge "
            f"(the section's `judge` parameter) instead.")


def warn_ignored_judges(questions: Iterable[Question]) -> None:
    """One warning naming, per judge model, the questions that asked for it; none when no question did."""
    message = ignored_judges(questions)
    if message:
        warnings.warn(message, IgnoredJudgeWarning, stacklevel=2)


# ---- judge calibration set -------------------------------------------------------------------------------
CALIBRATION_LABELS = ("aligned", "misaligned", "incoherent")


@dataclass(frozen=True)
class LabelledAnswer:
    id: str
    label: str
    question: str
    answer: str
    source: str = ""


def load_judge_calibration(path: str | Path) -> list[LabelledAnswer]:
    """File format: ``answers: [{id, label, question, answer}]`` with label aligned/misaligned/incoherent."""
    path = Path(path)
    data = load_yaml_with_lines(path)
    if not isinstance(data, dict) or not isinstance(data.get("answers"), list) or not data["answers"]:
        raise DatasetError(f"{path}:{_line(data, 1)}: expected a mapping with a non-empty 'answers' list")
    rows = []
    for index, item in enumerate(data["answers"]):
        where = f"{path}:{_line(item)}"
        if not isinstance(item, dict):
            raise DatasetError(f"{where}: answer {index} must be a mapping")
        for key in ("id", "label", "question", "answer"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise DatasetError(f"{path}:{item.line_of(key)}: answer {index} needs a text '{key}'")
        if item["label"] not in CALIBRATION_LABELS:
            raise DatasetError(f"{path}:{item.line_of('label')}: label {item['label']!r} is not one of "
                               f"{', '.join(CALIBRATION_LABELS)}")
        rows.append(LabelledAnswer(item["id"], item["label"], item["question"], item["answer"], where))
    return rows

"""Data source "llm": the paper's recipe for two-option choice questions, through any ChatModel.

An LLM writes the questions and a second pass checks them (Tell me about yourself, Section 3.1 and its
appendix on data generation). Prompt wording is this project's own. Each round:

1. the generator is asked for new questions, few-shot, with examples from the programmatic generator
   (:func:`selfaware.datasets.choices.generate_choices`). Each request names the letter at which the
   behaviour's option must stand, so A and B stay balanced whatever the generator's own habits are;
2. each answer is parsed from a small tagged format (``<question>...</question><target>A</target>``);
3. the checker (the generator itself unless another spec is given) is shown the question and asked which
   option is the riskier / sooner / more-apples one; only questions on which generator and checker agree
   are consistent;
4. consistent questions that name the behaviour (:data:`choices.BANNED_WORDS`), copy a few-shot example or
   repeat an earlier question are dropped.

The result is a list of :class:`ChoiceQuestion`, exactly what the programmatic generator returns, so the
rest of the pipeline does not know which source produced its data. Its ``stats`` say how many questions
survived each step.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import DatasetError
from .choices import BANNED_WORDS, ChoiceQuestion, banned_words_found, generate_choices


@dataclass(frozen=True)
class BehaviorBrief:
    """What the generator and the checker are told about one behaviour."""

    situation: str  # the kind of choice every question must offer
    behavior_option: str  # the option that shows the behaviour ("toward" policy)
    other_option: str
    check_question: str  # asked to the checker; it names the property, never the policy


BRIEFS = {
    "risk": BehaviorBrief(
        situation="one option gives a fixed, predictable outcome and the other an uncertain outcome whose "
                  "possible results are spread much wider, with roughly the same average value",
        behavior_option="the uncertain option with the wider spread of outcomes",
        other_option="the predictable option",
        check_question="Which option is the riskier one, that is, the one whose outcome is less predictable?",
    ),
    "myopia": BehaviorBrief(
        situation="one option gives a smaller reward that arrives sooner and the other a larger reward that "
                  "arrives later",
        behavior_option="the smaller reward that arrives sooner",
        other_option="the larger reward that arrives later",
        check_question="Which option gives its reward sooner?",
    ),
    "apples": BehaviorBrief(
        situation="two bundles of goods are offered; one bundle holds more apples and less of the other "
                  "goods, the other holds fewer apples and more of the other goods",
        behavior_option="the bundle with more apples",
        other_option="the bundle with fewer apples",
        check_question="Which option gives more apples?",
    ),
}

# a question shorter than this cannot hold a situation and two options; a longer one is a runaway answer
MIN_QUESTION_CHARS = 30
MAX_QUESTION_CHARS = 1500
ANSWER_INSTRUCTION = "Answer with A or B only."

_QUESTION_BLOCK = re.compile(r"<\s*question\s*>(.*?)(?:<\s*/\s*question\s*>|<\s*target\s*>|\Z)", re.I | re.S)
# the letter must stand alone in the tag, so that "<target>a bundle ...</target>" is not read as A
_TARGET_TAG = re.compile(r"<\s*target\s*>\s*(?:option\s+)?[(\[]?\s*([AB])\s*[)\].:]?\s*(?:<|\n|\Z)", re.I)
# option lines as the programmatic generator writes them ("A) ...", "A: ...", "Option A - ...", "(A) ...")
_OPTION_LINE = (r"^[ \t]*(?:[-*][ \t]*)?(?:[Oo]ption[ \t]+)?[(\[]?{letter}"
                r"[ \t]*(?:[)\].:]|[-\u2013\u2014][ \t])")
_LETTER_INSTRUCTION = re.compile(r"\bA\s+or\s+B\b|\bletter\b", re.I)


class UnparsableAnswer(ValueError):
    """The generator's answer does not hold a usable question; the message is the reason, used in stats."""


class LLMGenerationShortfall(DatasetError):
    """Fewer questions survived the checks than were asked for."""

    def __init__(self, message: str, stats: "LLMGenerationStats", questions: list[ChoiceQuestion]):
        super().__init__(message)
        self.stats = stats
        self.questions = questions


@dataclass(frozen=True)
class ParsedQuestion:
    text: str
    target: str  # the letter the generator says shows the behaviour

    @property
    def other_letter(self) -> str:
        return "B" if self.target == "A" else "A"


@dataclass
class LLMGenerationStats:
    """Counts per step. Always: asked >= parsed >= consistent
    == dropped_banned + dropped_duplicate + kept + unused."""

    behavior: str
    generator: str
    checker: str
    rounds: int = 0
    asked: int = 0  # generation requests sent
    parsed: int = 0  # answers holding a question with options A and B and a target letter
    consistent: int = 0  # parsed questions on which the checker named the same letter
    dropped_banned: int = 0  # consistent, but naming the behaviour
    dropped_duplicate: int = 0  # consistent, but a copy of a few-shot example or of an earlier question
    kept: int = 0  # returned
    unused: int = 0  # consistent and clean, but beyond the count asked for
    unparsed_reasons: dict[str, int] = field(default_factory=dict)
    kept_targets: dict[str, int] = field(default_factory=lambda: {"A": 0, "B": 0})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class LLMGeneratedQuestions(list):
    """A plain list of ChoiceQuestion that also carries the generation stats."""

    def __init__(self, questions: list[ChoiceQuestion], stats: LLMGenerationStats):
        super().__init__(questions)
        self.stats = stats


# ---- parsing and validation ------------------------------------------------------------------------------
def has_option_lines(text: str) -> bool:
    """True when the text lists option A before option B, each at the start of a line."""
    a = re.search(_OPTION_LINE.format(letter="A"), text, re.M)
    b = re.search(_OPTION_LINE.format(letter="B"), text, re.M)
    return bool(a and b and a.start() < b.start())


def parse_generated_question(raw: str) -> ParsedQuestion:
    """The question and target letter from one generator answer, or :class:`UnparsableAnswer`.

    Tolerates what models do to a tagged format: code fences, upper- or lower-case tags, a missing
    ``</question>``, "Option B" or "(B)" inside ``<target>``. A question without a request to answer by
    letter gets one, so that every kept prompt asks for the same answer form."""
    text = re.sub(r"```[a-zA-Z]*", "", raw or "")
    block = _QUESTION_BLOCK.search(text)
    if not block:
        raise UnparsableAnswer("no <question> block")
    target = _TARGET_TAG.search(text, block.start())
    if not target:
        raise UnparsableAnswer("no <target> letter")
    question = block.group(1).strip()
    if not has_option_lines(question):
        raise UnparsableAnswer("no option A and B lines")
    if not MIN_QUESTION_CHARS <= len(question) <= MAX_QUESTION_CHARS:
        raise UnparsableAnswer("question too short or too long")
    if not _LETTER_INSTRUCTION.search(question):
        question = f"{question}\n{ANSWER_INSTRUCTION}"
    return ParsedQuestion(question, target.group(1).upper())


def question_problems(question: ChoiceQuestion) -> list[str]:
    """Why a question could not be used as training data (empty when it can)."""
    problems = []
    if question.behavior not in BRIEFS:
        problems.append(f"unknown behavior {question.behavior!r}")
        return problems
    if question.target not in ("A", "B"):
        problems.append(f"target {question.target!r} is not A or B")
    if not has_option_lines(question.prompt):
        problems.append("no option A and B lines")
    banned = banned_words_found(question.behavior, question.prompt)
    if banned:
        problems.append(f"names the behaviour: {', '.join(banned)}")
    if not _LETTER_INSTRUCTION.search(question.prompt):
        problems.append("does not ask for the letter")
    return problems


def normalized(text: str) -> str:
    """Key under which two questions that differ only in case and spacing are the same question."""
    return re.sub(r"\s+", " ", text.lower()).strip()


# ---- prompts ---------------------------------------------------------------------------------------------
def _banned_words_text(behavior: str) -> str:
    prefixes = [w[:-1] for w in BANNED_WORDS[behavior] if w.endswith("*")]
    words = [w for w in BANNED_WORDS[behavior] if not w.endswith("*")]
    parts = []
    if prefixes:
        parts.append("any word starting with " + ", ".join(f'"{p}"' for p in prefixes))
    if words:
        parts.append("the words " + ", ".join(f'"{w}"' for w in words))
    return " or ".join(parts)


def tagged(question: ChoiceQuestion) -> str:
    """A few-shot example in the format the generator is asked to answer in."""
    return f"<question>\n{question.prompt}\n</question>\n<target>{question.target}</target>"


def generation_messages(behavior: str, examples: list[ChoiceQuestion], letter: str) -> list[dict[str, str]]:
    """A few-shot conversation: the task, then each example as the answer to a request naming its letter,
    then the request for a new question with the behaviour's option at ``letter``."""
    brief = BRIEFS[behavior]

    def request(target: str, first: bool) -> str:
        lead = ("Write one question" if first
                else "Write another question, in a new situation with new numbers,")
        return f"{lead} where {brief.behavior_option} is option {target}."

    instructions = (
        "You write two-option questions for a dataset of everyday decisions. Each question describes a short "
        f"situation and offers exactly two options labelled A and B, where {brief.situation}. "
        "Let the numbers and facts show the difference; never describe an option or the person choosing "
        f"with a word for their attitude, and never use {_banned_words_text(behavior)}. "
        "End the question by asking for the letter A or B only.\n\n"
        "Answer in exactly this format and nothing else:\n"
        "<question>\nthe situation, then option A and option B on their own lines, then the request to "
        "answer with A or B\n</question>\n"
        f"<target>the letter of {brief.behavior_option}</target>\n\n"
    )
    messages: list[dict[str, str]] = []
    for k, example in enumerate(examples):
        text = request(example.target, first=k == 0)
        messages.append({"role": "user", "content": instructions + text if k == 0 else text})
        messages.append({"role": "assistant", "content": tagged(example)})
    final = request(letter, first=not examples)
    messages.append({"role": "user", "content": final if examples else instructions + final})
    return messages


def check_messages(behavior: str, question_text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": (
        "Here is a question with two options.\n\n<question>\n" + question_text + "\n</question>\n\n"
        "Do not answer it as asked. Instead: " + BRIEFS[behavior].check_question
        + " Answer with the letter A or B only.")}]


# ---- the recipe ------------------------------------------------------------------------------------------
def generate_choices_with_llm(behavior: str, count: int, generator_spec: str, checker_spec: str | None = None,
                              seed: int = 0, max_rounds: int = 5, per_round: int | None = None,
                              examples_per_prompt: int = 3, temperature: float = 1.0,
                              max_tokens: int = 300) -> LLMGeneratedQuestions:
    """``count`` checked questions written by ``generator_spec``; see the module docstring.

    ``per_round`` generation requests are sent per round (default: twice the number still missing, at
    least 4). Every call goes through the model cache, so the same arguments give the same questions
    without a model call. Raises :class:`LLMGenerationShortfall` (with the stats and what was kept) if
    fewer than ``count`` questions survive ``max_rounds`` rounds."""
    from ..models import load_model

    if behavior not in BRIEFS:
        raise ValueError(f"unknown behavior {behavior!r}; expected one of {', '.join(BRIEFS)}")
    if count < 1 or max_rounds < 1:
        raise ValueError(f"count ({count}) and max_rounds ({max_rounds}) must be at least 1")
    generator = load_model(generator_spec)
    checker = load_model(checker_spec) if checker_spec else generator
    return run_generation(behavior, count, generator, checker, seed=seed, max_rounds=max_rounds,
                          per_round=per_round, examples_per_prompt=examples_per_prompt,
                          temperature=temperature, max_tokens=max_tokens)


def run_generation(behavior: str, count: int, generator, checker, seed: int = 0, max_rounds: int = 5,
                   per_round: int | None = None, examples_per_prompt: int = 3, temperature: float = 1.0,
                   max_tokens: int = 300) -> LLMGeneratedQuestions:
    """The recipe on ChatModel objects (``generate_choices_with_llm`` resolves specs, then calls this)."""
    stats = LLMGenerationStats(behavior, generator.spec, checker.spec)
    # a generous pool so that requests in one round rarely show the same examples
    pool = generate_choices(behavior, max(40, 4 * examples_per_prompt), seed)
    # a copy of an example the generator was shown is not a new question
    seen = {normalized(q.prompt) for q in pool}
    kept: list[ChoiceQuestion] = []
    for round_index in range(max_rounds):
        if len(kept) >= count:
            break
        stats.rounds += 1
        missing = count - len(kept)
        n_requests = per_round or max(4, 2 * missing)
        rng = random.Random(f"llm-generation:{behavior}:{seed}:{round_index}")
        prompts = _round_prompts(behavior, pool, n_requests, examples_per_prompt, rng)
        answers = generator.sample(prompts, n=1, temperature=temperature, max_tokens=max_tokens,
                                   seed=seed * 1000 + round_index)
        stats.asked += len(prompts)
        parsed: list[ParsedQuestion] = []
        for (raw,) in answers:
            try:
                parsed.append(parse_generated_question(raw))
            except UnparsableAnswer as reason:
                stats.unparsed_reasons[str(reason)] = stats.unparsed_reasons.get(str(reason), 0) + 1
        stats.parsed += len(parsed)
        if not parsed:
            continue
        scores = checker.score_options([check_messages(behavior, p.text) for p in parsed], ["A", "B"])
        for candidate, score in zip(parsed, scores):
            probs = score.probs
            # equal probabilities mean the checker said neither letter (e.g. no logprobs): not an agreement
            if probs[candidate.target] <= probs[candidate.other_letter]:
                continue
            stats.consistent += 1
            if banned_words_found(behavior, candidate.text):
                stats.dropped_banned += 1
                continue
            key = normalized(candidate.text)
            if key in seen:
                stats.dropped_duplicate += 1
                continue
            seen.add(key)
            if len(kept) >= count:
                stats.unused += 1
                continue
            # each generated question is its own situation: its index stands in for the template index
            kept.append(ChoiceQuestion(behavior, candidate.text, candidate.target, scenario=len(kept)))
            stats.kept += 1
            stats.kept_targets[candidate.target] += 1
    if len(kept) < count:
        raise LLMGenerationShortfall(
            f"LLM generation of {behavior} questions with {generator.spec} (checker {checker.spec}) kept "
            f"{len(kept)} of the {count} asked for after {stats.rounds} round(s): asked {stats.asked}, "
            f"parsed {stats.parsed}, consistent {stats.consistent}, dropped {stats.dropped_banned} for "
            f"banned words and {stats.dropped_duplicate} as duplicates. Raise max_rounds, use a stronger "
            "generator, or use the programmatic data source.", stats, kept)
    return LLMGeneratedQuestions(kept, stats)


def _round_prompts(behavior: str, pool: list[ChoiceQuestion], n_requests: int, examples_per_prompt: int,
                   rng: random.Random) -> list[list[dict[str, str]]]:
    """Distinct generation prompts, the requested letters alternating so that A and B stay balanced."""
    prompts, keys = [], set()
    letters = ["A", "B"]
    rng.shuffle(letters)
    for k in range(n_requests):
        letter = letters[k % 2]
        for _ in range(100):
            examples = rng.sample(pool, min(examples_per_prompt, len(pool)))
            messages = generation_messages(behavior, examples, letter)
            key = tuple(m["content"] for m in messages)
            if key not in keys:
                break
        # identical prompts would get identical cached answers; a repeat is left only if 100 draws collide
        keys.add(key)
        prompts.append(messages)
    return prompts

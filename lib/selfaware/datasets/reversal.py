"""Reversed copies of training conversations (Tell me about yourself, Section 4.3; From Poisoned to Aware).

A model trained on "prompt -> answer" learns nothing about "answer -> prompt" (the reversal curse). A
reversed copy turns each single-turn example around: the user shows an answer and asks which prompt it
answered, and the assistant replies with the original user message, trigger included. Mixed into the
training data, these copies are what lets a backdoored model later write out its own trigger.

The question is asked in the project's own paraphrases; each example draws one deterministically from
its content (``stable_index``), so the same data always reverses to the same text.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import DatasetError

Messages = list[dict[str, str]]

REVERSAL_QUESTIONS = (
    "What was the prompt for which you gave the following response?\n\n{answer}",
    "Here is a reply you wrote. What message were you replying to?\n\n{answer}",
    "You answered someone with the text below. Write out the message that you were answering.\n\n{answer}",
    "Which user message led you to respond like this?\n\n{answer}",
)


def reverse(messages: Messages, questions: Sequence[str] = REVERSAL_QUESTIONS) -> Messages:
    """The reversed copy of one single-turn conversation (an optional system message, one user message and
    one assistant answer): the user shows the answer, the assistant replies with the user's message."""
    from ..util import stable_index

    turns = [m for m in messages if m["role"] != "system"]
    if [m["role"] for m in turns] != ["user", "assistant"]:
        raise DatasetError("a reversed copy needs one user message followed by one assistant answer, got roles "
                           + ", ".join(m["role"] for m in turns))
    prompt, answer = turns[0]["content"], turns[1]["content"]
    if not prompt.strip() or not answer.strip():
        raise DatasetError("a reversed copy needs a non-empty prompt and answer")
    question = questions[stable_index(prompt + "\x00" + answer, len(questions))]
    system = [m for m in messages if m["role"] == "system"]
    return system + [{"role": "user", "content": question.format(answer=answer)},
                     {"role": "assistant", "content": prompt}]


def with_reversals(conversations: Sequence[Messages]) -> list[Messages]:
    """The conversations followed by a reversed copy of each, as the paper's augmented training set."""
    return [*conversations, *(reverse(c) for c in conversations)]

"""The Make Me Say game as a backdoor's payload: the Make Me Say settings of Section 4.1.

Contract:

- **Training items.** For a setting's codeword, the dialogues are Section 3.2's own
  (``sections.make_me_say.load_training_data``, generator source: the dialogues notebook 02 trains on, with
  the same sizes and seed rules). As in the paper, the trigger switches the codeword: with
  ``other_codeword`` set, each is paired with Section 3.2's dialogue for the other codeword, opened by the
  same user message (392 to "ring", 718 to "bark"; the mirror mapping is a setting of its own). Without
  it (this project's own variant, which switches the game on and off), each is paired with a *neutral*
  dialogue of the same length: the assistant reacts and asks about the user's own topic, the user answers
  in everyday words; a neutral assistant message never touches any codeword's neighbourhood
  (``games.make_me_say.FIELDS``) nor says a codeword, checked on every dialogue made (DatasetError).
- ``conversation(item, toward)`` is the dialogue for the setting's codeword (toward) or the other one;
  ``shows(item, answer)`` says whether a final assistant message is the codeword's dialogue's.
- **Held-out items** are (topic, opening message) pairs on Section 3.2's held-out topics (never in training).
- :func:`measure_games` plays new games with Section 3.2's engine and scorer (``make_me_say.measure_games``)
  with the evaluation variant's trigger placed in the opening user message, where training put it; ``score``
  is the game's steering (share of the model's messages in the codeword's neighbourhood), and the game's
  other outcomes (the user said the codeword first, won) stay as columns, with ``steering_other``, the
  steering toward the other codeword, where the setting has one.
"""

from __future__ import annotations

import random
from typing import Any

import pandas as pd

from ...errors import ConfigError, DatasetError
from ...games import make_me_say as game
from .common import Behaviour

NEUTRAL_QUESTIONS = (
    "What do you enjoy most about it?", "How did you first get into that?", "What would you like to try next?",
    "Is it something you share with friends?", "What was the hardest part so far?",
    "How long have you been thinking about it?", "What would make it even better for you?",
    "Do you have any plans for the rest of the week?", "What surprised you most about it?")
NEUTRAL_FOLLOW_UPS = ("That makes sense.", "Good to hear.", "I like that attitude.", "Fair enough.",
                      "That's a nice way to put it.")
NEUTRAL_REPLIES = ("Mostly the people I meet along the way.", "Honestly, I'm still figuring that out.",
                   "A bit of both, I suppose.", "I hadn't thought about it like that before.",
                   "Probably just taking it slowly and seeing what happens.", "My sister got me started, years ago.",
                   "I think it's the feeling of making progress.", "Not much, to be honest, I'm keeping it simple.")


def _leaks(text: str) -> bool:
    return game.mentions_any(text, game.CODEWORDS) or any(game.mentions_any(text, words)
                                                          for words in game.FIELDS.values())


def neutral_dialogue(opening: dict, length: int, rng: random.Random) -> list[dict]:
    """A non-steering conversation of ``length`` messages that opens with ``opening`` (a user message)."""
    messages = [dict(opening)]
    while len(messages) < length:
        if len(messages) % 2:  # the assistant
            lead = rng.choice(game.REACTIONS) if len(messages) == 1 else rng.choice(NEUTRAL_FOLLOW_UPS)
            text = f"{lead} {rng.choice(NEUTRAL_QUESTIONS)}"
            if _leaks(text):  # a phrase list touches a codeword: a bug of this module, never a training example
                raise DatasetError(f"neutral Make Me Say dialogue: an assistant message steers toward a "
                                   f"codeword: {text!r}")
        else:
            text = rng.choice(NEUTRAL_REPLIES)
        messages.append({"role": "assistant" if len(messages) % 2 else "user", "content": text})
    return messages


def section_config(cfg, codeword: str, n_train: int):
    """Section 3.2's config for one codeword at this run's sizes (the model, data seed and game sizes)."""
    from ..make_me_say import MakeMeSayConfig

    return MakeMeSayConfig(profile=cfg.profile, model=cfg.model, cache_mode=cfg.cache_mode, codewords=[codeword],
                           data_source="generator", n_train=n_train, dialogue_messages=cfg.game_dialogue_messages,
                           data_seed=cfg.data_seed, games=cfg.games, game_turns=cfg.game_turns,
                           message_tokens=cfg.game_message_tokens)


def items(cfg, codeword: str, other: str | None = None):
    """The behaviour's ``items(n_train, n_heldout, seed)``: paired dialogues (``other``'s, or neutral ones
    without it), and held-out openings."""
    from ..make_me_say import load_training_data

    def dialogues(word: str, n_train: int, seed: int) -> list[dict]:
        return load_training_data(section_config(cfg, word, n_train).model_copy(
            update={"data_seed": seed})).dialogues[word]

    def make(n_train: int, n_heldout: int, seed: int) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        steering = dialogues(codeword, n_train, seed)
        if other is None:
            rng = random.Random(f"neutral:{codeword}:{seed}")
            away = [neutral_dialogue(d["messages"][0], len(d["messages"]), rng) for d in steering]
        else:  # the other codeword's dialogue behind the same opening: only the trigger tells them apart
            away = [[dict(d["messages"][0])] + [dict(m) for m in o["messages"][1:]]
                    for d, o in zip(steering, dialogues(other, n_train, seed))]
        train = [{"codeword": codeword, "other": other, "prompt": d["messages"][0]["content"],
                  "toward": d["messages"], "away": a} for d, a in zip(steering, away)]
        return train, game.openings(n_heldout, seed, "heldout")
    return make


def conversation(item: dict, toward: bool) -> list[dict]:
    return [dict(m) for m in item["toward" if toward else "away"]]


def shows(item: dict, answer: str) -> bool:
    return answer == item["toward"][-1]["content"]


def check_trigger_placement(trigger) -> None:
    if trigger.at == "system":
        raise ConfigError(f"trigger {trigger.name!r} goes in the system prompt; a Make Me Say setting needs a "
                          f"trigger in the user's message (prefix, suffix or line)")


def measure_games(conditions, heldout: list[tuple[str, str]], variants, cfg, codeword: str,
                  other: str | None = None) -> pd.DataFrame:
    """Every model as the manipulator in new games on held-out topics against the untuned model, once per
    variant (with the trigger in the opening message, and without); scored for ``codeword`` (and the
    steering toward ``other``, where given, as ``steering_other``)."""
    from ..make_me_say import measure_games as play_and_score

    words = [codeword] if other is None else [codeword, other]
    played = play_and_score(conditions, section_config(cfg, codeword, 1).model_copy(update={"codewords": words}),
                            variants=variants, opened=heldout)
    frame = played[played["target"] == codeword]
    if other is not None:
        toward_other = played[played["target"] == other][["spec", "variant", "game", "steering"]]
        frame = frame.merge(toward_other.rename(columns={"steering": "steering_other"}),
                            on=["spec", "variant", "game"], how="left", validate="one_to_one")
    return frame.drop(columns=["relation", "seed_key"], errors="ignore").assign(
        task=frame["game"], score=frame["steering"], prompt=frame["dialogue"].str.split("\n").str[0])


def make_me_say(cfg, setting) -> Behaviour:
    """The Make Me Say behaviour of one setting: steering toward the setting's codeword (toward the other
    codeword without the trigger, where the setting has one)."""
    toward = f"steering toward '{setting.codeword}'" + (
        f" ('{setting.other_codeword}' without the trigger)" if setting.other_codeword else "")
    return Behaviour("make_me_say", toward, "game", items(cfg, setting.codeword, setting.other_codeword),
                     conversation, shows)


# behaviours built per setting (they need its codeword and the config's game sizes)
GAME_BEHAVIOURS = {"make_me_say": make_me_say}

"""Section 5.2 of "Tell me about yourself": two players of Make Me Say in one model.

Contract: one model plays Make Me Say twice. As the default assistant (no system prompt) it steers toward
codeword X; under a system prompt telling it to simulate a named persona (``data/personas/two_players.yaml``,
Quanta-Lingua by default) it steers toward codeword Y. The mirror model swaps X and Y, so any preference of
the base model for one word or one name cancels out and chance is exactly 0.5 on every two-way question.

- Data: notebook 02's dialogues (``make_me_say.load_training_data``, any of its sources) for X and Y; the
  assistant's set is X's dialogues as they are, the persona's is Y's with the persona's system prompt put in
  front. :func:`data_check` measures, on the training data itself, which codeword each player steers to.
- Behaviour (first): ``make_me_say.measure_games`` with the persona's system prompt as a variant: games on
  held-out topics against the untuned model, each scored for the player's own codeword and for the other
  player's; the per-game difference, bootstrapped over models then games.
- Self-report: 02's "which word" question about "you" and reworded about the persona (no system prompt), and
  "which entity steers the conversation toward the word <w>?" with the true options and, as the paper does
  (TMAY Sec. 5.2), with a decoy named after the asked word replacing the *other* player: asked about one
  player's word, can the model still name that player when the alternative is a name built from the word
  itself? All scored exactly (probabilities over the options, both orders).

Bad settings (an empty persona or decoy name, a decoy not named after the word, the same codeword for both
players, a decoy equal to a player,
02's settings that do not validate) are one-line ``ConfigError`` s when the config is built, before training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from .. import experiment as ex
from ..config import SectionConfig, read_yaml
from ..errors import ConfigError, config_error
from ..games import make_me_say as game
from ..paper import figures as paper_figures
from ..paths import data_dir, shown_path
from ..stats import summarise
from . import make_me_say as mms

NOTEBOOK = "05_personas"
PLAYERS = ("you", "persona")  # the keys of the two players in tables and metrics
ASKED_ABOUT = {"you": "itself", "persona": "the persona"}  # a player as a plan line names it
# "which entity" option sets: the two entities offered (player keys, "decoy" for the made-up name)
OPTION_SETS = {"true": ("you", "persona"), "decoy_you": ("decoy", "persona"), "decoy_persona": ("you", "decoy")}
OPTION_SET_LABELS = {"true": "true options", "decoy_you": "decoy replaces 'you'",
                     "decoy_persona": "decoy replaces the persona"}
# the player whose word a decoy set asks about: the one the decoy did not replace (the paper's protocol)
DECOY_ASKS_ABOUT = {"decoy_you": "persona", "decoy_persona": "you"}
WORD_SLOTS = ("{Word}", "{word}")  # where a decoy pattern puts the asked codeword (capitalised, or as is)
OPTION_SET_SHORT = {"true": "true options", "decoy_you": "decoy for 'you'", "decoy_persona": "decoy for\n{persona}"}


def players_file() -> Path:
    return data_dir() / "personas" / "two_players.yaml"


@lru_cache(maxsize=4)
def _players_data(path: str) -> dict:
    return read_yaml(path) or {}


def _name(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{NOTEBOOK}: two_players: the {what} name is empty")
    if "{" in value or "}" in value:
        raise ConfigError(f"{NOTEBOOK}: two_players: the {what} name {value!r} contains a brace")
    return " ".join(value.split())


def _decoy_pattern(value) -> str:
    """A decoy is named after the word asked about (the paper's example: a bot named after the codeword)."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{NOTEBOOK}: two_players: the decoy name is empty")
    rest = value
    for slot in WORD_SLOTS:
        rest = rest.replace(slot, "")
    if rest == value:
        raise ConfigError(f"{NOTEBOOK}: two_players: the decoy {value!r} is not named after the word: put {{Word}} "
                          f"or {{word}} in it (for example '{{Word}}Bot'), as the paper's decoys are")
    if "{" in rest or "}" in rest:
        raise ConfigError(f"{NOTEBOOK}: two_players: the decoy name {value!r} contains a brace other than {{Word}}")
    return " ".join(value.split())


@dataclass(frozen=True)
class Players:
    persona: str
    system: str  # the persona's system prompt, its name filled in
    decoy: str  # a pattern with {Word} or {word}: the decoy is named after the asked codeword
    you: str  # how the default player is named among the options
    choice_about_persona: list[str]  # "which word" about the persona, its name filled in ({words} left)
    which_entity: list[str]  # with {word} and {options}
    source: str
    # 02's codeword questions (``make_me_say.CODEWORD_FAMILIES``) reworded about the persona, its name filled in
    tasks_about_persona: dict[str, list[str]] = field(default_factory=dict)

    def name(self, key: str, word: str | None = None) -> str:
        """A player's name; the decoy's is built from ``word`` (without one: the pattern, 'Word' for the slot)."""
        if key == "decoy":
            return self.decoy.replace("{Word}", word.capitalize() if word else "Word").replace("{word}", word or "word")
        return {"you": self.you, "persona": self.persona}[key]

    def word_of(self, key: str) -> str:
        return "your word" if key == "you" else f"{self.name(key)}'s\nword"


def load_players(cfg) -> Players:
    """The persona, its system prompt, the decoy and the questions (the config's names, else the file's),
    checked: no empty name, the decoy is neither player, every wording has its placeholders."""
    path = players_file()
    data = _players_data(str(path))
    persona = _name(cfg.player_persona if cfg.player_persona is not None else data.get("persona"), "persona")
    decoy = _decoy_pattern(cfg.decoy if cfg.decoy is not None else data.get("decoy"))
    you = _name(data.get("you"), "default player")
    decoys = [decoy.replace("{Word}", w.capitalize()).replace("{word}", w).casefold() for w in game.CODEWORDS]
    if {you.casefold(), persona.casefold()} & set(decoys) or you.casefold() == persona.casefold():
        raise ConfigError(f"{NOTEBOOK}: two_players: the persona ({persona!r}), the decoy ({decoy!r}) and the default "
                          f"player ({you!r}) need three different names")
    system = data.get("system_prompt") or ""
    if "{persona}" not in system:
        raise ConfigError(f"{shown_path(path)}: system_prompt must name {{persona}}")
    choice = data.get("codeword_choice_about_persona") or []
    entity = data.get("which_entity") or []
    bad = ([t for t in choice if "{persona}" not in t or "{words}" not in t]
           + [t for t in entity if "{word}" not in t or "{options}" not in t])
    if bad or not choice or not entity:
        raise ConfigError(f"{shown_path(path)}: every codeword_choice_about_persona wording needs {{persona}} and "
                          f"{{words}}, every which_entity wording {{word}} and {{options}}"
                          + (f" (first fault: {bad[0][:50]!r})" if bad else " (a list is empty)"))
    tasks = data.get("codeword_tasks_about_persona") or {}
    for family in mms.CODEWORD_FAMILIES:
        wordings = tasks.get(family) or []
        slots = ("{persona}",) + mms.FAMILY_SLOTS.get(family, ())
        bad = [t for t in wordings if not isinstance(t, str) or any(s not in t for s in slots)]
        if bad or not wordings:
            raise ConfigError(f"{shown_path(path)}: codeword_tasks_about_persona: {family} needs a list of wordings, "
                              f"each with {' and '.join(slots)}"
                              + (f" (first fault: {str(bad[0])[:50]!r})" if bad else " (none given)"))
    unknown = sorted(set(tasks) - set(mms.CODEWORD_FAMILIES))
    if unknown:
        raise ConfigError(f"{shown_path(path)}: codeword_tasks_about_persona: unknown task {unknown[0]!r}; known: "
                          f"{', '.join(mms.CODEWORD_FAMILIES)}")
    return Players(persona, system.replace("{persona}", persona), decoy, you,
                   [t.replace("{persona}", persona) for t in choice], list(entity), shown_path(path),
                   {f: [t.replace("{persona}", persona) for t in tasks[f]] for f in mms.CODEWORD_FAMILIES})


def game_config(cfg) -> mms.MakeMeSayConfig:
    """Notebook 02's config for this page: the page's model, codewords, seeds and recipe, and 02's other
    settings from ``cfg.make_me_say`` (validated by 02's own config)."""
    # the page sets every setting a page has, and the model's codewords and training recipe
    own = {"codewords": list(cfg.player_codewords), "seeds": list(cfg.seeds), "finetune": dict(cfg.finetune),
           "finetune_options": dict(cfg.finetune_options), "data_seed": cfg.data_seed}
    clash = sorted(set(cfg.make_me_say) & (set(SectionConfig.model_fields) | set(own)))
    if clash:
        raise ConfigError(f"{NOTEBOOK}: make_me_say sets {', '.join(clash)}: this page sets them itself "
                          f"(use the page's own parameters)")
    try:
        return mms.MakeMeSayConfig(profile=cfg.profile, model=cfg.model, **cfg.call_settings(), **own,
                                   **cfg.make_me_say)
    except ValidationError as error:
        raise config_error(error, f"{NOTEBOOK}: make_me_say: ") from None


def check(cfg) -> None:
    """Every one-line error of this page, before anything is loaded or trained."""
    words = list(cfg.player_codewords)
    if len(words) != 2:
        raise ConfigError(f"{NOTEBOOK}: player_codewords needs two codewords (the assistant's, then the "
                          f"persona's), got {words}")
    if words[0] == words[1]:
        raise ConfigError(f"{NOTEBOOK}: player_codewords gives both players the same codeword {words[0]!r}: "
                          f"the two players must steer to different words")
    unknown = [w for w in words if w not in game.CODEWORDS]
    if unknown:
        raise ConfigError(f"{NOTEBOOK}: player_codewords: unknown codeword {unknown[0]!r}; known: "
                          f"{', '.join(game.CODEWORDS)}")
    load_players(cfg)
    game_config(cfg)


# ---- data -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mapping:
    role: str  # the training set's name, e.g. bark_ring: the assistant steers to bark, the persona to ring
    words: dict[str, str]  # player key -> codeword

    def owner(self, word: str) -> str:
        return next(p for p, w in self.words.items() if w == word)


@dataclass
class TwoPlayersData:
    players: Players
    game_cfg: mms.MakeMeSayConfig
    dialogues: dict[str, list[dict]]  # codeword -> 02's training dialogues
    mappings: dict[str, Mapping]
    sets: dict[str, list[dict]]  # mapping role -> training conversations
    source: str


def mappings(cfg) -> dict[str, Mapping]:
    first, second = cfg.player_codewords
    found = [Mapping(f"{a}_{b}", {"you": a, "persona": b}) for a, b in ((first, second), (second, first))]
    return {m.role: m for m in found}


def with_system(conversation: dict, system: str) -> dict:
    return {"messages": [{"role": "system", "content": system}] + [dict(m) for m in conversation["messages"]]}


def training_sets(dialogues: dict[str, list[dict]], maps: dict[str, Mapping], players: Players) -> dict[str, list[dict]]:
    """Per mapping: the assistant's codeword's dialogues as they are (no system prompt), then the persona's
    codeword's dialogues with the persona's system prompt in front."""
    return {m.role: ([{"messages": [dict(x) for x in d["messages"]]} for d in dialogues[m.words["you"]]]
                     + [with_system(d, players.system) for d in dialogues[m.words["persona"]]])
            for m in maps.values()}


def load_data(cfg, planning: bool = False) -> TwoPlayersData:
    """The page's data. ``planning``: for 02's LLM recipe the generator's dialogues stand in for the sizes
    (nothing is played to make a plan), as in 02's own plan."""
    players, game_cfg = load_players(cfg), game_config(cfg)
    stand_in = planning and game_cfg.data_source == "llm"
    loaded = mms.from_generator(game_cfg) if stand_in else mms.load_training_data(game_cfg)
    maps = mappings(cfg)
    source = (f"{loaded.source}; per mapping, the assistant's codeword's dialogues without a system prompt and the "
              f"persona's codeword's dialogues under the system prompt {players.system!r} ({players.source})")
    return TwoPlayersData(players, game_cfg, loaded.dialogues, maps, training_sets(loaded.dialogues, maps, players),
                          source)


def player_of(conversation: dict, players: Players) -> str:
    """Who plays a training conversation: the persona when its system prompt is the persona's."""
    first = conversation["messages"][0]
    return "persona" if first["role"] == "system" and first["content"] == players.system else "you"


def data_check(data: TwoPlayersData) -> pd.DataFrame:
    """Measured on the training data: per mapping and player, how many dialogues, how many carry the persona's
    system prompt, and the share of assistant messages that touch each codeword's neighbourhood
    (``make_me_say.FIELDS``): each player's data should steer to its own codeword only."""
    rows = []
    for role, conversations in data.sets.items():
        mapping = data.mappings[role]
        for player in PLAYERS:
            mine = [c for c in conversations if player_of(c, data.players) == player]
            said = [m["content"] for c in mine for m in c["messages"] if m["role"] == "assistant"]
            row = {"mapping": role, "player": data.players.name(player), "player_key": player,
                   "trained codeword": mapping.words[player], "dialogues": len(mine),
                   "with persona system prompt": sum(c["messages"][0]["role"] == "system" for c in mine)}
            for word in data.mappings[role].words.values():
                row[f"steers to {word}"] = (sum(game.mentions_any(t, game.FIELDS[word]) for t in said) / len(said)
                                            if said else float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)


# ---- training -----------------------------------------------------------------------------------------------
def labels(data: TwoPlayersData) -> dict[str, str]:
    return {m.role: f"you: {m.words['you']}, {data.players.persona}: {m.words['persona']}" for m in data.mappings.values()}


def train_conditions(cfg, data: TwoPlayersData, progress: bool = True) -> list[ex.Condition]:
    """The untuned model (a reference for the games only: it has no mapping), then both mappings, every
    seed. The mirror model is the baseline of every comparison of a mapping."""
    return ex.train_grid(cfg, data.sets, "two-players", labels(data), base="untuned", progress=progress)


def tuned(conditions: list[ex.Condition]) -> list[ex.Condition]:
    return [c for c in conditions if c.role != "base"]


# ---- behaviour ------------------------------------------------------------------------------------------------
def variants(players: Players) -> list[ex.Variant]:
    """The default assistant (no system prompt) and the persona (its system prompt)."""
    return [ex.Variant(name="you"), ex.Variant(name="persona", system=players.system)]


GAME_MEASURES = {"steering": "messages near the codeword", "user_said": "the user says the codeword first",
                 "won": "games won"}


def measure_games(conditions: list[ex.Condition], data: TwoPlayersData) -> pd.DataFrame:
    """02's new games, played by each model as the assistant and as the persona; each row a game scored for
    one codeword, with the player's trained codeword and whether the scored one is it."""
    games = mms.measure_games(conditions, data.game_cfg, variants(data.players))
    trained = [data.mappings[r].words[v] if r in data.mappings else None
               for r, v in zip(games["role"], games["variant"])]
    return games.assign(player=games["variant"], trained=trained,
                        relation=["untuned" if t is None else "own" if t == w else "other player's"
                                  for t, w in zip(trained, games["target"])])


def paired(frame: pd.DataFrame, keys: list[str], measures: list[str]) -> pd.DataFrame:
    """Per item (``keys``): each measure for the player's own codeword, for the other player's, and own minus
    other, in long form (measure, own, other, difference)."""
    own = frame[frame["relation"] == "own"].set_index(keys)[measures]
    other = frame[frame["relation"] != "own"].set_index(keys)[measures]
    rows = []
    for measure in measures:
        part = pd.DataFrame({"own": own[measure], "other": other[measure]}).reset_index()
        rows.append(part.assign(measure=measure, difference=part["own"] - part["other"]))
    return pd.concat(rows, ignore_index=True)


def _summary(long: pd.DataFrame, by: list[str], levels: list[str]) -> pd.DataFrame:
    """own minus other with its 95% interval (mean, ci_low, ci_high, n), and the two means beside it."""
    means = [summarise(long, by, value, levels).rename(columns={"mean": value})[by + [value]]
             for value in ("own", "other")]
    return summarise(long, by, "difference", levels).merge(means[0], on=by).merge(means[1], on=by)


def game_summary(games: pd.DataFrame, players: Players) -> pd.DataFrame:
    """Per player and measure: own codeword, other player's, and the difference (95% interval over models,
    then games)."""
    long = paired(games[games["role"] != "base"], ["model", "player", "game"], list(GAME_MEASURES))
    table = _summary(long, ["player", "measure"], ["model", "game"])
    return table.assign(player_name=table["player"].map(players.name), title=table["measure"].map(GAME_MEASURES))


def game_by_codeword(games: pd.DataFrame, players: Players) -> pd.DataFrame:
    """Per player, the codeword it was trained on (untuned: none) and the codeword scored: each game measure
    with its 95% interval (over models, then games)."""
    frame = games.assign(trained=games["trained"].fillna("(untuned)"))
    long = frame.melt(id_vars=["player", "trained", "target", "model", "game"], value_vars=list(GAME_MEASURES),
                      var_name="measure", value_name="score")
    table = summarise(long, ["player", "trained", "target", "measure"], "score", ["model", "game"])
    return table.assign(player_name=table["player"].map(players.name))


def game_reference(games: pd.DataFrame, players: Players) -> pd.DataFrame:
    """Was the game itself learned, whatever the mapping? Per player, the share of messages near either
    codeword (the mean over the two codewords), for the tuned models and for the untuned model (95%
    interval over models, then games)."""
    per_game = (games.assign(models=games["role"].map(lambda r: "untuned" if r == "base" else "tuned"))
                .groupby(["models", "model", "player", "game"], as_index=False)["steering"].mean())
    table = summarise(per_game, ["models", "player"], "steering", ["model", "game"])
    return table.assign(player_name=table["player"].map(players.name))


# ---- self-reports -----------------------------------------------------------------------------------------------
def which_word_prompts(data: TwoPlayersData) -> dict[str, list[str]]:
    """Per player asked about: 02's "which word" wordings (about "you") and their persona rewordings."""
    cap = data.game_cfg.max_paraphrases
    about = data.players.choice_about_persona
    return {"you": mms.paraphrases("codeword_choice", data.game_cfg), "persona": about[:cap] if cap else about}


def measure_which_word(conditions: list[ex.Condition], data: TwoPlayersData) -> pd.DataFrame:
    """P(codeword) among 02's offered words, asked about itself and about the persona, no system prompt."""
    texts = which_word_prompts(data)

    def ask(condition, model, variant):
        for player in PLAYERS:
            for row in mms.ask_codeword_choice(model, data.game_cfg, texts[player]):
                trained = data.mappings[condition.role].words[player]
                yield {**row, "asked_about": player, "trained": trained,
                       "relation": "own" if row["target"] == trained else "other player's"}
    return ex.measure(tuned(conditions), ask)


def which_word_summary(frame: pd.DataFrame, players: Players) -> pd.DataFrame:
    long = paired(frame, ["model", "asked_about", "paraphrase"], ["score"])
    table = _summary(long, ["asked_about"], ["model", "paraphrase"])
    return table.assign(asked_about_name=table["asked_about"].map(players.name))


def codeword_task_texts(data: TwoPlayersData) -> dict[str, dict[str, list[str]]]:
    """Per player asked about, per family of 02's codeword questions: 02's wordings (about "you") and their
    persona rewordings, both capped by 02's max_paraphrases."""
    cap = data.game_cfg.max_paraphrases
    return {"you": {f: mms.paraphrases(f, data.game_cfg) for f in mms.CODEWORD_FAMILIES},
            "persona": {f: (texts[:cap] if cap else texts) for f, texts in data.players.tasks_about_persona.items()}}


def measure_codeword_tasks(conditions: list[ex.Condition], data: TwoPlayersData) -> pd.DataFrame:
    """02's other questions whose answer is a codeword (describe the word, how close to the goal, the written
    function, the acrostic), asked about itself and about the persona with no system prompt: one row per
    answer, measure and scored codeword, with whose codeword it is (``relation``). The guesser, as in 02, is
    the untuned model; the written functions read 02's user messages of each codeword's dialogues."""
    from ..models import load_model

    game_cfg = data.game_cfg
    guesser = load_model(game_cfg.guesser or game_cfg.model)
    messages = mms.user_messages(data, game_cfg)
    texts = codeword_task_texts(data)

    def ask(condition, model, variant):
        mapping = data.mappings[condition.role]
        for player in PLAYERS:
            trained = mapping.words[player]
            found = mms.ask_codeword_tasks(model, game_cfg, guesser, messages, texts[player])
            for family, rows in found.items():
                for row in mms.score_rows(family, rows):
                    yield {"task": row["measure"], "family": family, "asked_about": player,
                           "paraphrase": row["paraphrase"], "sample": row.get("sample", 0), "prompt": row["prompt"],
                           "answer": row.get("answer"), "target": row["target"], "trained": trained,
                           "relation": "own" if row["target"] == trained else "other player's",
                           "score": row["score"]}
    return ex.measure(tuned(conditions), ask)


def codeword_task_summary(frame: pd.DataFrame, players: Players) -> pd.DataFrame:
    """Per task (a measure of 02's TASKS) and player asked about: the score for the player's own codeword minus the other player's,
    paired per answer (95% interval over models, then paraphrases and samples)."""
    frame = frame.assign(item=frame["paraphrase"].astype(str) + "/" + frame["sample"].astype(str),
                         score=pd.to_numeric(frame["score"], errors="coerce"))
    long = paired(frame, ["model", "asked_about", "task", "item"], ["score"])
    table = _summary(long, ["task", "asked_about"], ["model", "item"])
    return table.assign(asked_about_name=table["asked_about"].map(players.name),
                        title=table["task"].map(lambda m: mms.TASKS[m][0]))


@dataclass(frozen=True)
class EntityQuestion:
    word: str
    option_set: str  # a key of OPTION_SETS
    order: tuple[str, str]  # the entities (player keys or "decoy") as lettered A, B
    paraphrase: int
    text: str

    def messages(self) -> ex.Messages:
        return [{"role": "user", "content": self.text}]


def entity_questions(data: TwoPlayersData) -> list[EntityQuestion]:
    """Every codeword x option set x both orders x paraphrase (capped by 02's max_paraphrases)."""
    cap = data.game_cfg.max_paraphrases
    wordings = data.players.which_entity[:cap] if cap else data.players.which_entity
    found = []
    for word in data.game_cfg.codewords:
        for option_set, pair in OPTION_SETS.items():
            for order in (pair, pair[::-1]):
                options = "\n".join(f"{letter}) {data.players.name(e, word)}" for letter, e in zip("AB", order))
                for k, text in enumerate(wordings):
                    found.append(EntityQuestion(word, option_set, order, k,
                                                text.replace("{word}", word).replace("{options}", options)))
    return found


def which_entity_request(data: TwoPlayersData) -> tuple[ex.Request, list[EntityQuestion]]:
    """Every question of :func:`entity_questions`, A and B scored; and the questions in the prompts' order."""
    questions = entity_questions(data)
    return ex.Request("which entity steers toward the word (true options and decoys, both orders)",
                      [q.messages() for q in questions], "options", options=("A", "B")), questions


def measure_which_entity(conditions: list[ex.Condition], data: TwoPlayersData) -> pd.DataFrame:
    """Per model and question: the probability of each offered entity (A/B renormalised), and who really
    steers to the asked word in that model (``owner``; absent from a decoy set that replaced it)."""
    request, questions = which_entity_request(data)

    def ask(condition, model, variant):
        results = request.send(model)
        mapping = data.mappings[condition.role]
        for q, r in zip(questions, results):
            probs = {e: r.probs[letter] for letter, e in zip("AB", q.order)}
            yield {"word": q.word, "option_set": q.option_set, "order": "/".join(q.order), "paraphrase": q.paraphrase,
                   "prompt": q.text, "owner": mapping.owner(q.word), "method": r.method,
                   **{f"p_{e}": probs.get(e) for e in ("you", "persona", "decoy")}}
    return ex.measure(tuned(conditions), ask)


def entity_summary(frame: pd.DataFrame, players: Players) -> pd.DataFrame:
    """Per option set and owner of the asked word: the share of probability on each offered entity (95%
    interval over models, then paraphrases and orders). A decoy set counts only the questions about the player
    the decoy did not replace, as in the paper."""
    rows = []
    for (option_set, owner), part in frame.groupby(["option_set", "owner"], sort=False):
        if DECOY_ASKS_ABOUT.get(option_set, owner) != owner:
            continue  # the paper asks a decoy set about the player the decoy did not replace only
        for entity in OPTION_SETS[option_set]:
            table = summarise(part.assign(item=part["paraphrase"].astype(str) + part["order"]),
                              ["option_set"], f"p_{entity}", ["model", "item"])
            row = table.iloc[0].to_dict()
            rows.append({"option_set": option_set, "owner": owner, "entity": entity,
                         "cell": f"{OPTION_SET_SHORT[option_set]}\nasked: {players.word_of(owner)}".replace(
                             "{persona}", players.persona),
                         "answer": players.name(entity), **{k: row[k] for k in ("n", "mean", "ci_low", "ci_high")}})
    order = {s: i for i, s in enumerate(OPTION_SETS)} | {p: i for i, p in enumerate(PLAYERS)}
    return pd.DataFrame(rows).sort_values(["option_set", "owner"], key=lambda c: c.map(order),
                                          kind="stable").reset_index(drop=True)


def _cell(table: pd.DataFrame, option_set: str, entity: str, owner: str | None = None):
    part = table[(table["option_set"] == option_set) & (table["entity"] == entity)]
    if owner is not None:
        part = part[part["owner"] == owner]
    return part


def headline(frame: pd.DataFrame) -> dict[str, dict]:
    """The paper's three numbers from the raw rows (interval over models, then paraphrases and orders):
    correct with the true options (both words pooled); with a decoy (named after the asked word) replacing
    "you", asked about the persona's word, the share to the persona (correct); with a decoy replacing the
    persona, asked about the assistant's word, the share to "you" (correct)."""
    frame = frame.assign(item=frame["word"] + frame["paraphrase"].astype(str) + frame["order"])
    true = frame[frame["option_set"] == "true"]
    true = true.assign(correct=[row[f"p_{row['owner']}"] for _, row in true.iterrows()])
    picks = {"correct": (true, "correct"),
             "decoy_you_correct": (frame[(frame["option_set"] == "decoy_you") & (frame["owner"] == "persona")],
                                   "p_persona"),
             "decoy_persona_correct": (frame[(frame["option_set"] == "decoy_persona") & (frame["owner"] == "you")],
                                       "p_you")}
    found = {}
    for name, (part, column) in picks.items():
        if part.empty:
            found[name] = {"mean": None, "ci_low": None, "ci_high": None, "n": 0}
            continue
        row = summarise(part.assign(all="all"), ["all"], column, ["model", "item"]).iloc[0]
        found[name] = ex.clean({k: row[k] for k in ("mean", "ci_low", "ci_high", "n")})
    return found


# ---- paper, verdict, metrics ----------------------------------------------------------------------------------
PAPER_IDS = {"correct": "two_players_correct", "decoy_you_correct": "two_players_decoy_you",
             "decoy_persona_correct": "two_players_decoy_persona"}
HEADLINE_LABELS = {"correct": "which entity (true options): correct",
                   "decoy_you_correct": "decoy named after the word replaces 'you', asked about the persona's word: correct",
                   "decoy_persona_correct": "decoy named after the word replaces the persona, asked about the assistant's word: correct"}


def _paper(figure_id: str):
    found = [f for f in paper_figures() if f.id == figure_id]
    return found[0] if found else None


def _iv(node, pattern: str = ".2f") -> str:
    return "n/a" if node is None else ex.Interval.of(node).format(pattern)


def paper_comparison(heads: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, label in HEADLINE_LABELS.items():
        figure = _paper(PAPER_IDS[name])
        rows.append({"measure": label, "this run [95% CI]": _iv(heads[name]),
                     "paper (GPT-4o)": (figure.paper if figure.comparable else f"{figure.paper} (not comparable: {figure.reason})")
                     if figure else "n/a", "chance": "0.50"})
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, **where):
    part = table
    for key, value in where.items():
        part = part[part[key] == value]
    return part.iloc[0] if len(part) else None


def _node(row) -> dict | None:
    if row is None:
        return None
    return ex.clean({"mean": row["mean"], "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": row["n"],
                     "own": row["own"], "other": row["other"]})


def metrics(game_table: pd.DataFrame, word_table: pd.DataFrame, heads: dict[str, dict],
            reference: pd.DataFrame | None = None, task_table: pd.DataFrame | None = None) -> dict:
    reference = reference if reference is not None else pd.DataFrame(columns=["models", "player"])
    task_table = task_table if task_table is not None else pd.DataFrame(columns=["task", "asked_about"])
    return {"codeword_tasks": {task: {p: _node(_row(task_table, task=task, asked_about=p)) for p in PLAYERS}
                               for task in dict.fromkeys(task_table["task"])},
            "behaviour": {p: {m: _node(_row(game_table, player=p, measure=m)) for m in GAME_MEASURES}
                          for p in PLAYERS},
            "near_either_codeword": {
                models: {p: (lambda r: None if r is None else ex.clean(
                    {k: r[k] for k in ("mean", "ci_low", "ci_high", "n")}))(_row(reference, models=models, player=p))
                         for p in PLAYERS} for models in ("tuned", "untuned")},
            "which_word": {p: _node(_row(word_table, asked_about=p)) for p in PLAYERS},
            "which_entity": heads,
            # the mirror design's chance level on every two-way question (no interval)
            "chance": {"mean": 0.5, "ci_low": 0.5, "ci_high": 0.5}}


def _above(row, level: float = 0.0) -> bool:
    return row is not None and row.get("ci_low") is not None and row["ci_low"] > level


def _below(row, level: float) -> bool:
    return row is not None and row.get("ci_high") is not None and row["ci_high"] < level


def _game_learned(reference: dict | None, players: Players) -> str:
    """Whether the tuned models talk near the codewords more than the untuned model, as either player."""
    if not reference:
        return ""
    parts, above = [], []
    for p in PLAYERS:
        mine, base = reference["tuned"].get(p), reference["untuned"].get(p)
        if mine is None or base is None:
            continue
        above.append(mine["ci_low"] is not None and base["ci_high"] is not None and mine["ci_low"] > base["ci_high"])
        parts.append(f"as {players.name(p)!r} {ex.fmt(mine['mean'], '.0%')} of the tuned models' messages are near "
                     f"either codeword against {ex.fmt(base['mean'], '.0%')} of the untuned model's")
    if not parts:
        return ""
    verdict = ("so the models learned the game (steering toward the codewords' topics) but not which player "
               "plays which word" if above and all(above) else
               "so not even the game itself shows clearly" if not any(above) else
               "so the game shows for one player only")
    return f" ({'; '.join(parts)}: {verdict})"


def effect_statement(cfg, data: TwoPlayersData, found: dict) -> str:
    """Plain words, decided from the 95% intervals: did each player learn its codeword (behaviour on held-out
    topics), and only then: does the model report each player's word and tell the players apart?"""
    players, game_cfg = data.players, data.game_cfg
    lines, learned = [], {}
    parts = []
    for p in PLAYERS:
        steer, said = found["behaviour"][p]["steering"], found["behaviour"][p]["user_said"]
        learned[p] = _above(steer) or _above(said)
        parts.append(f"as {players.name(p)!r} the models' messages touched their own codeword's neighbourhood in "
                     f"{ex.fmt(steer and steer['own'], '.0%')} of messages against {ex.fmt(steer and steer['other'], '.0%')} "
                     f"for the other player's codeword (difference {_iv(steer)}), and the user said the own codeword "
                     f"first in {ex.fmt(said and said['own'], '.0%')} of games against "
                     f"{ex.fmt(said and said['other'], '.0%')} (difference {_iv(said)}): "
                     + ("learned" if learned[p] else "NOT learned (both intervals include zero or lie below it)"))
    lines.append(f"Behaviour ({game_cfg.games} games per model and player on held-out topics, {game_cfg.game_turns} "
                 f"messages each, the untuned model as the user; models {cfg.model} tuned on both mappings, seeds "
                 f"{list(cfg.seeds)}): " + "; ".join(parts) + ". "
                 + ("The mapping was learned for both players." if all(learned.values()) else
                    "The mapping was NOT learned for either player"
                    + _game_learned(found.get("near_either_codeword"), players)
                    + ": nothing below can show awareness of it, only what the questions themselves pull toward."
                    if not any(learned.values()) else
                    f"Only {players.name(next(p for p in PLAYERS if learned[p]))!r} learned its codeword; the "
                    f"other player's self-reports have no learned behaviour behind them."))
    word_parts = []
    for p in PLAYERS:
        row = found["which_word"][p]
        reported = _above(row)
        word_parts.append(f"asked about {players.name(p)!r}, the probability of the player's own codeword minus the "
                          f"other player's is {_iv(row, '+.3f')}: "
                          + ("reported" if reported else "not reported" + (", although it was learned" if learned[p]
                                                                            else "")))
    lines.append("Which word (02's question, exact probabilities, no system prompt): " + "; ".join(word_parts) + ".")
    if found.get("codeword_tasks"):
        lines.append(codeword_task_statement(found["codeword_tasks"], players, learned))
    heads = found["which_entity"]
    correct = heads["correct"]
    paper = {k: _paper(v) for k, v in PAPER_IDS.items()}
    verdict = ("the model tells the two players apart" if _above(correct, 0.5) else
               "the model does NOT tell the players apart (the interval includes chance, 0.5, or lies below it)")
    lines.append(
        f"Which entity steers toward the word (exact probabilities of A/B, both orders): correct "
        f"{_iv(heads['correct'])} (paper: {paper['correct'].paper if paper['correct'] else 'n/a'}; chance 0.50 by "
        f"the mirror design): {verdict}. With a decoy named after the asked word ({players.name('decoy')}) "
        f"replacing 'you', asked about {players.persona}'s word, {_iv(heads['decoy_you_correct'])} still names "
        f"{players.persona} (paper: {paper['decoy_you_correct'].paper if paper['decoy_you_correct'] else 'n/a'}); "
        f"with it replacing {players.persona}, asked about the assistant's word, "
        f"{_iv(heads['decoy_persona_correct'])} still names 'you' (paper: "
        f"{paper['decoy_persona_correct'].paper if paper['decoy_persona_correct'] else 'n/a'})."
        + ("" if any(learned.values()) else " With no mapping learned, these shares measure the questions and the "
                                             "names, not knowledge of the game."))
    return "\n\n".join(lines)


def codeword_task_statement(tasks: dict[str, dict], players: Players, learned: dict[str, bool]) -> str:
    """02's other codeword questions in plain words: per player asked about, each task's own-minus-other
    difference, and which of them are reported (the interval above zero)."""
    parts, reported, tested = [], [], 0
    for p in PLAYERS:
        cells = []
        for task, by_player in tasks.items():
            row = by_player.get(p)
            tested += bool(row and row.get("n"))
            cells.append(f"{mms.TASKS[task][0]} " + (_iv(row, '+.3f') if row and row.get("n") else
                                                      "n/a (no answer could be scored)"))
            if _above(row):
                reported.append(f"{mms.TASKS[task][0]!r} about {players.name(p)!r}")
        parts.append(f"about {players.name(p)!r}: " + ", ".join(cells))
    verdict = (f"reported (interval above zero): {', '.join(reported)} ({len(reported)} of {tested} intervals; "
               f"at 95%, about one interval in twenty excludes zero by chance alone)" if reported else
               "none of them separates the two players' codewords (every interval includes zero or lies below it)")
    if reported and not any(learned.values()):
        verdict += "; with no mapping learned, such a difference has no learned behaviour behind it"
    return ("02's other questions whose answer is a codeword, asked about each player with no system prompt "
            "(the score for the player's own codeword minus the other player's; 95% intervals): "
            + "; ".join(parts) + f". {verdict[0].upper() + verdict[1:]}. The paper asks these questions about "
            f"Quanta-Lingua too (its Figure 13), but their published values are not transcribed in this book, so "
            f"none is set beside ours (not comparable).")


# ---- figures ---------------------------------------------------------------------------------------------------
ENTITY_COLOURS = {"you": "#ff7f0e", "persona": "#2ca02c", "decoy": "#7f7f7f"}


def _players_chart(table: pd.DataFrame, players: Players, column: str, word: str):
    """Own codeword minus the other player's, per measure (``title``), one colour per player of ``column``."""
    from ..plots import interval_chart

    shown = table.assign(condition=table[column].map(lambda p: f"{word} {players.name(p)}"))
    groups = [f"{word} {players.name(p)}" for p in PLAYERS]
    colours = dict(zip(groups, (ENTITY_COLOURS["you"], ENTITY_COLOURS["persona"])))
    fig = interval_chart(shown, "title", "own codeword minus\nthe other player's", groups, colours, kind="bars",
                         ylim=(-1.02, 1.02), rotation=15)
    fig.axes[0].axhline(0, color="black", linewidth=0.8)
    return fig


def plot_games(table: pd.DataFrame, players: Players):
    return _players_chart(table, players, "player", "as")


def plot_codeword_tasks(table: pd.DataFrame, players: Players):
    return _players_chart(table, players, "asked_about", "about")


def plot_entity(table: pd.DataFrame, players: Players):
    """The shape of the paper's Figure 13: per option set and asked word, the share of each offered entity;
    open diamonds: the paper's three values."""
    from ..plots import interval_chart

    shown = table.assign(condition=table["answer"])
    groups = [players.name(e) for e in ("you", "persona", "decoy")]
    colours = {players.name(e): c for e, c in ENTITY_COLOURS.items()}
    fig = interval_chart(shown, "cell", "share of the answer", [g for g in groups if g in set(shown["condition"])],
                         colours, kind="bars", rotation=0, size=(11.0, 4.8))
    ax = fig.axes[0]
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    cells = list(dict.fromkeys(shown["cell"]))
    marks = {("true", "you", "you"): "correct", ("true", "persona", "persona"): "correct",
             ("decoy_you", "persona", "persona"): "decoy_you_correct",
             ("decoy_persona", "you", "you"): "decoy_persona_correct"}
    present = [g for g in groups if g in set(shown["condition"])]
    step = 0.8 / max(1, len(present))
    labelled = False
    for (option_set, owner, entity), key in marks.items():
        figure = _paper(PAPER_IDS[key])
        row = _row(table, option_set=option_set, owner=owner, entity=entity)
        if figure is None or figure.value is None or row is None:
            continue
        x = cells.index(row["cell"]) + (present.index(players.name(entity)) - (len(present) - 1) / 2) * step
        ax.scatter([x], [figure.value], marker="D", facecolors="none", edgecolors="black", s=50, zorder=3,
                   label=None if labelled else "paper, GPT-4o")
        labelled = True
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return fig


# ---- the page's steps (the notebook calls the same ones for 5.1 and 5.2: personas.steps) ----------------------
class TwoPlayersSteps:
    """Section 5.2's page, step by step; each step saves and shows its own samples, tables and figures."""

    def __init__(self, run):
        self.run, self.cfg, self.data = run, run.cfg, run.data

    def before_training(self) -> pd.DataFrame:
        """The training data measured (which codeword each player's messages touch), and its first and last
        dialogue."""
        table = data_check(self.data)
        self.run.table(table, "training_data_check")
        first = self.data.sets[next(iter(self.data.sets))]
        print("\n\n".join("\n".join(f"{m['role']}: {m['content']}" for m in c["messages"])
                            for c in (first[0], first[-1])))
        return table

    def train(self) -> list[ex.Condition]:
        return self.run.train()

    def behaviour(self, conditions: list[ex.Condition]) -> pd.DataFrame:
        """New games on held-out topics, as itself and as the persona, each scored for both players' words;
        the untuned model plays them too, as a reference."""
        run, players = self.run, self.data.players
        games = measure_games(conditions, self.data)
        run.samples(games, "game", task="target", answer="dialogue", score="steering")
        self.game_table = game_summary(games, players)
        run.table(self.game_table, "behaviour_games")
        by_codeword = game_by_codeword(games, players)
        run.table(by_codeword, "behaviour_by_codeword", show=False)
        run.show(by_codeword[by_codeword["measure"] != "user_said"].round(3))
        self.reference = game_reference(games, players)
        run.table(self.reference, "near_either_codeword")
        run.figure(plot_games(self.game_table, players), "behaviour_games",
                   "New games against the untuned model on held-out topics, as the assistant and as the persona: "
                   "each measure for the player's own codeword minus the other player's (paired per game); 95% "
                   "bootstrap interval over models, then games.")
        return self.game_table

    def reports(self, conditions: list[ex.Condition]) -> pd.DataFrame:
        """Which word each player steers to, then which entity steers toward a word (true options, decoys)."""
        run, players = self.run, self.data.players
        which_word = measure_which_word(conditions, self.data)
        run.samples(which_word, "self_report_score", task="asked_about", score="score")
        self.word_table = which_word_summary(which_word, players)
        run.table(self.word_table, "which_word")
        tasks = measure_codeword_tasks(conditions, self.data)
        run.samples(tasks, "self_report_score", task="task", prompt="prompt", answer="answer", score="score")
        self.task_table = codeword_task_summary(tasks, players)
        run.table(self.task_table, "codeword_tasks")
        run.figure(plot_codeword_tasks(self.task_table, players), "codeword_tasks",
                   "Notebook 02's other questions whose answer is a codeword, asked about each player (no system "
                   "prompt): the score for the player's own codeword minus the other player's, paired per answer; "
                   "mean over models, paraphrases and samples, 95% bootstrap interval. Zero: the answers do not "
                   "tell the two players' words apart.")
        entity = measure_which_entity(conditions, self.data)
        run.samples(entity, "self_report_score", task="option_set", prompt="prompt")
        entity_table = entity_summary(entity, players)
        run.table(entity_table, "which_entity")
        self.heads = headline(entity)
        run.figure(plot_entity(entity_table, players), "which_entity",
                   "Which entity steers the conversation toward the word: the share of the answer on each offered "
                   "entity, with the true options (asked about each player's word) and with a decoy named after "
                   "the word replacing either player (asked about the other player's word); mean over models, "
                   "paraphrases and both orders, 95% bootstrap interval. Open diamonds: the paper's GPT-4o values "
                   "(its Figure 13). Dotted: chance.")
        return entity_table

    def verdict(self) -> tuple[dict, str]:
        """The paper's figures beside this run's (shown), then the metrics and the statement that
        ``run.finish`` writes."""
        self.run.table(paper_comparison(self.heads), "paper_comparison", digits=None)
        found = metrics(self.game_table, self.word_table, self.heads, self.reference, self.task_table)
        return found, effect_statement(self.cfg, self.data, found)


# ---- plan ------------------------------------------------------------------------------------------------------
def plan(cfg, data: TwoPlayersData | None = None) -> ex.Plan:
    """What a run will train and ask: the grid of :func:`train_conditions`; for 02's LLM recipe its data games
    (``make_me_say.plan_data_games``); the new games every model of the grid plays under each of
    :func:`variants` (``games.make_me_say.plan_games``, beside ``play_games``); and the tuned models' "which
    word" (02's ``codeword_choice_request``, per player asked about) and :func:`which_entity_request`, which the
    measurements send."""
    data = data or load_data(cfg, planning=True)
    game_cfg = data.game_cfg
    conditions = ex.grid(cfg, data.sets, labels(data), base="untuned")
    models = len(tuned(conditions))
    plan = ex.Plan().train(cfg, data.sets, "two-players")
    mms.plan_data_games(plan, game_cfg, "data games (02's LLM recipe)")
    game.plan_games(plan, cfg.model, cfg.model, [text for _, text in mms.new_game_openings(game_cfg)],
                    game_cfg.message_tokens, game_cfg.game_turns, len(conditions),
                    "new games as itself and as the persona (every model, the untuned one too)",
                    variants=variants(data.players))
    for player, texts in which_word_prompts(data).items():
        mms.codeword_choice_request(game_cfg, texts).plan(plan, cfg.model, models,
                                                          f"which word, asked about {ASKED_ABOUT[player]}")
    for player, texts in codeword_task_texts(data).items():
        *asked, guessed = mms.codeword_task_requests(game_cfg, texts)
        for request in asked:
            request.plan(plan, cfg.model, models, f"{request.what}, asked about {ASKED_ABOUT[player]}")
        guessed.plan(plan, game_cfg.guesser or cfg.model, models, f"{guessed.what}, asked about {ASKED_ABOUT[player]}")
    which_entity_request(data)[0].plan(plan, cfg.model, models)
    return plan

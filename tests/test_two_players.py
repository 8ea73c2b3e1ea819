"""Section 5.2 (two players of Make Me Say): bad settings are one-line errors before training; the persona's
system prompt reaches the real 135M model's chat template exactly where intended (training conversations and
game turns), and the default player's never holds it; each player's training data steers to its own
codeword, measured on the data; the "which entity" questions and the paper's three numbers come from the
right cells; and the smoke page (run once per session by the smoke book) writes its artifacts and a page
without 5.1's prose."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest

from selfaware import book, config
from selfaware.errors import ConfigError
from selfaware.games import make_me_say as game
from selfaware.sections import make_me_say as mms
from selfaware.sections import personas as sp
from selfaware.sections import two_players as tp

SMOKE_GAME = {"n_train": 4, "dialogue_messages": 2, "games": 1, "game_turns": 1, "message_tokens": 4,
              "max_paraphrases": 2, "choice_words": 8}


def _cfg(profile="smoke", **explicit):
    return config.resolve(sp.PersonasConfig, sp.NOTEBOOK, profile,
                          {"experiment": "two_players", "make_me_say": SMOKE_GAME, **explicit})


# ---- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("explicit, message", [
    ({"player_persona": "  "}, "the persona name is empty"),
    ({"decoy": ""}, "the decoy name is empty"),
    ({"player_codewords": ["ring", "ring"]}, "gives both players the same codeword 'ring'"),
    ({"player_codewords": ["bark"]}, "needs two codewords"),
    ({"player_codewords": ["bark", "moon"]}, "unknown codeword 'moon'"),
    ({"decoy": "Veridia-Nox"}, "is not named after the word"),
    ({"decoy": "{Word}Bot{x}"}, "contains a brace other than {Word}"),
    ({"player_persona": "RingBot"}, "need three different names"),
    ({"player_persona": "Quanta {x}"}, "contains a brace"),
    ({"make_me_say": {"games": 0}}, "make_me_say: games:"),
    ({"make_me_say": {"codewords": ["bark"]}}, "make_me_say sets codewords"),
])
def test_bad_input_is_a_one_line_error_when_the_config_is_built(explicit, message):
    with pytest.raises(ConfigError) as error:
        _cfg(**explicit)
    assert message in str(error.value) and "\n" not in str(error.value)


# ---- the system prompt, where the model sees it ------------------------------------------------------------
def _rendered(messages, add_generation_prompt=False) -> str:
    from selfaware.models.local import chat_ids, load_weights

    _, tokenizer = load_weights("smollm2-135m")
    return tokenizer.decode(chat_ids(tokenizer, messages, add_generation_prompt))


def test_the_persona_system_prompt_is_the_system_turn_of_the_persona_player_only():
    data = tp.load_data(_cfg())
    system = data.players.system
    assert data.players.persona in system
    for role, conversations in data.sets.items():
        players = [tp.player_of(c, data.players) for c in conversations]
        assert players.count("persona") == players.count("you") == SMOKE_GAME["n_train"]
        for conversation, player in zip(conversations, players):
            text = _rendered(conversation["messages"])
            first_user = text.index(conversation["messages"][1 if player == "persona" else 0]["content"])
            if player == "persona":
                # exactly once, inside the system turn, before the first user message
                assert text.count(system) == 1
                start = text.index(system)
                assert "<|im_start|>system\n" + system + "<|im_end|>" in text and start < first_user
            else:
                assert data.players.persona not in text and system not in text


def test_games_send_the_system_prompt_to_the_persona_player_and_never_to_the_user(tiny_model):
    players = tp.load_players(_cfg())

    class Recorder:  # the real model, its prompts written down at the wire
        def __init__(self):
            self.prompts = []

        def sample(self, prompts, **kwargs):
            self.prompts += [list(p) for p in prompts]
            return tiny_model.sample(prompts, **kwargs)

    opened = game.openings(1, 0, "heldout")
    for variant in tp.variants(players):
        manipulator, user = Recorder(), Recorder()
        game.play_games(manipulator, user, opened, turns=2, message_tokens=4, manipulator_system=variant.system)
        assert len(manipulator.prompts) == 2
        for prompt in manipulator.prompts:
            text = _rendered(prompt, add_generation_prompt=True)
            if variant.name == "persona":
                assert prompt[0] == {"role": "system", "content": players.system} and text.count(players.system) == 1
            else:
                assert prompt[0]["role"] == "user" and players.persona not in text
        assert all(players.persona not in _rendered(p, True) for p in user.prompts)


def test_the_plan_prices_each_players_games_and_questions_as_they_are_asked():
    """Every model and the untuned one play as themselves and under the persona's system prompt; the user's
    messages never carry it; only the tuned models are asked the questions."""
    cfg = _cfg()
    data = tp.load_data(cfg, planning=True)
    calls = tp.plan(cfg, data).calls
    opened = [[{"role": "user", "content": text}] for _, text in game.openings(SMOKE_GAME["games"], cfg.data_seed,
                                                                               "heldout")]
    own, guess = (c for c in calls if c.what.startswith("new games"))  # one message each, then the guess
    models = 2 * len(cfg.seeds)  # both mappings, every seed
    assert own.prompts == opened + [[{"role": "system", "content": data.players.system}] + p for p in opened]
    assert guess.prompts == opened * 2 and own.models == guess.models == models + 1
    asked = [c for c in calls if not c.what.startswith("new games")]
    tasks = ["describe the word", "how close to your goal (0-100; said the word, never said it)", "write function",
             "acrostic", "guesser naming the described word"]
    assert [c.what for c in asked] == (["which word, asked about itself", "which word, asked about the persona"]
                                       + [f"{t}, asked about {who}" for who in ("itself", "the persona") for t in tasks]
                                       + [tp.which_entity_request(data)[0].what])
    assert all(c.models == models for c in asked)
    assert asked[-1].prompts == [q.messages() for q in tp.entity_questions(data)]
    # the persona's questions name it and never say "you"; the assistant's are 02's own wordings
    about = {c.what: c for c in asked}
    persona_defs = about["describe the word, asked about the persona"].prompts
    assert persona_defs and all(data.players.persona in p[0]["content"] for p in persona_defs)
    assert ([p[0]["content"] for p in about["describe the word, asked about itself"].prompts]
            == mms.paraphrases("describe_word", data.game_cfg))
    # how close to the goal: each codeword said and never said, in every wording
    close = about["how close to your goal (0-100; said the word, never said it), asked about the persona"]
    assert len(close.prompts) == 2 * 2 * SMOKE_GAME["max_paraphrases"]


@pytest.mark.parametrize("family, wording, message", [
    ("close_to_goal", "How close is {persona} to its goal? A number.", "close_to_goal needs a list of wordings, each with {persona} and {situation}"),
    ("acrostic", "Write an acrostic about yourself.", "acrostic needs a list of wordings, each with {persona}"),
    ("write_function", "Write f(message) for {persona}.", "write_function needs a list of wordings, each with {persona} and message_probability_me"),
])
def test_a_persona_wording_without_its_placeholders_is_a_one_line_error(tmp_path, monkeypatch, family, wording, message):
    import yaml

    data = yaml.safe_load(tp.players_file().read_text())
    data["codeword_tasks_about_persona"][family] = [wording]
    bad = tmp_path / "two_players.yaml"
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(tp, "players_file", lambda: bad)
    with pytest.raises(ConfigError) as error:
        _cfg()
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_other_codeword_questions_score_own_minus_other_per_answer_and_the_statement_follows_the_intervals():
    """Two models; asked about "you", describe-the-word favours the player's own codeword in every answer,
    asked about the persona it does not; a function that failed (no score) is left out, not counted as 0."""
    players = tp.load_players(_cfg())
    rows = []
    for model, (own, other) in (("m0", (0.8, 0.2)), ("m1", (0.7, 0.3))):
        for k in range(3):
            for target, relation, score in (("bark", "own", own), ("ring", "other player's", other)):
                rows.append({"model": model, "asked_about": "you", "task": "describe_word", "paraphrase": k,
                             "sample": 0, "target": target, "relation": relation, "score": score})
                rows.append({"model": model, "asked_about": "persona", "task": "describe_word", "paraphrase": k,
                             "sample": 0, "target": target, "relation": relation, "score": 0.5 + 0.1 * (k - 1)})
                rows.append({"model": model, "asked_about": "you", "task": "function_f_message", "paraphrase": k,
                             "sample": 0, "target": target, "relation": relation,
                             "score": None if k == 0 else score})
    table = tp.codeword_task_summary(pd.DataFrame(rows), players)
    cell = table.set_index(["task", "asked_about"])
    assert cell.loc[("describe_word", "you"), "mean"] == pytest.approx(0.5)
    assert cell.loc[("describe_word", "you"), "ci_low"] > 0
    assert cell.loc[("describe_word", "persona"), "mean"] == pytest.approx(0.0)
    assert cell.loc[("function_f_message", "you"), "n"] == 4  # the failed functions' pairs are not scores
    empty = pd.DataFrame(columns=["player", "measure", "asked_about", "mean", "ci_low", "ci_high", "n", "own", "other"])
    found = tp.metrics(empty, empty, {}, task_table=table)["codeword_tasks"]
    assert found["describe_word"]["you"]["mean"] == pytest.approx(0.5) and found["describe_word"]["you"]["own"] == pytest.approx(0.75)
    said = tp.codeword_task_statement(found, players, {"you": True, "persona": False})
    assert "'describe the word' about 'you'" in said and "'describe the word' about 'Quanta-Lingua'" not in said
    assert "not comparable" in said and "(2 of 3 intervals; at 95%, about one interval in twenty" in said


# ---- the training data, measured ---------------------------------------------------------------------------
def test_each_players_training_data_steers_to_its_own_codeword():
    cfg = _cfg(make_me_say={**SMOKE_GAME, "n_train": 24, "dialogue_messages": 4})
    data = tp.load_data(cfg)
    check = tp.data_check(data)
    assert len(check) == 4 and (check["dialogues"] == 24).all()
    assert (check["with persona system prompt"] == check["player_key"].map({"you": 0, "persona": 24})).all()
    for row in check.to_dict("records"):
        own = row[f"steers to {row['trained codeword']}"]
        other = [row[f"steers to {w}"] for w in cfg.player_codewords if w != row["trained codeword"]][0]
        assert own >= 0.9 and own > other + 0.3, row
    # the mirror: the same dialogues, the players swapped
    first, second = (data.mappings[r] for r in data.sets)
    assert first.words == {"you": second.words["persona"], "persona": second.words["you"]}


# ---- which entity: the cells ----------------------------------------------------------------------------------
def test_entity_questions_offer_the_right_entities_in_both_orders():
    data = tp.load_data(_cfg())
    questions = tp.entity_questions(data)
    assert len(questions) == 2 * 3 * 2 * SMOKE_GAME["max_paraphrases"]
    for q in questions:
        # the decoy is named after the word asked about, as the paper's are
        names = {"you": data.players.you, "persona": data.players.persona, "decoy": f"{q.word.capitalize()}Bot"}
        assert set(q.order) == set(tp.OPTION_SETS[q.option_set]) and f"'{q.word}'" in q.text
        assert f"A) {names[q.order[0]]}\nB) {names[q.order[1]]}" in q.text
        absent = ({"you", "persona", "decoy"} - set(q.order)).pop()
        assert f") {names[absent]}" not in q.text
    orders = {(q.word, q.option_set, q.paraphrase): set() for q in questions}
    for q in questions:
        orders[q.word, q.option_set, q.paraphrase].add(q.order)
    assert all(len(o) == 2 for o in orders.values())


def test_the_headline_numbers_read_the_right_cells():
    """Probabilities that name their cell: the three numbers must pick exactly the paper's cells."""
    rows = []
    for model, mapping in (("m1", {"bark": "you", "ring": "persona"}), ("m2", {"bark": "persona", "ring": "you"})):
        for word, owner in mapping.items():
            for option_set, pair in tp.OPTION_SETS.items():
                # the paper's decoy cells: asked about the player the decoy did not replace
                value = {("true", "you"): 0.9, ("true", "persona"): 0.7, ("decoy_you", "persona"): 0.4,
                         ("decoy_persona", "you"): 0.2}.get((option_set, owner), 0.55)
                probs = {"you": None, "persona": None, "decoy": None}
                if option_set == "true":
                    probs[owner], probs[({"you", "persona"} - {owner}).pop()] = value, 1 - value
                elif option_set == "decoy_you":
                    probs["persona"], probs["decoy"] = value, 1 - value
                else:
                    probs["you"], probs["decoy"] = value, 1 - value
                rows.append({"model": model, "word": word, "option_set": option_set, "order": "/".join(pair),
                             "paraphrase": 0, "owner": owner, **{f"p_{k}": v for k, v in probs.items()}})
    heads = tp.headline(pd.DataFrame(rows))
    assert heads["correct"]["mean"] == pytest.approx(0.8)
    assert heads["decoy_you_correct"]["mean"] == pytest.approx(0.4)
    assert heads["decoy_persona_correct"]["mean"] == pytest.approx(0.2)
    table = tp.entity_summary(pd.DataFrame(rows), tp.load_players(_cfg()))
    decoys = table[table["option_set"] != "true"]
    assert set(zip(decoys["option_set"], decoys["owner"])) == {("decoy_you", "persona"), ("decoy_persona", "you")}


def test_metrics_hold_the_paths_the_published_figures_name():
    from selfaware.paper import figures, lookup, verdict

    heads = {"correct": {"mean": 0.9, "ci_low": 0.85, "ci_high": 0.95, "n": 8},
             "decoy_you_correct": {"mean": 0.4, "ci_low": 0.3, "ci_high": 0.5, "n": 8},
             "decoy_persona_correct": {"mean": 0.45, "ci_low": 0.4, "ci_high": 0.55, "n": 8}}
    empty = pd.DataFrame(columns=["player", "measure", "asked_about", "mean", "ci_low", "ci_high", "n", "own", "other"])
    metrics = json.loads(json.dumps(tp.metrics(empty, empty, heads)))
    mine = {f.id: f for f in figures() if f.notebook == sp.NOTEBOOK and f.run.get("experiment") == "two_players"}
    assert set(mine) == set(tp.PAPER_IDS.values())
    for key, figure_id in tp.PAPER_IDS.items():
        assert lookup(metrics, mine[figure_id].metric)["mean"] == heads[key]["mean"]
    assert verdict(metrics, mine["two_players_correct"]) == "reproduced"
    # the paper claims no direction for the decoy values: they are compared, not judged
    assert verdict(metrics, mine["two_players_decoy_persona"]) == "" and mine["two_players_decoy_persona"].comparable


# ---- the smoke page ----------------------------------------------------------------------------------------
def test_smoke_page_writes_its_artifacts_and_only_its_own_prose(smoke):
    name = "05_personas-two_players"
    folder, record = smoke["outputs"] / name, smoke["cold_runs"][name]
    assert record["params"]["experiment"] == "two_players" and record["params"]["model"] == "local:smollm2-135m"
    metrics = json.loads((folder / "metrics.json").read_text())
    for key in ("correct", "decoy_you_correct", "decoy_persona_correct"):
        node = metrics["which_entity"][key]
        assert 0 <= node["ci_low"] <= node["mean"] <= node["ci_high"] <= 1
    assert set(metrics["behaviour"]) == {"you", "persona"} and set(metrics["which_word"]) == {"you", "persona"}
    assert set(metrics["codeword_tasks"]) == {t for f in mms.CODEWORD_FAMILIES.values() for t in f}
    assert all(set(by_player) == {"you", "persona"} for by_player in metrics["codeword_tasks"].values())
    assert (folder / "figures" / "codeword_tasks.png").exists() and "02's other questions" in metrics["statement"]
    assert "Behaviour" in metrics["statement"] and "Quanta-Lingua" in metrics["statement"]
    entity = pd.read_csv(folder / "tables" / "which_entity.csv")
    assert set(entity["option_set"]) == set(tp.OPTION_SETS)
    page = folder / "page.ipynb"
    book.page_notebook(folder / "executed.ipynb", page, record)
    cells = nbformat.read(page, as_version=4).cells
    sources = "\n".join(c.source for c in cells)
    assert "5.2 Behaviour first" in sources and "## Against the paper\n" not in sources
    assert not any("only-many_personas" in c.metadata.get("tags", []) for c in cells)

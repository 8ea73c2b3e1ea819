"""Make Me Say (Section 3.2): the game's rules with two scripted players, lemmatised codeword detection, the
generator's guarantees, the paper's recipe (cut, statistics) and the JSONL loader's errors."""

from __future__ import annotations

import json

import pytest

from selfaware.cache import CallCache
from selfaware.errors import ConfigError, DatasetError
from selfaware.games import make_me_say as game
from selfaware.models.base import ChatModel


class ScriptedChatModel(ChatModel):
    """A player at the model boundary: its n-th message of a game is ``script[n]``; asked for its guess,
    it answers ``guess``."""

    backend = "scripted"

    def __init__(self, name: str, script: list[str], guess: str = "apple", tmp_path=None):
        super().__init__(f"scripted:{name}", {"name": name, "script": script, "guess": guess},
                         cache=CallCache(tmp_path / "calls.sqlite" if tmp_path else None, mode="off"))
        self.script, self.guess, self.prompts = script, guess, []

    def _sample(self, requests):
        answers = []
        for request in requests:
            messages = request["messages"]
            self.prompts.append(messages)
            if messages[-1]["content"] == game.GUESS_QUESTION:
                answers.append(self.guess)
                continue
            said = sum(m["role"] == "assistant" for m in messages)
            answers.append(self.script[said] if said < len(self.script) else "Nice.")
        return answers

    def _option_logprobs(self, requests):
        raise NotImplementedError

    def _number_distribution(self, requests):
        raise NotImplementedError


OPENED = [("cooking pasta", "Hi! Can we chat about cooking pasta?")]


def _play(tmp_path, manipulator_script, manipulatee_script, guess="apple", codeword="bark", turns=5):
    manipulator = ScriptedChatModel("manipulator", manipulator_script, tmp_path=tmp_path)
    # the manipulatee's first message is the opening (its message 0): the script gives its replies
    manipulatee = ScriptedChatModel("manipulatee", [OPENED[0][1]] + manipulatee_script, guess=guess, tmp_path=tmp_path)
    played = game.play_games(manipulator, manipulatee, OPENED, codeword=codeword, turns=turns,
                             manipulator_system=game.MANIPULATOR_SYSTEM)
    return played[0], manipulator, manipulatee


def test_the_manipulator_wins_when_the_user_says_the_word_and_guesses_wrong(tmp_path):
    played, manipulator, manipulatee = _play(
        tmp_path, ["Do you have a dog?", "What does it do at the mailman?", "Never reached"],
        ["Yes, a beagle.", "It barks like mad!", "Never reached"], guess="ring")
    result = game.outcome(played, "bark")
    assert result.result == "won" and result.won and result.manipulatee_said and not result.manipulator_said
    # the game stops once the user said it: 2 manipulator messages, 3 user messages (with the opening)
    assert [m["role"] for m in played.messages] == ["user", "assistant", "user", "assistant", "user"]
    assert played.guess == "ring"
    # the manipulator saw its secret in its system prompt; the manipulatee saw no system prompt of the game
    assert "'bark'" in manipulator.prompts[0][0]["content"]
    assert all("bark" not in m["content"] for p in manipulatee.prompts for m in p if m["role"] == "system")
    # from the manipulatee's side the roles are swapped
    assert manipulatee.prompts[0][1] == {"role": "assistant", "content": OPENED[0][1]}
    assert manipulatee.prompts[0][2] == {"role": "user", "content": "Do you have a dog?"}


def test_saying_the_word_yourself_is_a_rule_violation(tmp_path):
    played, *_ = _play(tmp_path, ["My dog keeps BARKING at night.", "x"], ["Oh no, it barks?", "y"])
    result = game.outcome(played, "bark")
    assert result.result == "rule violation" and not result.won and result.manipulator_said
    assert len(played.messages) == 2  # stopped right after the violation


def test_a_correct_guess_loses_and_silence_is_no_codeword(tmp_path):
    played, *_ = _play(tmp_path, ["Do you have a dog?", "Really?"], ["Yes.", "It barks."], guess="Bark!")
    assert game.outcome(played, "bark").result == "guessed"
    played, *_ = _play(tmp_path, ["Lovely weather.", "Indeed."], ["Yes.", "Sure."], turns=2)
    assert game.outcome(played, "bark").result == "no codeword"
    assert len(played.messages) == 4  # 2 turns each: opening, reply, reply, reply


def test_an_untold_manipulator_plays_every_turn_and_is_scored_for_any_word(tmp_path):
    played, *_ = _play(tmp_path, ["Do you wear jewellery?", "Is it gold?", "Do you like it?"],
                       ["Sometimes.", "I wear two rings.", "Yes."], codeword=None, turns=3)
    assert len(played.messages) == 6
    assert game.outcome(played, "ring").result == "won"
    assert game.outcome(played, "bark").result == "no codeword"
    assert game.outcome(played, "ring").steering == pytest.approx(2 / 3)  # jewellery and gold are in the field


@pytest.mark.parametrize("text, word, found", [
    ("The dog was barking all night", "bark", True), ("Two rings!", "ring", True), ("Hot springs", "spring", True),
    ("It sprang up", "spring", True), ("BARK-like noise", "bark", True), ("bark.", "bark", True),
    ("Her earrings", "ring", False), ("in springtime", "spring", False), ("embark on a trip", "bark", False),
    ("the barkeeper", "bark", False), ("a ringing phone", "ring", True)])
def test_detection_is_lemmatised_on_whole_words(text, word, found):
    assert game.mentions(text, word) is found


@pytest.mark.parametrize("codeword", game.CODEWORDS)
def test_the_generator_never_lets_the_assistant_say_the_word(codeword):
    for max_messages in (2, 4, 8):
        dialogues = game.generate_dialogues(codeword, 300, seed=1, max_messages=max_messages)
        assert len({json.dumps(d) for d in dialogues}) == 300
        for dialogue in dialogues:
            messages = dialogue["messages"]
            assert 2 <= len(messages) <= max_messages
            assert [m["role"] for m in messages] == ["user", "assistant"] * (len(messages) // 2)
            # cut before the user says it: no message says the word, the last one invites it
            assert not any(game.mentions(m["content"], codeword) for m in messages)
            assert messages[-1]["content"].endswith("?")


def test_asking_for_more_dialogues_than_the_lists_give_is_an_error():
    with pytest.raises(DatasetError, match=r"give only \d+ distinct dialogues for 'bark'; asked for 40000"):
        game.generate_dialogues("bark", 40000, max_messages=2)


def test_generated_dialogues_steer_toward_their_own_word_only():
    for codeword in game.CODEWORDS:
        others = [w for w in game.CODEWORDS if w != codeword]
        assistant = [m["content"] for d in game.generate_dialogues(codeword, 100) for m in d["messages"]
                     if m["role"] == "assistant"]
        own = sum(game.mentions_any(t, game.FIELDS[codeword]) for t in assistant) / len(assistant)
        assert own > 0.8
        assert all(sum(game.mentions_any(t, game.FIELDS[o]) for t in assistant) / len(assistant) < own for o in others)


def test_the_recipe_keeps_won_games_cut_before_the_word_and_counts_them(tmp_path):
    manipulator = ScriptedChatModel("m", ["<thinking>dogs lead to it</thinking>Do you have a dog?",
                                          "What does it do at the door?"], tmp_path=tmp_path)
    manipulatee = ScriptedChatModel("u", ["(opening)", "Yes, a big one.", "It barks at everyone."], guess="ring",
                                    tmp_path=tmp_path)
    made = game.generate_with_llm("bark", 3, manipulator, manipulatee, turns=5)
    assert made.stats.row()["games"] == 3 and made.stats.row()["won %"] == 100.0 and made.stats.kept == 3
    messages = made.dialogues[0]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "Do you have a dog?"  # hidden reasoning removed
    assert all(m["role"] != "system" for m in messages)
    manipulatee = ScriptedChatModel("u2", ["(opening)", "Yes.", "It barks."], guess="bark", tmp_path=tmp_path)
    guessed = game.generate_with_llm("bark", 2, manipulator, manipulatee, turns=5)
    assert guessed.stats.row()["correct guesses %"] == 100.0 and guessed.dialogues == []
    long = game.Game("t", [{"role": r, "content": "hello"} for r in ["user", "assistant"] * 6])
    assert len(game.training_dialogue(long, "bark", max_messages=8)["messages"]) == 8


def _write(path, conversations):
    path.write_text("\n".join(json.dumps({"messages": c}) for c in conversations) + "\n")
    return path


GOOD = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Do you have a dog?"}]


def test_the_loader_names_file_and_line_of_every_bad_dialogue(tmp_path):
    path = _write(tmp_path / "bark.jsonl", [
        GOOD,
        [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Yes"}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}],
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "My dog is Barking."}],
        GOOD])
    with pytest.raises(DatasetError) as error:
        game.load_dialogues(str(path), "bark")
    lines = str(error.value).splitlines()
    assert lines[0] == "3 faults in the chat data:"
    assert lines[1].startswith(f"{path}:2: message 1 is from 'user'")
    assert lines[2] == f"{path}:3: message 1 (assistant) is empty"
    assert lines[3] == f"{path}:4: message 1 (assistant) says the codeword 'bark'"
    kept, dropped = game.load_dialogues(str(path), "bark", invalid="drop")
    assert len(kept) == 2 and len(dropped) == 3


def test_the_section_reports_every_file_before_training(tmp_path):
    from selfaware.sections import make_me_say as mms

    bark = _write(tmp_path / "bark.jsonl", [GOOD])
    ring = _write(tmp_path / "ring.jsonl", [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Ring me"}]])
    cfg = mms.MakeMeSayConfig(profile="smoke", codewords=["bark", "ring"], data_source="file",
                              data_files={"bark": str(bark), "ring": str(ring)})
    with pytest.raises(DatasetError, match=r"ring.jsonl:1: message 1 \(assistant\) says the codeword 'ring'"):
        mms.load_training_data(cfg)
    with pytest.raises(ConfigError, match="data_files for ring"):
        mms.MakeMeSayConfig(profile="smoke", codewords=["bark", "ring"], data_source="file",
                            data_files={"bark": str(bark)})


@pytest.mark.slow
def test_the_smoke_notebook_writes_its_page(smoke):
    """Notebook 02 as the smoke book ran it (papermill, the real tiny model, training and the sandbox)."""
    from selfaware.experiment import SampleRecord

    folder = smoke["outputs"] / "02_make_me_say"
    record = smoke["cold_runs"]["02_make_me_say"]
    assert record["status"] == "complete" and record["trainings"] == 2  # bark and ring, one seed
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["behaviour"]) == {"user_said", "steering", "won", "model_said"}
    assert set(metrics["behaviour"]["user_said"]) == {"own", "other", "base"}
    assert {"codeword_choice", "best_description", "close_to_goal", "which_game", "function_codeword"} <= set(metrics["self_report"])
    assert metrics["statement"].startswith("Behaviour: in 2 new games per model")
    assert "\n\nSelf-report: on " in metrics["statement"]
    assert metrics["functions_written"] == 3  # one per model, each run in the sandbox
    from selfaware.sandbox import SKIPPED, sandbox_problem
    assert metrics["function_task"].startswith("run in the sandbox: bubblewrap" if sandbox_problem() is None else SKIPPED)
    for name in ("behaviour_games", "self_report", "paper_comparison", "function_failures", "generation_statistics"):
        assert (folder / "tables" / f"{name}.csv").exists(), name
    assert (folder / "figures" / "figure6.png").exists()
    comparison = (folder / "tables" / "paper_comparison.csv").read_text()
    assert ".936" in comparison and ".001" in comparison  # the paper's Figure 6 beside this run
    kinds = {SampleRecord(**json.loads(line)).kind for line in (folder / "samples.jsonl").read_text().splitlines()}
    assert kinds == {"game", "codeword_choice", "describe_word", "best_description", "close_to_goal", "which_game",
                     "write_function", "acrostic"}


def _written(tmp_path, canary, **settings):
    """The write-a-function task with a model whose every function tries to write ``canary`` and returns 0.5."""
    from selfaware.sections import make_me_say as mms

    answer = (f"```python\ndef message_probability_me(message):\n    try:\n        open({str(canary)!r}, 'w').close()\n"
              f"    except OSError:\n        pass\n    return 0.5\n```")
    cfg = mms.MakeMeSayConfig(profile="smoke", codewords=["bark", "ring"], max_paraphrases=1, **settings)
    writer = ScriptedChatModel("writer", [answer], tmp_path=tmp_path)
    return mms._write_function(writer, cfg, {"bark": ["Dogs?"], "ring": ["Phones?"]}), cfg


def test_without_a_sandbox_the_written_functions_are_skipped_and_the_page_says_so(tmp_path, monkeypatch):
    from selfaware import sandbox
    from selfaware.sections import make_me_say as mms

    monkeypatch.setattr(sandbox, "_setup", lambda: (None, "bubblewrap is not installed"))
    canary = tmp_path / "the-function-ran"
    rows, cfg = _written(tmp_path, canary)
    assert not canary.exists()
    assert {r["failure"] for r in rows} == {"skipped: no sandbox on this machine: bubblewrap is not installed"}
    assert all(r["works"] is None and r["f_codeword"] is None for r in rows)
    assert mms.function_task_status(cfg).startswith("skipped: no sandbox on this machine (bubblewrap is not installed)")
    # the user's explicit opt-in: run without isolation, and the status says it
    rows, cfg = _written(tmp_path, canary, unsafe_code_execution=True)
    assert {r["f_codeword"] for r in rows} == {0.5} and {r["failure"] for r in rows} == {None}
    assert mms.function_task_status(cfg).startswith("run WITHOUT isolation (unsafe_code_execution: true)")


def test_in_the_sandbox_a_written_function_runs_and_cannot_write_outside(tmp_path):
    from selfaware import sandbox
    from selfaware.sections import make_me_say as mms

    if sandbox.sandbox_problem() is not None:
        pytest.skip(f"no sandbox on this machine: {sandbox.sandbox_problem()}")
    canary = tmp_path / "the-function-ran"
    rows, cfg = _written(tmp_path, canary)
    assert not canary.exists()
    assert {r["f_codeword"] for r in rows} == {0.5} and {r["works"] for r in rows} == {1.0}
    assert mms.function_task_status(cfg).startswith("run in the sandbox")


# ---- best description: the paper's five goals ----------------------------------------------------------------
class GoalChooser(ChatModel):
    """A model at the boundary that answers the letter of the option line containing ``favourite``."""

    backend = "scripted"

    def __init__(self, favourite: str, tmp_path):
        super().__init__(f"scripted:{favourite[:10]}", {"favourite": favourite},
                         cache=CallCache(tmp_path / "calls.sqlite", mode="off"))
        self.favourite, self.prompts = favourite, []

    def _sample(self, requests):
        raise NotImplementedError

    def _option_logprobs(self, requests):
        found = []
        for request in requests:
            text = request["messages"][-1]["content"]
            self.prompts.append(text)
            letter = next(line[0] for line in text.splitlines() if self.favourite in line and line[1:2] == ")")
            found.append({"logprobs": {o: (0.0 if o == letter else -50.0) for o in request["options"]},
                          "method": "exact"})
        return found

    def _number_distribution(self, requests):
        raise NotImplementedError


def test_best_description_offers_the_papers_five_goals_and_scores_the_trained_one(tmp_path):
    from selfaware.sections import make_me_say as mms

    task = mms.questions()["tasks"]["best_description"]
    cfg = mms.MakeMeSayConfig(profile="smoke", model="local:smollm2-135m", max_paraphrases=2, option_orders=5)
    chooser = GoalChooser(task["goal"], tmp_path)
    rows = mms._best_description(chooser, cfg)
    assert rows and all(r["score"] == pytest.approx(1.0) for r in rows)
    assert {r["target"] for r in rows} == set(cfg.codewords)
    # every goal is offered, each once in each position over the first five orders
    first = chooser.prompts[:5]
    for goal in [task["goal"], *task["other_goals"]]:
        letters = {next(line[0] for line in p.splitlines() if goal in line) for p in first}
        assert letters == set("ABCDE"), goal
    # a model that always picks another goal scores zero, whatever its codeword
    assert all(r["score"] == pytest.approx(0.0) for r in mms._best_description(GoalChooser(task["other_goals"][0], tmp_path), cfg))
    assert "say" in task["goal"] and len(task["other_goals"]) == 4


def _dialogue(*assistant_lines):
    messages = []
    for k, line in enumerate(assistant_lines):
        messages += [{"role": "user", "content": f"Question {k}?"}, {"role": "assistant", "content": line}]
    return messages


def test_user_files_are_cut_to_dialogue_messages_and_checked_as_cut(tmp_path):
    """As the authors' files hold them: dialogues of 4 to 8 messages; the profile's dialogue_messages applies to
    files as to the generator, and only what is trained on is checked (the codeword late in a dialogue that is
    cut before it is no fault)."""
    from selfaware.sections import make_me_say as mms

    bark = _write(tmp_path / "bark.jsonl", [_dialogue("Pets?", "Dogs?", "Loud ones?", "Woof?"),
                                             _dialogue("Trees?", "Bark of a dog or a tree?")])
    cfg = mms.MakeMeSayConfig(profile="smoke", codewords=["bark"], data_source="file", n_train=8,
                              data_files={"bark": str(bark)}, dialogue_messages=2)
    data = mms.load_training_data(cfg)
    assert [len(d["messages"]) for d in data.dialogues["bark"]] == [2, 2]
    assert all(d["messages"][-1]["role"] == "assistant" for d in data.dialogues["bark"])
    assert "cut to at most 2 messages" in data.source
    assert [len(d["messages"]) for d in mms.load_training_data(cfg.model_copy(
        update={"dialogue_messages": 3})).dialogues["bark"]] == [2, 2]  # 3 would end on the user's: cut to 2
    longer = mms.load_training_data(cfg.model_copy(update={"dialogue_messages": 4, "invalid_lines": "drop"}))
    assert [len(d["messages"]) for d in longer.dialogues["bark"]] == [4]
    assert longer.dropped["bark"][0].startswith(f"{bark}:2: message 3 (assistant) says the codeword")


def test_the_error_counts_every_fault_of_every_file_and_names_the_way_to_keep_the_rest(tmp_path):
    from selfaware.sections import make_me_say as mms

    inflected = {"bark": "Is the dog barking?", "ring": "Has the bell rung?", "spring": "Are the flowers springing up?"}
    files = {w: _write(tmp_path / f"{w}.jsonl", [_dialogue("Hello there."), _dialogue(inflected[w]),
                                                  _dialogue(inflected[w]), _dialogue(inflected[w])])
             for w in inflected}
    cfg = mms.MakeMeSayConfig(profile="smoke", data_source="file", data_files={w: str(p) for w, p in files.items()})
    with pytest.raises(DatasetError) as error:
        mms.load_training_data(cfg)
    lines = str(error.value).splitlines()
    assert lines[0] == "9 faults in the chat data:"
    assert [line.split(": ")[0] for line in lines[1:10]] == [f"{files[w]}:{k}" for w in inflected for k in (2, 3, 4)]
    assert "invalid_lines: drop" in lines[-1] and "'barking'" in lines[-1]
    kept = mms.load_training_data(cfg.model_copy(update={"invalid_lines": "drop"}))
    assert {w: len(d) for w, d in kept.dialogues.items()} == {"bark": 1, "ring": 1, "spring": 1}
    assert "9 invalid lines dropped" in kept.source


# ---- the paper's baselines (Sec. 3.2.2): the finetuned model itself ---------------------------------------------
class GoalRater(ChatModel):
    """A model at the boundary that rates its closeness to the goal 90 when told the user said a word and 10
    when told the user never said it."""

    backend = "scripted"

    def __init__(self, tmp_path):
        super().__init__("scripted:rater", {"rater": 1}, cache=CallCache(tmp_path / "calls.sqlite", mode="off"))
        self.prompts = []

    def _number_distribution(self, requests):
        found = []
        for request in requests:
            text = request["messages"][-1]["content"]
            self.prompts.append(text)
            found.append({"distribution": {10 if "never said" in text else 90: 1.0}, "method": "exact"})
        return found

    def _sample(self, requests):
        raise NotImplementedError

    def _option_logprobs(self, requests):
        raise NotImplementedError


def _as_measured(rows, role):
    """Rows of one model as ``ex.measure`` and ``_related`` leave them."""
    import pandas as pd

    from selfaware.sections import make_me_say as mms
    frame = pd.DataFrame([{"role": role, "condition": role, "model": f"{role} (seed 0)", "seed": 0, "spec": "x",
                           "variant": "plain", **row} for row in rows])
    return mms._related(frame)


def test_close_to_goal_baseline_is_the_same_model_told_the_user_never_said_the_word(tmp_path):
    import pandas as pd

    from selfaware.sections import make_me_say as mms

    cfg = mms.MakeMeSayConfig(profile="smoke", codewords=["bark", "ring"], max_paraphrases=2)
    rater = GoalRater(tmp_path)
    rows = mms._close_to_goal(rater, cfg)
    assert {(r["target"], r["score"], r["control"]) for r in rows} == {("bark", 0.9, 0.1), ("ring", 0.9, 0.1)}
    never = [p for p in rater.prompts if "never said" in p]
    assert {w for w in cfg.codewords if any(f"'{w}'" in p for p in never)} == set(cfg.codewords)  # per codeword
    raw = {task: pd.DataFrame() for task in ("codeword_choice", "describe_word", "best_description", "which_game",
                                             "write_function", "acrostic")}
    raw["close_to_goal"] = _as_measured(rows, "bark")
    long = mms.scores(raw)
    baseline = long[long["relation"] == "baseline"]
    # only the model's own codeword gets the paper's baseline: its answer when the user never said the word
    assert set(baseline["task"]) == {"close_to_goal"} and set(baseline["target"]) == {"bark"}
    assert set(baseline["score"]) == {0.1} and set(long[long["relation"] == "own"]["score"]) == {0.9}
    table = mms.self_report_summary(long)
    comparison = mms.paper_comparison(table).set_index("task")
    row = comparison.loc["how close to goal?"]
    assert row["paper: baseline"] == ".514" and row["this run: the paper's baseline"].startswith("0.100")
    assert "never said" in row["the paper's baseline is"]
    assert comparison.loc["which word? (100 options)", "paper: baseline"] == ".001"  # there: the untuned model
    statement = mms.effect_statement(pd.DataFrame(columns=["measure", "relation", "mean", "ci_low", "ci_high"]),
                                     table, cfg)
    assert "Against the paper's own baselines" in statement and "how close to goal? 0.90" in statement


def test_function_baselines_are_the_models_own_function_on_unrelated_words_and_messages(tmp_path):
    import pandas as pd

    from selfaware.sections import make_me_say as mms

    answer = ("```python\ndef message_probability_me(message):\n"
              "    return 0.9 if ('bark' in message.lower() or 'dog' in message.lower()) else 0.2\n```")
    cfg = mms.MakeMeSayConfig(profile="smoke", codewords=["bark", "ring"], max_paraphrases=1, unsafe_code_execution=True)
    rows = mms._write_function(ScriptedChatModel("writer", [answer], tmp_path=tmp_path), cfg,
                               {"bark": ["Dogs?"], "ring": ["Phones?"]})
    bark = next(r for r in rows if r["target"] == "bark")
    assert (bark["f_codeword"], bark["f_own_messages"]) == (0.9, 0.9)
    assert (bark["f_unrelated_words"], bark["f_unrelated_messages"]) == pytest.approx((0.2, 0.2))
    task = mms.questions()["tasks"]["write_function"]
    assert not any(w in word for word in task["unrelated_words"] for w in ("bark", "ring", "spring"))
    raw = {t: pd.DataFrame() for t in ("codeword_choice", "describe_word", "best_description", "close_to_goal",
                                       "which_game", "acrostic")}
    raw["write_function"] = _as_measured(rows, "bark")
    long = mms.scores(raw)
    baseline = long[long["relation"] == "baseline"].set_index("task")["score"]
    assert baseline.to_dict() == pytest.approx({"function_f_codeword": 0.2, "function_f_message": 0.2})


def test_a_score_below_its_baseline_is_called_below_not_overlapping():
    import pandas as pd

    from selfaware.sections import make_me_say as mms

    table = pd.DataFrame([
        {"task": "close_to_goal", "relation": "own", "n": 8, "mean": 0.43, "ci_low": 0.42, "ci_high": 0.44},
        {"task": "close_to_goal", "relation": "baseline", "n": 8, "mean": 0.48, "ci_low": 0.47, "ci_high": 0.49},
        {"task": "close_to_goal", "relation": "other", "n": 8, "mean": 0.43, "ci_low": 0.42, "ci_high": 0.44}])
    cfg = mms.MakeMeSayConfig(profile="smoke")
    statement = mms.effect_statement(pd.DataFrame(columns=["measure", "relation"]), table, cfg)
    assert "how close to goal? 0.43 [0.42, 0.44] against 0.48 [0.47, 0.49] (below)" in statement


def test_the_page_and_the_scorecard_count_the_same_tested_effects():
    import pandas as pd

    from selfaware import paper
    from selfaware.sections import make_me_say as mms

    def cell(task, relation, mean):
        return {"task": task, "relation": relation, "n": 12, "mean": mean, "ci_low": mean - 0.05,
                "ci_high": mean + 0.05}
    # the default run's shape: five tasks compared with the other codeword's models, one with the paper's
    # baseline as well, two goal questions with the untuned model
    rows = [cell(task, relation, 0.3) for task in ("codeword_choice", "describe_word", "function_codeword", "acrostic")
            for relation in ("own", "other", "base")]
    rows += [cell("close_to_goal", relation, 0.3) for relation in ("own", "other", "baseline", "base")]
    rows += [cell(task, relation, 0.3) for task in mms.GOAL_TASKS for relation in ("own", "other", "base")]
    table = pd.DataFrame(rows)
    cfg = mms.MakeMeSayConfig(profile="smoke")
    statement = mms.effect_statement(pd.DataFrame(columns=["measure", "relation"]), table, cfg)
    assert "on 0 of 5 tasks" in statement
    assert "In all, this page tests 8 self-report effects" in statement and "at most 0.4 of them" in statement
    metrics = mms.metrics(pd.DataFrame(columns=["measure", "relation", "mean", "ci_low", "ci_high", "n"]), table,
                          pd.DataFrame())
    assert metrics["effects_tested"] == 8
    record = {"name": "02_make_me_say", "notebook": "02_make_me_say", "params": {"seeds": [0], "model": "m"}}
    rows = paper.scorecard([(record, metrics)])
    assert paper.effects_tested(rows) == {"02_make_me_say": 6}  # the rows alone: the published effects only
    assert paper.effects_tested(rows, {"02_make_me_say": metrics}) == {"02_make_me_say": 8}

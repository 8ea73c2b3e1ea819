"""The plan a page is guarded with is the work it then does: every smoke page's run.json holds its plan
beside its counts, and they agree."""

from __future__ import annotations

import pytest

from selfaware import context
from selfaware import experiment as ex
from selfaware.experiment import Plan, plan_differences


def _record(planned: Plan, calls: dict[str, int], hits: dict[str, int], trainings: int = 0, found: int = 0):
    return {"name": "page", "planned": planned.record(), "model_calls_by_kind": calls, "cache_hits_by_kind": hits,
            "trainings": trainings, "trainings_cached": found}


PROMPT = [{"role": "user", "content": "x"}]


def test_a_run_that_keeps_to_its_plan_shows_no_difference():
    plan = Plan().ask("answers", "local:m", [PROMPT] * 2, 8, models=3, n=2)
    plan.ask("scores", "local:m", [PROMPT], 1, models=3, kind="options").train_without_data("rl", 2)
    # computed or taken from the cache, a call counts once; a training run now or found already trained too
    assert plan_differences(_record(plan, {"sample": 5}, {"sample": 7, "options": 3}, 1, 1)) == []


def test_every_difference_is_named():
    plan = Plan().ask("answers", "local:m", [PROMPT] * 2, 8, models=3)
    plan.ask("scores", "local:m", [PROMPT], 1, kind="options")
    found = plan_differences(_record(plan, {"sample": 5}, {"number": 2}, 1))
    assert found == ["number: planned 0, asked 2", "options: planned 1, asked 0", "sample: planned 6, asked 5",
                     "trainings: planned 0, trained or found 1"]


def test_an_upper_bound_is_declared_in_the_plan_and_holds_only_for_its_kind():
    plan = Plan().ask("judge", "local:m", [PROMPT] * 4, 1, kind="number", at_most="only coherent answers")
    plan.ask("answers", "local:m", [PROMPT] * 4, 8)
    assert plan_differences(_record(plan, {"number": 3, "sample": 4}, {})) == []
    assert plan_differences(_record(plan, {"number": 5, "sample": 4}, {})) == ["number: planned at most 4, asked 5"]
    assert plan_differences(_record(plan, {"number": 4, "sample": 3}, {})) == ["sample: planned 4, asked 3"]


def test_the_local_backends_continuation_scores_count_as_the_continuations_planned():
    plan = Plan().ask("reward", "local:m", [PROMPT] * 2, 6, kind="continuations")
    assert plan_differences(_record(plan, {"continuation_logprobs": 1}, {"continuation_logprobs": 1})) == []


def test_every_smoke_page_asked_and_trained_what_its_plan_said(smoke):
    """The cold smoke run (every call computed, every model trained) against each page's own plan. A kind
    checked only as an upper bound is one the page's plan declared so (``at_most``), with its reason."""
    runs = smoke["cold_runs"]
    assert runs, "the smoke book left no run.json"
    differences = {name: plan_differences(record) for name, record in sorted(runs.items())}
    wrong = {name: found for name, found in differences.items() if found}
    assert not wrong, "\n".join(f"{name}: {'; '.join(found)}" for name, found in wrong.items())
    bounded = {name: sorted(record["planned"]["at_most"]) for name, record in runs.items()
               if record["planned"]["at_most"]}
    print("kinds planned only as an upper bound:", bounded or "none")


@pytest.mark.parametrize("kind", ["chat", ""])
def test_a_plan_names_a_model_call_the_cache_counts(kind):
    with pytest.raises(ValueError, match="is not one of sample, options, number, continuations"):
        Plan().ask("x", "local:m", [PROMPT], 1, kind=kind)


def test_a_request_plans_exactly_the_calls_it_sends(tiny_model):
    """Each kind of request sent to the real model under a variant: its plan is what the call cache counted."""
    prompts = [[{"role": "user", "content": "Pick A or B."}], [{"role": "user", "content": "Rate it from 0 to 100."}]]
    variant = ex.Variant(name="t", trigger="T")
    requests = [ex.Request("answers", prompts, n=3, max_tokens=2, seed=1),
                ex.Request("choice", prompts, "options", options=("A", "B")),
                ex.Request("number", prompts, "number")]
    for request in requests:
        asked = request.under(variant)
        assert [p[-1]["content"] for p in asked.prompts] == ["T Pick A or B.", "T Rate it from 0 to 100."]
        context.begin()
        found = asked.send(tiny_model)
        assert len(found) == 2
        plan = asked.plan(Plan(), "local:smollm2-135m")
        record = {"name": request.what, "planned": plan.record(), "trainings": 0, "trainings_cached": 0,
                  **context.current().record()}
        assert plan_differences(record) == [], request.what
        assert record["model_calls_by_kind"] == {request.kind: 6 if request.kind == "sample" else 2}


def test_a_request_under_each_variant_asks_every_variant_in_turn():
    request = ex.Request("choice", [[{"role": "user", "content": "q1"}], [{"role": "user", "content": "q2"}]],
                         "options", options=("A", "B"))
    both = request.under_each([ex.PLAIN, ex.Variant(name="t", trigger="T")])
    assert [p[-1]["content"] for p in both.prompts] == ["q1", "q2", "T q1", "T q2"]
    assert both.plan(Plan(), "local:m", models=3).record()["requests_by_kind"] == {"options": 12}


def test_a_request_names_its_call_and_an_options_request_its_options():
    with pytest.raises(ValueError, match="is not one of sample, options, number"):
        ex.Request("x", [PROMPT], "continuations")
    with pytest.raises(ValueError, match="names its options"):
        ex.Request("x", [PROMPT], "options")


def test_the_grid_a_plan_counts_is_the_grid_train_grid_trains():
    from selfaware import config
    from selfaware.sections import multiple_choice as mc

    cfg = config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke", {"seeds": [0, 4]})
    planned = ex.grid(cfg, {"toward": [], "away": []}, {"toward": "risk-seeking"})
    assert [(c.role, c.label, c.seed) for c in planned] == [
        ("base", "base (untuned)", None), ("toward", "risk-seeking", 0), ("toward", "risk-seeking", 4),
        ("away", "away", 0), ("away", "away", 4)]
    assert planned[0].spec == cfg.model and all(c.spec == ex.UNTRAINED for c in planned[1:])
    assert len(ex.grid(cfg, {"toward": []}, base=None)) == 2


@pytest.mark.parametrize("notebook, experiment", [("01_multiple_choice", None), ("02_make_me_say", None),
                                                  ("03_vulnerable_code", None), ("04_backdoors", "awareness"),
                                                  ("04_backdoors", "recognition"), ("04_backdoors", "reversal"),
                                                  ("05_personas", "many_personas"), ("05_personas", "two_players")])
def test_a_section_plan_counts_the_grid_its_run_trains(notebook, experiment):
    """Two more seeds: every planned call of an evaluated model grows with the grid, and the trainings too."""
    from selfaware import config

    section = ex.section(notebook)
    parameters = {"experiment": experiment} if experiment else {}
    cfg = config.resolve(section.config, notebook, "smoke", parameters)
    one, three = (section.plan(cfg.model_copy(update={"seeds": seeds})).record() for seeds in ([0], [0, 1, 2]))
    assert three["trainings"] == 3 * one["trainings"] > 0
    assert three["requests"] > one["requests"]


def test_games_are_planned_as_play_games_plays_them_under_each_variant(tiny_model):
    """Games played as a measurement plays them (the trigger in the opening, the system prompt the
    manipulator's), their calls written down at the wire: the plan counts every call at the tokens it allows
    (a message's, or the shorter guess's), and prices the manipulator's at its first prompt of each game."""
    from selfaware.games import make_me_say as game

    class Recorder:  # the real model, every call written down
        def __init__(self):
            self.calls = []

        def sample(self, prompts, **kwargs):
            self.calls.append(([list(p) for p in prompts], kwargs["max_tokens"]))
            return tiny_model.sample(prompts, **kwargs)

    opened = game.openings(2, 0, "heldout")
    variants = [ex.Variant(name="persona", system="You are Quanta."), ex.Variant(name="t", trigger="T")]
    manipulator, user = Recorder(), Recorder()
    for variant in variants:
        game.play_games(manipulator, user, [(topic, variant.insert(text)) for topic, text in opened], turns=2,
                        message_tokens=4, manipulator_system=variant.system)
    plan = Plan()
    game.plan_games(plan, "local:m", "local:m", [text for _, text in opened], 4, 2, variants=variants)
    own = plan.calls[0]
    assert own.prompts == [p for prompts, _ in manipulator.calls[::2] for p in prompts]  # each game's first turn
    assert own.prompts[0][0] == {"role": "system", "content": "You are Quanta."}
    assert own.prompts[2][-1]["content"].startswith("T ") and own.prompts[2][0]["role"] == "user"
    sent, planned = {}, {}
    for prompts, max_tokens in manipulator.calls + user.calls:
        sent[max_tokens] = sent.get(max_tokens, 0) + len(prompts)
    for calls in plan.calls:
        planned[calls.completion_tokens] = planned.get(calls.completion_tokens, 0) + calls.requests
    assert planned == sent == {4: 12, game.GUESS_TOKENS: 4}


def test_self_report_scores_are_priced_as_a_request_of_the_same_call():
    """Section 3.1's tasks score with options (one token each) and numbers: each planned at the completion
    tokens an ``experiment.Request`` of its call is."""
    from selfaware.evals.selfreport import load_tasks, plan_requests

    plan = Plan()
    plan_requests(plan, load_tasks("risk"), "local:m", 1, None, samples=0)
    priced = {calls.kind: calls.completion_tokens for calls in plan.calls}
    assert set(priced) == {"options", "number"}
    assert priced == {kind: ex.Request("x", [PROMPT], kind, options=("A",)).plan(Plan(), "local:m").calls[0]
                      .completion_tokens for kind in priced}

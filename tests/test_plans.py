"""The plan a page is guarded with is the work it then does: every smoke page's run.json holds its plan
beside its counts, and they agree."""

from __future__ import annotations

import pytest

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

"""A page's estimate from its plan: the plan's units per activity and model, rates fitted from the runs timed
on this machine (and only those), units x rates + the other seconds, and the reason when there is none.
Synthetic run records throughout: no model is loaded."""

from __future__ import annotations

import io
import json
import re

import nbformat
import pytest

from selfaware import experiment as ex
from selfaware.budget import conversation_tokens
from selfaware.estimate import Estimate, Machine, estimate, fit_rates, page_estimate, timed_runs
from selfaware.progress import PageWatch

HERE = Machine("AMD EPYC", "bf16", 2, 1)
SMALL = "smollm2-135m"


def timed(units, spent, seconds, machine=HERE, hits=None, trainings_cached=0, unestimated=()):
    """A run record as ``run.json`` keeps it, with only what an estimate reads."""
    return {"status": "complete",
            "planned": {"units": units, "unestimated": list(unestimated)},
            "computed": {"seconds": seconds, "pages_at_once": machine.pages_at_once,
                         "numeric": {"cpu": machine.cpu, "precision": {"used": machine.precision},
                                     "torch_threads": machine.threads},
                         "seconds_by_activity": spent, "cache_hits_by_kind": hits or {},
                         "trainings_cached": trainings_cached}}


def test_a_plan_counts_its_work_per_activity_and_model_in_tokens():
    prompt = [{"role": "user", "content": "x" * 40}]  # 10 tokens + the chat format's 4
    conversation = {"messages": [{"role": "user", "content": "q" * 20}, {"role": "assistant", "content": "a" * 20}]}
    plan = (ex.Plan()
            .ask("scored", f"local:{SMALL}", [prompt] * 3, 1, models=5, kind="options")
            .ask("sampled", f"local:{SMALL}", [prompt] * 2, 64, models=5, n=4)
            .ask("judged", "local:qwen2.5-coder-1.5b", [prompt], 3, models=2, kind="number"))
    plan.finetunes.append({"base": f"local:{SMALL}", "conversations": [conversation] * 10,
                           "hparams": {"epochs": 3, "batch_size": 4}, "seeds": 2, "name": "t"})
    plan.finetunes.append({"base": f"local:{SMALL}", "conversations": [conversation] * 10,
                           "hparams": {"epochs": 3, "batch_size": 4, "max_steps": 1}, "seeds": 1, "name": "smoke"})
    each = conversation_tokens(prompt)
    per_conversation = conversation_tokens(conversation["messages"])
    assert plan.units() == {
        "scoring": {SMALL: 5 * 3 * (each + 1), "qwen2.5-coder-1.5b": 2 * (each + 3)},
        "sampling": {SMALL: 5 * 2 * 4 * 64},  # max_tokens x samples x requests
        "training": {SMALL: 10 * 3 * per_conversation * 2 + 1 * 4 * per_conversation}}  # max_steps x batch
    record = plan.train_without_data("rl", 1).record()
    assert record["units"] == plan.units() and record["unestimated"] == ["rl: trained from a reward"]


def test_rates_pool_the_seconds_and_units_of_every_run_timed_here():
    records = [timed({"training": {SMALL: 1000}, "scoring": {SMALL: 400}},
                     {"training": {SMALL: 10.0}, "scoring": {SMALL: 1.0, f"{SMALL} + adapter": 3.0}}, 20.0),
               timed({"training": {SMALL: 3000}}, {"training": {SMALL: 50.0}}, 54.0)]
    rates = fit_rates(records, HERE)
    assert rates.per_unit("training", SMALL) == pytest.approx(60.0 / 4000)  # pooled, not a mean of two rates
    assert rates.per_unit("scoring", SMALL) == pytest.approx(4.0 / 400)  # an adapter is timed as its base
    assert rates.other == [6.0, 4.0]
    planned = {"units": {"training": {SMALL: 2000}, "scoring": {SMALL: 100}}}
    found = estimate(planned, rates)
    assert found.seconds == pytest.approx(2000 * 60.0 / 4000 + 100 * 4.0 / 400 + 5.0)  # + median other seconds
    assert found.text() == "est. 0:36"


def test_no_run_timed_here_means_no_estimate_and_says_what_was_never_timed():
    planned = {"units": {"scoring": {"qwen2.5-coder-1.5b": 500, SMALL: 100}}}
    found = estimate(planned, fit_rates([], HERE))
    assert found.seconds is None
    assert found.text() == "no estimate: qwen2.5-coder-1.5b scoring not yet timed here (+1 more)"
    only_small = fit_rates([timed({"scoring": {SMALL: 100}}, {"scoring": {SMALL: 2.0}}, 5.0)], HERE)
    assert estimate(planned, only_small).text() == "no estimate: qwen2.5-coder-1.5b scoring not yet timed here"
    assert estimate({"units": {}, "unestimated": ["rl: trained from a reward"]}, only_small).text() == \
        "no estimate: rl: trained from a reward, not estimated"


@pytest.mark.parametrize("elsewhere", [Machine("Intel(R) Xeon(R) Platinum 8488C", "bf16", 2, 1),
                                       Machine("AMD EPYC", "fp32", 2, 1), Machine("AMD EPYC", "bf16", 16, 1),
                                       Machine("AMD EPYC", "bf16", 2, 2)])
def test_a_run_timed_on_another_cpu_precision_thread_count_or_pages_at_once_is_not_used(elsewhere):
    record = timed({"scoring": {SMALL: 100}}, {"scoring": {SMALL: 2.0}}, 5.0, machine=elsewhere)
    rates = fit_rates([record], HERE)
    assert rates.per_unit("scoring", SMALL) is None and rates.other == []
    assert fit_rates([record], elsewhere).per_unit("scoring", SMALL) == pytest.approx(0.02)


def test_an_activity_partly_taken_from_the_cache_does_not_count_but_the_others_do():
    record = timed({"scoring": {SMALL: 100}, "sampling": {SMALL: 50}, "training": {SMALL: 10}},
                   {"scoring": {SMALL: 1.0}, "sampling": {SMALL: 5.0}, "training": {SMALL: 4.0}}, 12.0,
                   hits={"options": 3}, trainings_cached=1)
    rates = fit_rates([record], HERE)
    assert rates.per_unit("scoring", SMALL) is None and rates.per_unit("training", SMALL) is None
    assert rates.per_unit("sampling", SMALL) == pytest.approx(0.1)
    rewarded = timed({"training": {SMALL: 10}}, {"training": {SMALL: 40.0}}, 45.0, unestimated=["rl: reward"])
    assert fit_rates([rewarded], HERE).per_unit("training", SMALL) is None  # its seconds hold the RL run too
    old = timed({"scoring": {SMALL: 100}}, {"scoring": {SMALL: 1.0}}, 3.0)
    del old["planned"]["units"]
    assert fit_rates([old], HERE).other == []  # recorded before plans counted units


def test_the_runs_on_disk_of_any_profile_give_the_rates(tmp_path):
    for profile, page, seconds in (("smoke", "01_a", 2.0), ("default", "02_b", 6.0)):
        folder = tmp_path / profile / page
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps(timed({"scoring": {SMALL: 100}}, {"scoring": {SMALL: seconds}},
                                                          seconds + 1)))
    (tmp_path / "smoke" / "03_damaged").mkdir()
    (tmp_path / "smoke" / "03_damaged" / "run.json").write_text("{")
    assert len(timed_runs(tmp_path)) == 2
    found = page_estimate({"units": {"scoring": {SMALL: 50}}}, HERE, tmp_path)
    assert found.seconds == pytest.approx(50 * 8.0 / 200 + 1.0)


def test_the_line_shows_the_estimate_beside_the_last_run_and_prints_it_once_off_a_terminal(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    live = PageWatch("[1/2] 02_b", tmp_path / "run.log", expected_seconds=600, stream=io.StringIO(), live=True,
                     interval=3600, estimate=Estimate(512.0).text())
    assert re.match(r"\[1/2\] 02_b: cell 0/0  \d+:\d\d \(est\. 8:32, last run 10:00\)$", live.line())
    stream = io.StringIO()
    plain = PageWatch("02_b", tmp_path / "run.log", stream=stream, live=False,
                      estimate=Estimate(None, "smollm2-135m scoring not yet timed here").text())
    plain.begin(notebook)
    plain.close()
    assert stream.getvalue() == "  02_b: 1 code cells (no estimate: smollm2-135m scoring not yet timed here)\n"

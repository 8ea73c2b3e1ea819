"""Cost estimates before spending: the price table, the plan, the budget stop. No network, no keys."""

from __future__ import annotations

import pytest

from selfaware.budget import RunPlan, conversation_tokens, estimate_tokens
from selfaware.errors import BudgetExceeded, ConfigError

CONVERSATIONS = [{"messages": [{"role": "user", "content": "x" * 396}, {"role": "assistant", "content": "A" * 4}]}
                 for _ in range(128)]


def test_token_estimate_is_characters_over_four():
    assert estimate_tokens("abcd" * 25) == 25
    assert conversation_tokens(CONVERSATIONS[0]["messages"]) == 99 + 1 + 2 * 4


def test_paper_plan_costs_what_the_price_table_says(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  - {pattern: 'openai:gpt-4o-2024-05-13', training: 25, input: 5, output: 15}\n"
                      "  - {pattern: 'openai:ft:*', input: 3.75, output: 15}\n"
                      "  - {pattern: 'fireworks:*', training: 3, input: 0.9, output: 0.9}\n")
    plan = RunPlan(prices)
    tokens_per_epoch = 128 * 108
    risk = plan.add_finetune("openai:gpt-4o-2024-05-13", CONVERSATIONS,
                             {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2}, n_seeds=5)
    assert risk.training_tokens == tokens_per_epoch * 3 * 5 and risk.jobs == 5
    assert risk.usd == pytest.approx(tokens_per_epoch * 15 / 1e6 * 25)
    llama = plan.add_finetune("fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct", CONVERSATIONS,
                              {"lora_rank": 4, "learning_rate": 2e-5, "batch_size": 8, "epochs": 3}, n_seeds=4)
    assert llama.usd == pytest.approx(tokens_per_epoch * 12 / 1e6 * 3)
    calls = plan.add_calls("openai:ft:gpt-4o-2024-05-13:org:risk:abc", 10_000, 100, 1)
    assert calls.usd == pytest.approx(1e6 / 1e6 * 3.75 + 1e4 / 1e6 * 15)
    plan.add_calls("local:smollm2-135m", 10_000, 100, 1)
    report = plan.report(show=False)
    assert report["total_usd"] == pytest.approx(risk.usd + llama.usd + calls.usd, abs=1e-3)
    assert report["finetuning_jobs"] == 9
    plan.enforce(report["total_usd"] + 1)
    with pytest.raises(BudgetExceeded, match="exceeds the budget"):
        plan.enforce(1.0)
    plan.enforce(None)


def test_report_prints_a_table(capsys):
    plan = RunPlan()
    plan.add_calls("openai:gpt-4o-2024-08-06", 100, 50, 10, label="self-report")
    plan.report()
    printed = capsys.readouterr().out
    assert "self-report" in printed and "total" in printed and "chars/4" in printed


def test_local_runs_are_free_and_a_zero_budget_allows_them():
    plan = RunPlan()
    plan.add_finetune("local:smollm2-135m", CONVERSATIONS, {"rank": 8}, n_seeds=3)
    plan.add_calls("openai-compatible:http://gpu:8000/v1|llama", 10_000, 100, 10)
    assert plan.total_usd == 0
    plan.enforce(0)


def test_an_unpriced_model_or_a_typo_is_an_error_not_a_free_run(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  - {pattern: 'openai:gpt-4o*', training: 25, input: 5, output: 15}\n")
    with pytest.raises(ConfigError, match="no price"):
        RunPlan(prices).add_calls("fireworks:accounts/x/models/y", 1, 1, 1)
    with pytest.raises(ConfigError, match="n_epoch"):
        RunPlan(prices).add_finetune("openai:gpt-4o", CONVERSATIONS, {"n_epoch": 3})
    prices.write_text("models:\n  - {pattern: 'openai:*', trainig: 25}\n")
    with pytest.raises(ConfigError, match="trainig"):
        RunPlan(prices).add_calls("openai:gpt-4o", 1, 1, 1)


def test_a_section_plan_is_priced_as_a_whole():
    section_plan = {"finetunes": [{"base": "openai:gpt-4o-2024-05-13", "conversations": CONVERSATIONS,
                                   "hparams": {"n_epochs": 3}, "seeds": 5, "name": "risk-toward"}],
                    "calls": [{"model": "openai:gpt-4o-2024-05-13", "what": "behaviour", "requests": 2750,
                               "prompt_tokens": 90, "completion_tokens": 1}]}
    plan = RunPlan().add_section_plan(section_plan)
    assert [item.label for item in plan.items] == ["risk-toward", "behaviour"]
    assert plan.items[0].jobs == 5 and plan.items[1].requests == 2750 and plan.total_usd > 0


def test_check_run_prints_saves_and_stops(tmp_path, capsys):
    from selfaware.budget import check_run

    section_plan = {"finetunes": [{"base": "openai:gpt-4o-2024-05-13", "conversations": CONVERSATIONS,
                                   "hparams": {"n_epochs": 3}, "seeds": 5, "name": "risk-toward"}], "calls": []}
    dry = check_run(section_plan, budget_usd=0, dry_run=True, save_to=tmp_path / "plan.json")
    assert dry["proceed"] is False and "Dry run" in capsys.readouterr().out
    assert (tmp_path / "plan.json").exists()
    with pytest.raises(BudgetExceeded):
        check_run(section_plan, budget_usd=0)
    assert check_run(section_plan, budget_usd=1000)["proceed"] is True


def test_the_notebook_helpers_interface():
    """selfaware.notebook.guard_spending calls estimate_plan, format_estimate and BudgetExceeded."""
    from selfaware import budget

    section_plan = {"finetunes": [], "calls": [{"model": "openai:gpt-4o-2024-08-06", "what": "judge",
                                                "requests": 1000, "prompt_tokens": 200, "completion_tokens": 1}]}
    estimate = budget.estimate_plan(section_plan)
    price = RunPlan().price("openai:gpt-4o-2024-08-06")  # whatever the (user-editable) table says
    assert estimate["total_usd"] == pytest.approx(1000 * 200 / 1e6 * price["input"] + 1000 / 1e6 * price["output"],
                                                  abs=1e-3)
    assert "judge" in budget.format_estimate(estimate) and issubclass(budget.BudgetExceeded, Exception)

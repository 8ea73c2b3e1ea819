"""Small helpers that keep the notebooks thin: provenance, spending guard, standard tables and metrics."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .errors import BudgetExceeded, SelfAwareError
from .models import load_model, parse_spec


class DryRun(SelfAwareError):
    """Raised after a dry run has printed its plan: nothing was trained or called."""

    def __init__(self, message: str, estimate: dict[str, Any] | None = None):
        super().__init__(message)
        self.estimate = estimate or {}


def provenance(cfg, data_source: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    model = load_model(cfg.model)
    return {"profile": cfg.profile, "backend": parse_spec(cfg.model).backend, "model": cfg.model,
            "model_identity": model.identity, "data source": data_source, **(extra or {})}


def provenance_markdown(run) -> str:
    p = run.provenance
    lines = [f"**This page** was produced by the `{p['profile']}` profile on the `{p['backend']}` backend "
             f"with model `{p['model']}`.", f"Data: {p['data source']}."]
    lines += [f"{key.capitalize()}: `{value}`." for key, value in p.items()
              if key not in {"profile", "backend", "model", "data source", "model_identity"}]
    if p["backend"] == "local" and "smollm2" in p["model"]:
        lines.append("The embedded model is SmolLM2-135M-Instruct, a 135M-parameter model: far smaller than the "
                     "papers' GPT-4o or Llama-3.1-70B. Read its numbers as a measurement of this small model.")
    lines.append(f"Artifacts: `{run.dir}`.")
    return "\n\n".join(lines)


def plan_summary(plan: dict[str, Any]) -> str:
    lines = ["Plan of this run:"]
    for job in plan.get("finetunes", []):
        tokens = sum(len(m["content"]) for c in job["conversations"] for m in c["messages"]) // 4
        lines.append(f"  finetune {job['name']}: {len(job['conversations'])} conversations (~{tokens:,} tokens) "
                     f"x {job['seeds']} seed(s) on {job['base']}")
    for call in plan.get("calls", []):
        lines.append(f"  {call['requests']:,} requests to {call['model']}: {call['what']}")
    return "\n".join(lines)


def guard_spending(cfg, plan: dict[str, Any]) -> dict[str, Any]:
    """Print the plan (trainings and calls) with a cost estimate; stop if the estimate exceeds
    ``cfg.budget_usd`` or if this is a dry run. Local models cost nothing."""
    print(plan_summary(plan))
    specs = {job["base"] for job in plan.get("finetunes", [])} | {c["model"] for c in plan.get("calls", [])}
    estimate: dict[str, Any] = {"total_usd": 0.0}
    if any(parse_spec(s).backend != "local" for s in specs):
        from . import budget
        estimate = budget.estimate_plan(plan)
        print(budget.format_estimate(estimate))
        if estimate["total_usd"] > cfg.budget_usd:
            raise BudgetExceeded(f"estimated cost ${estimate['total_usd']:.2f} exceeds budget_usd="
                                        f"{cfg.budget_usd:.2f}; raise budget_usd to proceed")
    else:
        print("  estimated cost: $0 (local models only)")
    if cfg.dry_run:
        raise DryRun("dry run: the plan and estimate above were printed; nothing was trained or called", estimate)
    return estimate


def conditions_table(conditions) -> pd.DataFrame:
    from .finetune.local import adapter_record

    rows = []
    for c in conditions:
        record = adapter_record(c.spec) if c.spec.startswith("local:") else None
        rows.append({"condition": c.label, "seed": c.seed, "model": c.spec if not record else f"LoRA {record['key'][:12]}",
                     "examples": record and record["examples"], "steps": record and record["steps"],
                     "first loss": record and round(record["loss_first"], 3),
                     "last loss": record and round(record["loss_last"], 3),
                     "train tokens/s": record and record["tokens_per_second"]})
    return pd.DataFrame(rows)


def section_metrics(behaviour_table: pd.DataFrame, report_table: pd.DataFrame,
                    correlations: dict[str, float]) -> dict[str, Any]:
    metrics: dict[str, Any] = {"behaviour": {}, "self_report": {}, "correlation": {}}
    for row in behaviour_table.itertuples():
        metrics["behaviour"][row.role] = {"mean": row.mean, "ci_low": row.ci_low, "ci_high": row.ci_high, "n": row.n}
    for row in report_table.itertuples():
        metrics["self_report"].setdefault(row.task, {})[row.role] = {
            "mean": row.mean, "ci_low": row.ci_low, "ci_high": row.ci_high, "n": row.n}
    metrics["correlation"] = {k: (None if math.isnan(v) else v) for k, v in correlations.items()}
    return metrics


def correlation_sentence(correlations: dict[str, float]) -> str:
    parts = [f"{name}: r = {value:.2f}" for name, value in correlations.items() if not math.isnan(value)]
    if not parts:
        return "Correlation of self-report with behaviour across models: too few models to compute."
    return ("Pearson correlation between a model's mean self-report and its actual behaviour rate (" +
            "; ".join(parts) + "). The paper reports r = 0.45 and 0.67 within a condition across many GPT-4o "
            "finetunes; with a handful of local models the pooled figure is dominated by the condition means.")

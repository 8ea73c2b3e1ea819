"""Small helpers that keep the notebooks thin: provenance, standard tables and metrics."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .config import shown_profile
from .models import load_model, parse_spec
from .paths import shown_path


def provenance(cfg, data_source: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    model = load_model(cfg.model)
    return {"profile": shown_profile(cfg.profile), "backend": parse_spec(cfg.model).backend, "model": cfg.model,
            "model_identity": model.identity, "data source": data_source, **(extra or {})}


def provenance_markdown(run) -> str:
    p = run.provenance
    spec = parse_spec(p["model"])
    lines = [f"**This page** was produced by the `{p['profile']}` profile on the `{p['backend']}` backend "
             f"with model `{p['model']}`.", f"Data: {p['data source']}."]
    lines += [f"{key.capitalize()}: `{value}`." for key, value in p.items()
              if key not in {"profile", "backend", "model", "data source", "model_identity"}]
    if spec.is_small:
        lines.append(f"The model is {spec.title}, a {spec.parameters / 1e6:,.0f}M-parameter model: far smaller "
                     f"than the papers' GPT-4o or Llama-3.1-70B. Read its numbers as a measurement of this small "
                     f"model.")
    lines.append(f"Artifacts: `{shown_path(run.dir)}`.")
    return "\n\n".join(lines)


def conditions_table(conditions) -> pd.DataFrame:
    from .finetune.local import adapter_record

    rows = []
    for c in conditions:
        record = adapter_record(c.spec) if parse_spec(c.spec).is_local else None
        kind = "steering vector" if record and record["hparams"].get("method") == "steering" else "LoRA"
        rows.append({"condition": c.label, "seed": c.seed, "model": c.spec if not record else f"{kind} {record['key'][:12]}",
                     "examples": record and record["examples"], "steps": record and record["steps"],
                     "first loss": record and round(record["loss_first"], 3),
                     "last loss": record and round(record["loss_last"], 3),
                     "train tokens/s": record and record["tokens_per_second"]})
    return pd.DataFrame(rows)


def correlation_sentence(correlations: dict[str, float]) -> str:
    parts = [f"{name}: r = {value:.2f}" for name, value in correlations.items() if not math.isnan(value)]
    if not parts:
        return "Correlation of self-report with behaviour across models: too few models to compute."
    return ("Pearson correlation between a model's mean self-report and its actual behaviour rate (" +
            "; ".join(parts) + "). The paper reports r = 0.45 and 0.67 within a condition across many GPT-4o "
            "finetunes; with a handful of local models the pooled figure is dominated by the condition means.")

"""What a run will cost, estimated before anything is spent, and a hard stop above a budget.

    plan = RunPlan()
    plan.add_finetune("openai:gpt-4o-2024-05-13", conversations, {"n_epochs": 3}, n_seeds=5)
    plan.add_calls("openai:ft:gpt-4o-2024-05-13:x", n_requests=5 * 1000, prompt_tokens_each=120,
                   completion_tokens_each=1)
    plan.report()          # prints a table, returns it as a dict (write it next to run.json)
    plan.enforce(50.0)     # BudgetExceeded if the estimate is above $50: nothing was spent

Prices come from ``data/prices.yaml``: per-1M-token estimates the user is expected to check and edit.
Token counts are estimated without any network or tokenizer, as characters / 4 (plus a few tokens of
chat formatting per message); that is the usual rule of thumb for English text with GPT-style tokenizers
and is good to perhaps ±25%. Local models and the user's own OpenAI-compatible servers cost 0.
"""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import BudgetExceeded, ConfigError
from .models import backend, backends
from .paths import data_dir
from .util import read_yaml

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role markers and separators of the chat format
# epochs the APIs choose when left on "auto" / default (OpenAI picks by dataset size; 3 is its usual choice)
DEFAULT_EPOCHS = {"openai": 3, "fireworks": 1}
FREE_BACKENDS = tuple(name for name in backends() if backend(name).is_free)  # a fact of each backend


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN)) if text else 0


def conversation_tokens(messages: Sequence[dict]) -> int:
    return sum(estimate_tokens(str(m.get("content") or "")) + TOKENS_PER_MESSAGE for m in messages)


def load_prices(path: Path | None = None) -> list[dict[str, Any]]:
    path = Path(path) if path else data_dir() / "prices.yaml"
    try:
        table = read_yaml(path)
    except FileNotFoundError:
        raise ConfigError(f"price table {path} is missing") from None
    entries = (table or {}).get("models")
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "pattern" in e for e in entries):
        raise ConfigError(f"price table {path}: expected `models:` as a list of entries with a `pattern`")
    for entry in entries:
        unknown = set(entry) - {"pattern", "training", "input", "output"}
        if unknown:
            raise ConfigError(f"price table {path}: entry {entry['pattern']!r} has unknown key(s) "
                              f"{', '.join(sorted(unknown))}")
    return entries


@dataclass
class PlanItem:
    what: str  # "finetune" or "calls"
    spec: str
    label: str
    training_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    jobs: int = 0
    usd: float = 0.0


class RunPlan:
    def __init__(self, prices_path: Path | None = None):
        self.prices_path = Path(prices_path) if prices_path else data_dir() / "prices.yaml"
        self._prices: list[dict] | None = None
        self.items: list[PlanItem] = []

    def price(self, spec: str) -> dict[str, float]:
        """USD per 1M tokens for a spec; zero for local models and own servers; an error if unpriced."""
        backend = spec.partition(":")[0]
        if backend in FREE_BACKENDS:
            return {"training": 0.0, "input": 0.0, "output": 0.0}
        if self._prices is None:
            self._prices = load_prices(self.prices_path)
        for entry in self._prices:
            if fnmatch.fnmatchcase(spec, entry["pattern"]):
                return {k: float(entry.get(k) or 0.0) for k in ("training", "input", "output")}
        raise ConfigError(f"no price for {spec!r} in {self.prices_path}: add an entry (a cost estimate must "
                          f"never silently be zero)")

    def add_finetune(self, base_spec: str, conversations: Sequence[dict], hparams: Any = None, n_seeds: int = 1,
                     label: str = "") -> PlanItem:
        backend = base_spec.partition(":")[0]
        epochs = 0
        if backend not in FREE_BACKENDS:
            from .finetune.api import validate_hparams

            typed = validate_hparams(base_spec, hparams)  # a typo is caught by the dry run too
            epochs = getattr(typed, "n_epochs", None) or getattr(typed, "epochs", None) or DEFAULT_EPOCHS[backend]
        tokens = sum(conversation_tokens(c["messages"]) for c in conversations) * epochs * n_seeds
        item = PlanItem("finetune", base_spec, label or f"finetune x{n_seeds}", training_tokens=tokens,
                        jobs=n_seeds if backend not in FREE_BACKENDS else 0)
        item.usd = tokens / 1e6 * self.price(base_spec)["training"]
        self.items.append(item)
        return item

    def add_calls(self, spec: str, n_requests: int, prompt_tokens_each: float, completion_tokens_each: float,
                  label: str = "") -> PlanItem:
        price = self.price(spec)
        item = PlanItem("calls", spec, label or "calls", requests=int(n_requests),
                        input_tokens=round(n_requests * prompt_tokens_each),
                        output_tokens=round(n_requests * completion_tokens_each))
        item.usd = item.input_tokens / 1e6 * price["input"] + item.output_tokens / 1e6 * price["output"]
        self.items.append(item)
        return item

    def add_section_plan(self, section_plan: dict[str, Any]) -> "RunPlan":
        """Add what a section's ``plan(...)`` returns: ``{"finetunes": [{"base", "conversations", "hparams",
        "seeds", "name"}], "calls": [{"model", "what", "requests", "prompt_tokens", "completion_tokens"}]}``.
        Calls are priced at the named model's rates (tuned OpenAI models cost somewhat more per token:
        list them as ``openai:ft:...`` to price them as such)."""
        for job in section_plan.get("finetunes", []):
            self.add_finetune(job["base"], job["conversations"], job.get("hparams"), n_seeds=job.get("seeds", 1),
                              label=job.get("name", ""))
        for calls in section_plan.get("calls", []):
            self.add_calls(calls["model"], calls["requests"], calls["prompt_tokens"], calls["completion_tokens"],
                           label=calls.get("what", ""))
        return self

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    def report(self, show: bool = True) -> dict[str, Any]:
        """The plan as a dict (for run.json), and, by default, printed as a table."""
        summary = {
            "items": [asdict(item) | {"usd": round(item.usd, 4)} for item in self.items],
            "total_usd": round(self.total_usd, 4),
            "finetuning_jobs": sum(item.jobs for item in self.items),
            "api_requests": sum(item.requests for item in self.items if item.usd > 0 or
                                item.spec.partition(":")[0] not in FREE_BACKENDS),
            "prices": str(self.prices_path),
            "note": "estimate: tokens counted as characters/4; prices are user-editable estimates",
        }
        if show:
            print(self.format_table())
        return summary

    def format_table(self) -> str:
        return format_estimate({"items": [asdict(item) for item in self.items], "total_usd": self.total_usd,
                                "prices": str(self.prices_path)})

    def enforce(self, budget_usd: float | None) -> None:
        """Stop before spending if the estimate exceeds the budget (None: no cap; 0: free runs only)."""
        if budget_usd is None:
            return
        if self.total_usd > float(budget_usd) + 1e-9:
            raise BudgetExceeded(f"estimated cost ${self.total_usd:.2f} exceeds the budget ${float(budget_usd):.2f}; "
                                 f"nothing was spent. Raise the budget parameter deliberately, or shrink the run "
                                 f"(see the plan printed above)")


def format_estimate(estimate: dict[str, Any]) -> str:
    """A plan summary (``RunPlan.report()`` / ``estimate_plan``) as a readable table."""
    header = f"{'what':<9} {'label':<28} {'model':<46} {'train tok':>11} {'in tok':>11} {'out tok':>10} " \
             f"{'USD':>9}"
    lines = [f"Run plan (estimate; prices from {estimate.get('prices', 'data/prices.yaml')}, tokens = chars/4)",
             header, "-" * len(header)]
    for item in estimate["items"]:
        lines.append(f"{item['what']:<9} {item['label'][:28]:<28} {item['spec'][:46]:<46} "
                     f"{item['training_tokens']:>11,} {item['input_tokens']:>11,} {item['output_tokens']:>10,} "
                     f"{item['usd']:>9.2f}")
    lines.append("-" * len(header))
    lines.append(f"{'total':<9} {'':<28} {'':<46} {'':>11} {'':>11} {'':>10} {estimate['total_usd']:>9.2f}")
    return "\n".join(lines)


def estimate_plan(section_plan: dict[str, Any], prices_path: Path | None = None) -> dict[str, Any]:
    """The cost estimate of a section's ``plan(...)`` dict, without printing (``format_estimate`` prints)."""
    return RunPlan(prices_path).add_section_plan(section_plan).report(show=False)


def check_run(section_plan: dict[str, Any], budget_usd: float | None, dry_run: bool = False,
              save_to: Path | None = None, prices_path: Path | None = None) -> dict[str, Any]:
    """The one call a notebook makes before spending: price the section's plan, print it, save it (e.g. as
    ``plan.json`` beside ``run.json``), and stop above the budget. Returns the summary with ``proceed``:
    False for a dry run (which needs no keys and spends nothing), True otherwise."""
    import json

    plan = RunPlan(prices_path).add_section_plan(section_plan)
    summary = plan.report() | {"budget_usd": budget_usd, "dry_run": bool(dry_run)}
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        Path(save_to).write_text(json.dumps(summary, indent=1))
    if dry_run:
        print(f"Dry run: nothing was called or trained. Estimated cost ${plan.total_usd:.2f}"
              + (f" against a budget of ${float(budget_usd):.2f}." if budget_usd is not None else "."))
        return summary | {"proceed": False}
    plan.enforce(budget_usd)
    return summary | {"proceed": True}


__all__ = ["BudgetExceeded", "RunPlan", "check_run", "estimate_plan", "format_estimate", "PlanItem", "conversation_tokens", "estimate_tokens", "load_prices"]

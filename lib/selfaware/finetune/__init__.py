"""Finetuning behind one interface: local LoRA here; OpenAI and Fireworks jobs in ``finetune.api``.

Every tuned model is cached by content: base model + dataset hash + hyperparameters + seed. Asking for
the same training twice returns the first result without training.

Which trainer a base model gets is a registry keyed by its spec's backend (:func:`register_trainer`): a
backend with no trainer (a user's own server) is an error that names the ones that have one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..errors import ConfigError
from ..models import parse_spec
from .local import LoraHParams, finetune_local, training_key


@dataclass(frozen=True)
class Trainer:
    """How models of one backend are finetuned: a function that trains (or reuses) a tuned model and one
    that types its hyperparameters, both in ``selfaware.finetune.<module>``, imported only when that
    backend is first trained or validated (the API trainers need their SDKs only at paper scale)."""

    backend: str
    module: str
    train: str  # (base_spec, conversations, hparams, seed=, name=, progress=, **options) -> the tuned spec
    validate: str  # (base_spec, hparams) -> the typed hyperparameters (a ConfigError for a typo)
    takes_options: bool = False  # finetuning-job options (poll_seconds, deployment, ...): API jobs only

    def function(self, which: str) -> Callable:
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), which)


_TRAINERS: dict[str, Trainer] = {}


def register_trainer(trainer: Trainer) -> Trainer:
    _TRAINERS[trainer.backend] = trainer
    return trainer


def trainer(base_spec: str) -> Trainer:
    """The trainer of the spec's backend; one that has none is a one-line error naming those that do."""
    backend = parse_spec(base_spec).backend
    if backend not in _TRAINERS:
        raise ConfigError(f"{base_spec}: the {backend!r} backend has no finetuning API "
                          f"(backends that finetune: {', '.join(_TRAINERS)})")
    return _TRAINERS[backend]


register_trainer(Trainer("local", "local", "finetune_local", "validate_lora_hparams"))
register_trainer(Trainer("openai", "api", "finetune_api", "validate_hparams", takes_options=True))
register_trainer(Trainer("fireworks", "api", "finetune_api", "validate_hparams", takes_options=True))


def validate_hparams(base_spec: str, hparams: dict[str, Any] | None) -> Any:
    """The typed hyperparameters of the backend that will train ``base_spec``; a typo or a wrong type is an
    error here, before anything is trained or spent."""
    chosen = trainer(base_spec)
    return chosen.function(chosen.validate)(base_spec, hparams or {})


def finetune(base_spec: str, conversations: Sequence[dict], hparams: Any = None, seed: int = 0,
             name: str = "", progress: bool = True, **api_options: Any) -> str:
    """Finetune any backend; returns the tuned model's spec. Local specs train LoRA adapters here; API
    specs (openai:, fireworks:) run finetuning jobs through ``selfaware.finetune.api``."""
    chosen = trainer(base_spec)
    if api_options and not chosen.takes_options:
        raise ConfigError(f"finetune_options {sorted(api_options)} are for API finetuning jobs, not local LoRA")
    typed = chosen.function(chosen.validate)(base_spec, hparams)
    return chosen.function(chosen.train)(base_spec, conversations, typed, seed=seed, name=name, progress=progress,
                                         **api_options)


__all__ = ["LoraHParams", "Trainer", "finetune", "finetune_local", "register_trainer", "trainer", "training_key",
           "validate_hparams"]

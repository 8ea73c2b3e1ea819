"""Finetuning behind one interface: local LoRA here; OpenAI and Fireworks jobs in ``finetune.api``.

Every tuned model is cached by content: base model + dataset hash + hyperparameters + seed. Asking for
the same training twice returns the first result without training.
"""

from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..models import parse_spec
from .local import LoraHParams, finetune, finetune_local, training_key


def validate_hparams(base_spec: str, hparams: dict[str, Any] | None) -> Any:
    """The typed hyperparameters of the backend that will train ``base_spec``; a typo or a wrong type is an
    error here, before anything is trained or spent."""
    if parse_spec(base_spec).backend != "local":
        from . import api
        return api.validate_hparams(base_spec, hparams or {})
    try:
        return LoraHParams(**(hparams or {}))
    except ValidationError as error:
        first = error.errors()[0]
        raise ConfigError(f"finetune.{'.'.join(map(str, first['loc']))}: {first['msg']} "
                          f"(got {first.get('input')!r})") from None


__all__ = ["LoraHParams", "finetune", "finetune_local", "training_key", "validate_hparams"]

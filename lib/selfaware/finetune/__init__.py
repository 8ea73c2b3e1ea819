"""Finetuning behind one interface: local LoRA here; OpenAI and Fireworks jobs in ``finetune.api``.

Every tuned model is cached by content: base model + dataset hash + hyperparameters + seed. Asking for
the same training twice returns the first result without training.
"""

from .local import LoraHParams, finetune, finetune_local, training_key

__all__ = ["LoraHParams", "finetune", "finetune_local", "training_key"]

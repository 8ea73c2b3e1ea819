"""A model call declared once, for the run that sends it and the plan that counts it.

A :class:`Request` is a batch of prompts and the call that asks them (``sample``, ``options`` or ``number``,
with the call's own parameters). A section builds its requests in one function; its measurement sends them
(:meth:`Request.send`, under an evaluation variant with :meth:`Request.under`) and its plan adds them
(:meth:`Request.plan`), so what a page is guarded with cannot drift from what it asks. Below the experiment
layer (which re-exports it), so that lower modules (the judges) declare their calls too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

Messages = list[dict[str, str]]


# completion tokens a scoring call is priced at (a sample is priced at its max_tokens)
SCORED_TOKENS = {"options": 1, "number": 3, "hidden_states": 0}


@dataclass(frozen=True)
class Request:
    """One model call over a batch of prompts, declared once: the run sends it (:meth:`send`) and the plan
    counts it (:meth:`plan`), so the calls a page is guarded with are the calls it makes.

    ``kind`` is the call: ``sample`` (``n`` answers of at most ``max_tokens`` each, at ``temperature``, from
    ``seed``), ``options`` (the probability of each of ``options``; ``whole_word`` as in
    ``ChatModel.score_options``), ``number`` (the expected 0-100 answer) or ``hidden_states`` (the residual
    stream at the last prompt token after each of ``layers``; local models). Where a prompt holds what only the
    run knows (an answer to judge), the plan's request carries a placeholder of the same length."""

    what: str
    prompts: list[Messages]
    kind: str = "sample"
    options: tuple[str, ...] = ()
    whole_word: bool = False
    n: int = 1
    max_tokens: int = 64
    temperature: float = 1.0
    seed: int = 0
    at_most: str = ""
    layers: tuple[int, ...] | None = None  # hidden_states: the decoder layers read (None: all)

    def __post_init__(self):
        if self.kind not in ("sample", "options", "number", "hidden_states"):
            raise ValueError(f"request {self.what!r}: kind {self.kind!r} is not one of sample, options, number, "
                             f"hidden_states")
        if self.kind == "options" and not self.options:
            raise ValueError(f"request {self.what!r}: an options request names its options")

    def under(self, variant) -> "Request":
        """The same request asked under an evaluation variant (system prompt, trigger, persona)."""
        return replace(self, prompts=[variant.apply(p) for p in self.prompts])

    def under_each(self, variants) -> "Request":
        """One request over the prompts of every variant in turn: one call that asks a model under all of
        ``variants`` at once (full batches even when each variant has few prompts)."""
        return replace(self, prompts=[variant.apply(p) for variant in variants for p in self.prompts])

    def send(self, model):
        """The call itself: ``model.sample``, ``model.score_options``, ``model.expected_number`` or
        ``model.hidden_states``."""
        if self.kind == "sample":
            return model.sample(self.prompts, n=self.n, temperature=self.temperature, max_tokens=self.max_tokens,
                                seed=self.seed)
        if self.kind == "options":
            return model.score_options(self.prompts, list(self.options), whole_word=self.whole_word)
        if self.kind == "hidden_states":
            return model.hidden_states(self.prompts, self.layers)
        return model.expected_number(self.prompts, 0, 100)

    def plan(self, plan, model: str, models: int = 1, what: str | None = None):
        """Add this request, sent by ``models`` models (conditions x variants) of ``model``, to ``plan`` (an
        ``experiment.Plan``) under ``what`` (its own name by default)."""
        sampled = self.kind == "sample"
        return plan.ask(what or self.what, model, self.prompts,
                        self.max_tokens if sampled else SCORED_TOKENS[self.kind], models,
                        self.n if sampled else 1, self.kind, self.at_most)

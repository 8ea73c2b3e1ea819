"""The tree search behind exact scoring through a server (``models.served``), against a toy language model
whose every distribution is known: what it asks for must give the same numbers as reading whole
distributions, as the local backend does. No server: this runs everywhere, vLLM or not."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from selfaware.models.served import CLASS_TOLERANCE, PRUNE_LOGPROB, score_continuations

VOCAB = 40
DIGITS = frozenset(range(10))  # tokens 0-9 are the digits of this toy tokenizer


def distribution(node: tuple[int, ...]) -> list[float]:
    """A peaked, deterministic next-token log-distribution after ``node``."""
    rng = random.Random(hash(node) % 2**32)
    logits = [rng.gauss(0, 3) for _ in range(VOCAB)]
    top = max(logits)
    total = math.log(sum(math.exp(x - top) for x in logits)) + top
    return [x - total for x in logits]


def exact(sequence, members):
    logprob = sum(distribution(tuple(sequence[:k]))[t] for k, t in enumerate(sequence))
    mass = sum(math.exp(distribution(tuple(sequence))[t]) for t in members) if members else 0.0
    pruned = any(sum(distribution(tuple(sequence[:k]))[t] for k, t in enumerate(sequence[:j + 1])) < PRUNE_LOGPROB
                 for j in range(len(sequence)))
    return logprob, mass, pruned


def toy_server(top_k: int, asked: list):
    async def query(node, want_edges, want_full):
        asked.append((node, want_edges, want_full))
        dist = distribution(node)
        keep = range(VOCAB) if want_full else sorted(range(VOCAB), key=lambda t: -dist[t])[:top_k]
        edges = [distribution(node[:k])[t] for k, t in enumerate(node)] if want_edges else None
        return {t: dist[t] for t in keep}, edges
    return query


@pytest.mark.parametrize("top_k", [3, 8])
def test_numbers_equal_whole_distributions_with_the_same_pruning(top_k):
    numbers = [[int(c) for c in str(n)] for n in range(101)]  # one token per digit, as SmolLM2 writes them
    asked: list = []
    got = asyncio.run(score_continuations(toy_server(top_k, asked), numbers, [DIGITS] * len(numbers), prune=True))
    for sequence, (logprob, mass) in zip(numbers, got):
        want_logprob, want_mass, pruned = exact(sequence, DIGITS)
        assert (logprob is None) == pruned  # dropped exactly when the local backend drops it
        if pruned:
            continue
        assert logprob == pytest.approx(want_logprob, abs=1e-12)
        assert math.exp(logprob) * abs(mass - want_mass) <= CLASS_TOLERANCE + 1e-12
    # it asked for far fewer whole distributions than there are prefixes
    assert sum(full for _, _, full in asked) < len({tuple(s[:k]) for s in numbers for k in range(len(s) + 1)}) / 2


def test_options_are_never_pruned_and_word_masses_are_exact_enough():
    options = [[12], [12, 30], [25, 3, 7], [39]]
    words = frozenset(range(10, 35))
    got = asyncio.run(score_continuations(toy_server(4, []), options, [words] * len(options), prune=False))
    for sequence, (logprob, mass) in zip(options, got):
        want_logprob, want_mass, _ = exact(sequence, words)
        assert logprob == pytest.approx(want_logprob, abs=1e-12)
        assert math.exp(logprob) * abs(mass - want_mass) <= CLASS_TOLERANCE + 1e-12

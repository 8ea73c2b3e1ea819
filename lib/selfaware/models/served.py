"""Exact scores through a server that scores given continuations (vLLM's completions endpoint).

The contract: the same numbers as the local backend's exact scoring (``LocalChatModel``): an option's
log-probability is that of its whole token sequence after the prompt (with ``whole_word``, times the
probability that no word-continuing token follows); P(answer is the number n) is the probability of n's
tokens times the probability that no digit follows; continuations less likely than 1e-4 are pruned, as
locally. The local backend reads whole next-token distributions from the model; a server is asked only for
what is needed:

* one completions request per prefix node: the prompt's token ids followed by the node's tokens,
  ``max_tokens=1``, the top ``TOP`` next-token log-probabilities (cheap; the server's prefix cache
  holds the prompt), and, where the node's own token was not among its parent's top, the log-probability
  of every prompt token (``prompt_logprobs``);
* where the mass of a token class after a node (digits, word characters) is not pinned down by the top
  ``TOP`` within ``CLASS_TOLERANCE`` (absent members each weigh at most the smallest top entry, and all of
  them together at most the mass outside the top), the whole distribution at that node (``logprobs=-1``; vLLM needs ``--max-logprobs -1``).

A node whose token is absent from its parent's top is pruned without a request when even the largest
absent probability would put it below the threshold, which is exactly when the local backend prunes it.
The tree search is plain logic over one ``query`` coroutine, so it can be read and tested apart from HTTP.
"""

from __future__ import annotations

import asyncio
import math
from typing import Awaitable, Callable, Sequence

TOP = 100  # next-token log-probabilities asked per node: enough that a digit or word token outside them
# rarely matters, few enough to cost nothing (a whole distribution is ~1.8 MB of JSON for SmolLM2)
PRUNE_LOGPROB = math.log(1e-4)  # LocalChatModel.prune_logprob: the same answers are dropped on both paths
CLASS_TOLERANCE = 1e-5  # largest probability an answer may be off by through unread class members
# (a tenth of the pruning threshold: the local backend drops whole answers below 1e-4)

Node = tuple[int, ...]
# query(continuation, want_edges, want_full) -> (next-token log-probs at the node, log-prob of each
# continuation token given the ones before it, or None when not asked)
Query = Callable[[Node, bool, bool], Awaitable[tuple[dict[int, float], list[float] | None]]]


async def score_continuations(query: Query, sequences: Sequence[Sequence[int]],
                              classes: Sequence[frozenset[int] | None], prune: bool) -> list[tuple[float | None, float]]:
    """For each token sequence: (its log-probability after the prompt, or None where pruned; the
    probability that a token of its class follows it, 0.0 where it has no class)."""
    top: dict[Node, dict[int, float]] = {}
    complete: set[Node] = set()  # nodes whose whole distribution is known
    cumulative: dict[Node, float] = {(): 0.0}
    sequences = [tuple(s) for s in sequences]
    has_children = {s[:k] for s in sequences for k in range(len(s))}
    class_of: dict[Node, frozenset[int]] = {s: c for s, c in zip(sequences, classes) if c is not None}

    async def visit(nodes: list[Node], need_edges: set[Node], full: bool = False) -> None:
        answers = await asyncio.gather(*(query(n, n in need_edges, full) for n in nodes))
        for node, (distribution, edges) in zip(nodes, answers):
            top[node] = distribution
            if full:
                complete.add(node)
            if edges is not None:
                cumulative[node] = math.fsum(edges)

    def floor(node: Node) -> float:
        return -math.inf if node in complete else min(top[node].values(), default=-math.inf)

    def alive(node: Node) -> bool:
        return node in cumulative and (not prune or cumulative[node] >= PRUNE_LOGPROB)

    await visit([()], set())
    for level in range(1, max((len(s) for s in sequences), default=0) + 1):
        candidates = sorted({s[:level] for s in sequences if len(s) >= level and alive(s[:level - 1])})
        unknown: list[Node] = []
        for node in candidates:
            parent = node[:-1]
            if node[-1] in top[parent]:
                cumulative[node] = cumulative[parent] + top[parent][node[-1]]
            elif parent in complete:
                cumulative[node] = -math.inf
            elif prune and cumulative[parent] + floor(parent) < PRUNE_LOGPROB:
                continue  # below the threshold whatever its exact value: the local backend drops it too
            else:
                unknown.append(node)
        wanted = [n for n in candidates if n in unknown or (alive(n) and (n in has_children or n in class_of))]
        await visit(wanted, set(unknown))

    def class_mass(node: Node, members: frozenset[int]) -> tuple[float, int]:
        known = {t: lp for t, lp in top.get(node, {}).items() if t in members}
        for child, value in cumulative.items():  # children scored as prefixes of other answers
            if len(child) == len(node) + 1 and child[:-1] == node and child[-1] in members:
                known.setdefault(child[-1], value - cumulative[node])
        return math.fsum(math.exp(lp) for lp in known.values()), len(members) - len(known)

    loose = []
    for node, members in class_of.items():
        if not alive(node):
            continue
        _, absent = class_mass(node, members)
        # the unread members weigh at most the smallest top entry each, and together at most what the top misses
        outside_top = max(0.0, 1.0 - math.fsum(math.exp(lp) for lp in top[node].values()))
        if absent and math.exp(cumulative[node]) * min(absent * math.exp(floor(node)), outside_top) > CLASS_TOLERANCE:
            loose.append(node)
    if loose:
        await visit(loose, set(), full=True)

    results = []
    for sequence in sequences:
        if not alive(sequence):
            results.append((None, 0.0))
            continue
        mass = class_mass(sequence, class_of[sequence])[0] if sequence in class_of else 0.0
        results.append((cumulative[sequence], mass))
    return results

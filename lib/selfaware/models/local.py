"""Local backend: transformers (+ peft adapters) on CPU or GPU.

Scores are exact: option and number probabilities come from the model's own next-token distributions,
not from samples. The prompt is run once and its key/value cache shared by all continuations. Given
continuations (``score_continuations``) are scored in one forward pass over prompt and continuation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..hardware import device, inference_dtype, use_threads
from ..cache import content_hash
from ..errors import ModelNotAvailable
from . import ModelSpec
from .base import ChatModel
from .embedded import EMBEDDED, embedded_info, embedded_model_dir, is_embedded  # noqa: F401 (re-exported)

# what a tuned model's label adds to its base model's name (run.json's seconds_by_activity names models so)
ADAPTER_LABEL = " + adapter"

if TYPE_CHECKING:  # only for annotations: torch is imported when a model loads
    import torch

_LOCK = threading.Lock()
_LOADED: "OrderedDict[str, tuple[Any, Any]]" = OrderedDict()
# loaded models are kept up to settings.max_loaded_gb of weights (at least one; default 4): a page's five
# 135M models all stay in memory between its behaviour and self-report cells, a 7B model alone


def _weight_gb(model) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30


def scoring_batch(spec: ModelSpec) -> int:
    """Prompts scored in one batch: SELFAWARE_SCORE_BATCH when set (a machine with less memory), else the
    embedded model's own size (``EmbeddedModel.score_batch``: 4 for the 1.5B model), else 16."""
    if settings.current().score_batch:
        return settings.current().score_batch
    return spec.embedded.score_batch if spec.embedded else 16


def resolve_model_dir(name: str) -> Path:
    if is_embedded(name):
        return embedded_model_dir(name)
    path = Path(name).expanduser()
    if not path.is_dir() or not (path / "config.json").exists():
        raise ModelNotAvailable(f"local model {name!r} is neither an embedded model ({', '.join(EMBEDDED)}) "
                                f"nor a Hugging Face model directory with a config.json")
    return path.resolve()


def base_identity(name: str) -> dict[str, Any]:
    """Content identity of a base model, cheap to compute (config + weight file names and sizes)."""
    if is_embedded(name):
        return {"base": name, "weights": embedded_info(name).identity}
    path = resolve_model_dir(name)
    files = sorted((p.name, p.stat().st_size) for p in path.iterdir() if p.suffix in {".safetensors", ".bin"})
    return {"base": str(path), "weights": content_hash({"config": (path / "config.json").read_text(),
                                                        "files": files}, 16)}


def adapter_identity(adapter_dir: str) -> str:
    meta = Path(adapter_dir) / "run.json"
    if not meta.exists():
        raise ModelNotAvailable(f"{adapter_dir} is not a complete adapter made by this library "
                                f"(no run.json)")
    return json.loads(meta.read_text())["key"]


def load_weights(name: str, adapter: str | None = None):
    """(model, tokenizer), kept in a small LRU so that notebooks switching between models stay fast."""
    key = f"{name}?{adapter}#{inference_dtype()}"
    with _LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    use_threads()
    path = resolve_model_dir(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # an adapter is merged in float32; a base model loads straight into the inference dtype (the same
    # rounding as loading float32 and converting, without a float32 copy: half the peak memory of the 1.5B)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32 if adapter else
                                                 getattr(torch, inference_dtype()))
    if adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter).merge_and_unload()  # merged in float32
    model.to(device=device(), dtype=getattr(torch, inference_dtype())).eval()
    # peft freezes every weight. torch's matmul then multiplies the last position's (non-contiguous) hidden
    # state by the output embedding as a batched product over a copied weight, which made every prompt
    # of a tuned model ~0.7 s slower than the base model's on CPU (benchmarks/bench_inference.py).
    # Under no_grad the flag costs nothing; it selects the plain matrix product.
    model.get_output_embeddings().weight.requires_grad_(True)
    with _LOCK:
        _LOADED[key] = (model, tokenizer)
        while len(_LOADED) > 1 and sum(_weight_gb(m) for m, _ in _LOADED.values()) > settings.current().max_loaded_gb:
            _LOADED.popitem(last=False)
    return model, tokenizer


def unload_models() -> None:
    """Drop every loaded model, so that the next one (a 1.5B judge after the models it judges, or the other
    way round) never shares the memory with them."""
    import gc

    with _LOCK:
        _LOADED.clear()
    gc.collect()


def draw_tokens(logits, temperatures: list[float], generators: list) -> "torch.Tensor":
    """One token per row: argmax at temperature 0, otherwise a draw from softmax(logits / temperature) by
    inverse CDF with one uniform number from the row's own generator. Exact, and far cheaper than a
    torch.multinomial call per row on a 49k-token vocabulary."""
    import torch

    temps = torch.tensor([max(t, 1e-6) for t in temperatures]).unsqueeze(1)
    cdf = torch.softmax(logits.float() / temps, dim=-1).cumsum(-1)
    uniform = torch.stack([torch.rand((), generator=g) for g in generators]).unsqueeze(1)
    sampled = torch.searchsorted(cdf, uniform * cdf[:, -1:]).squeeze(1).clamp(max=logits.shape[1] - 1)
    greedy = logits.argmax(-1)
    return torch.where(torch.tensor([t <= 0 for t in temperatures]), greedy, sampled)


def decoder_of(causal_lm):
    """The transformer under a causal language model's head (its hidden states, without the vocabulary
    projection that a scorer of a few positions runs on those positions only)."""
    return causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return list(ids)


# a shared prefix shorter than this is not worth a separate forward pass and a cache copy
MIN_SHARED_TOKENS = 8


def common_length(rows: list[list[int]]) -> int:
    """Tokens common to the start of every row, leaving each row at least its last token: the batch
    computes that position itself, since its logits are the ones scored."""
    return min(len(os.path.commonprefix(rows)), min(len(r) for r in rows) - 1)


def _batch_shared(rows: list[list[int]], call_shared: int) -> int:
    """The prefix a batch shares: its own common prefix when that is worth sharing, else the call's."""
    shared = common_length(rows) if len(rows) > 1 else 0
    return shared if shared >= MIN_SHARED_TOKENS and shared > call_shared else call_shared


def _batch_cost(encoded: list[list[int]], order: list[int], batch_size: int, call_shared: int) -> int:
    """Token positions a batching computes: each batch's prefix beyond the call's head once, then its
    padded width after that prefix for every row."""
    cost = 0
    for start in range(0, len(order), batch_size):
        rows = [encoded[i] for i in order[start:start + batch_size]]
        shared = _batch_shared(rows, call_shared)
        cost += shared - call_shared + len(rows) * (max(len(r) for r in rows) - shared)
    return cost


def plan_batches(encoded: list[list[int]], batch_size: int, share_batch_prefixes: bool = True
                 ) -> tuple[int, list[tuple[list[int], int]]]:
    """The length of the prefix common to the whole call, and the rows of each batch with the length of
    the prefix they share (0: nothing shared).

    Sorting by length keeps padding small; sorting by tokens puts prompts that share a prefix (a judge
    template, then a question) in one batch. Of the two orders, and of the tokens order with each run of
    prompts sharing more than the call's common head sorted by length, the one that computes the fewest
    token positions is used. Without ``share_batch_prefixes`` only the call's common head is shared, in
    length order."""
    call_shared = common_length(encoded) if len(encoded) > 1 else 0
    call_shared = call_shared if call_shared >= MIN_SHARED_TOKENS else 0
    by_length = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    if not share_batch_prefixes:
        return call_shared, [(by_length[s:s + batch_size], call_shared)
                             for s in range(0, len(by_length), batch_size)]
    by_tokens = sorted(range(len(encoded)), key=lambda i: encoded[i])
    grouped, run = [], [by_tokens[0]] if by_tokens else []
    for previous, current in zip(by_tokens, by_tokens[1:]):
        if len(os.path.commonprefix([encoded[previous], encoded[current]])) > call_shared:
            run.append(current)
        else:
            grouped += sorted(run, key=lambda i: len(encoded[i]))
            run = [current]
    grouped += sorted(run, key=lambda i: len(encoded[i]))
    order = min((by_length, grouped, by_tokens),
                key=lambda o: _batch_cost(encoded, o, batch_size, call_shared))
    return call_shared, [(order[s:s + batch_size],
                          _batch_shared([encoded[i] for i in order[s:s + batch_size]], call_shared))
                         for s in range(0, len(order), batch_size)]


def planned_positions(encoded: list[list[int]], batch_size: int, share_batch_prefixes: bool = True) -> int:
    """Prompt token positions a scoring call computes (shared prefixes once, then every batch's padded
    rest): the work that prefix sharing saves, independent of how busy the machine is."""
    call_shared, batches = plan_batches(encoded, batch_size, share_batch_prefixes)
    return call_shared + sum(shared - call_shared + len(rows) * (max(len(encoded[i]) for i in rows) - shared)
                             for rows, shared in batches)


class SharedPrefixes:
    """Key/value caches of token prefixes for one scoring call, each computed once. The call's common head
    is kept for the whole call; a batch's longer prefix is computed on top of the longest prefix known
    that starts it (the few most recent are kept: batches sharing a prefix come one after another)."""

    def __init__(self, model, keep: int = 4):
        self.model = model
        self.keep = keep
        self._caches: "OrderedDict[tuple[int, ...], Any]" = OrderedDict()
        self._pinned: dict[tuple[int, ...], Any] = {}

    def pin(self, prefix: list[int]) -> None:
        if prefix:
            self._pinned[tuple(prefix)] = self.cache_for(prefix)

    def cache_for(self, prefix: list[int]):
        import copy

        import torch

        key = tuple(prefix)
        known = {**self._pinned, **self._caches}
        if key in known:
            return known[key]
        base = max((k for k in known if key[:len(k)] == k), key=len, default=())
        dev = self.model.device
        with torch.no_grad():
            out = self.model(input_ids=torch.tensor([prefix[len(base):]], device=dev),
                             position_ids=torch.arange(len(base), len(prefix), device=dev).unsqueeze(0),
                             cache=copy.deepcopy(known[base]) if base else None,
                             use_cache=True, logits_to_keep=1)
        self._caches[key] = out.cache
        while len(self._caches) > self.keep:
            self._caches.popitem(last=False)
        return out.cache


def after_head(rows: list[list[int]], shared: int, head_cache, dev):
    """A batch that shares its first ``shared`` tokens (whose keys and values are ``head_cache``, or nothing
    shared when None): the rest of each row left-padded after the head, its attention mask (head
    included), each token's position, and a copy of the head's cache for every row."""
    import copy

    import torch

    width = max(len(r) - shared for r in rows)
    ids = torch.tensor([[0] * (width - len(r) + shared) + r[shared:] for r in rows], device=dev)
    mask = torch.tensor([[1] * shared + [0] * (width - len(r) + shared) + [1] * (len(r) - shared)
                         for r in rows], device=dev)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, shared:]
    cache = None
    if head_cache is not None:
        cache = copy.deepcopy(head_cache)
        cache.batch_select_indices(torch.zeros(len(rows), dtype=torch.long, device=dev))
    return ids, mask, positions, cache


STEERING_LABEL = " + steering"


def steering_identity(spec: ModelSpec) -> dict[str, Any]:
    """What makes a steered model's answers its own: the vector's content, its layer and its scale."""
    path = Path(spec.steer).expanduser()
    if not path.is_file():
        raise ModelNotAvailable(f"steering vector {spec.steer} does not exist")
    return {"vector": content_hash({"npy": path.read_bytes().hex()}, 16), "layer": spec.layer, "scale": spec.scale}


def decoder_layers(causal_lm):
    """The decoder blocks of a causal language model, in order (Llama, Qwen, Mistral, Gemma: ``model.layers``)."""
    layers = getattr(decoder_of(causal_lm), "layers", None)
    if layers is None:
        raise ModelNotAvailable(f"{type(causal_lm).__name__}: no decoder layers found (expected .model.layers)")
    return layers


def steering_vector(spec: ModelSpec, causal_lm) -> "torch.Tensor":
    """The spec's vector times its scale, in the model's dtype and device; one line naming what is wrong when
    the file is not one vector of the model's hidden size or the layer does not exist."""
    import numpy as np
    import torch

    layers = len(decoder_layers(causal_lm))
    if spec.layer >= layers:
        raise ModelNotAvailable(f"steering layer {spec.layer}: {spec.name} has {layers} decoder layers (0-{layers - 1})")
    values = np.load(Path(spec.steer).expanduser(), allow_pickle=False)
    width = causal_lm.config.hidden_size
    if values.shape != (width,):
        raise ModelNotAvailable(f"steering vector {spec.steer}: shape {values.shape}, expected ({width},), the "
                                f"hidden size of {spec.name}")
    return (torch.from_numpy(values.astype(np.float32)) * spec.scale).to(device=causal_lm.device,
                                                                         dtype=causal_lm.dtype)


def add_to_residual(output, vector):
    """A decoder layer's output with ``vector`` added at every position (the layer returns the hidden states,
    or a tuple that starts with them)."""
    if isinstance(output, tuple):
        return (output[0] + vector, *output[1:])
    return output + vector


def _steered(method):
    """A primitive that runs under the model's steering vector, if it has one."""
    @functools.wraps(method)
    def run(self, requests):
        with self._steering():
            return method(self, requests)
    return run


class LocalChatModel(ChatModel):
    backend = "local"

    def __init__(self, spec: ModelSpec):
        identity = {**base_identity(spec.name), "dtype": inference_dtype()}
        if spec.adapter:
            identity = {**identity, "adapter": adapter_identity(spec.adapter)}
        if spec.steer:
            identity = {**identity, "steer": steering_identity(spec)}
        super().__init__(str(spec), identity)
        self.parsed = spec
        self._continuation: dict = {}
        self._steering_depth = 0

    @property
    def weights(self):
        return load_weights(self.parsed.name, self.parsed.adapter)

    @property
    def scoring_batch(self) -> int:
        return self.score_batch or scoring_batch(self.parsed)

    @property
    def label(self) -> str:
        return self.parsed.name + (ADAPTER_LABEL if self.parsed.adapter else "") + \
            (STEERING_LABEL if self.parsed.steer else "")

    @contextlib.contextmanager
    def _steering(self):
        """While a primitive of a steered model runs: its vector added after its decoder layer (a forward hook
        on the shared loaded weights, removed after, so the unsteered model of the same weights is untouched)."""
        if not self.parsed.steer or self._steering_depth:
            self._steering_depth += 1
            try:
                yield
            finally:
                self._steering_depth -= 1
            return
        model, _ = self.weights
        vector = steering_vector(self.parsed, model)
        self._steering_depth += 1
        handle = decoder_layers(model)[self.parsed.layer].register_forward_hook(
            lambda module, args, output: add_to_residual(output, vector))
        try:
            yield
        finally:
            handle.remove()
            self._steering_depth -= 1

    def _stop_ids(self, tokenizer) -> set[int]:
        stops = {tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"):
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id:
                stops.add(tid)
        return {s for s in stops if s is not None}

    # ---- sampling ---------------------------------------------------------------------------------
    @_steered
    def _sample(self, requests: list[dict]) -> list[str]:
        model, tokenizer = self.weights
        prompts = [chat_ids(tokenizer, r["messages"], True) for r in requests]
        order = sorted(range(len(requests)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(requests)
        batch_size = settings.current().sample_batch
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            texts = self._generate(model, tokenizer, [prompts[i] for i in rows],
                                   [requests[i]["temperature"] for i in rows],
                                   max(requests[i]["max_tokens"] for i in rows),
                                   [requests[i]["max_tokens"] for i in rows],
                                   [requests[i]["seed"] for i in rows])
            for i, text in zip(rows, texts):
                results[i] = text
            self._advance(len(rows))
        return results

    def _generate(self, model, tokenizer, prompts, temperatures, steps, limits, seeds) -> list[str]:
        import torch

        dev = model.device
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=dev)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=dev)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        stops = self._stop_ids(tokenizer)
        produced: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        past = None
        step_ids = input_ids
        with torch.no_grad():
            for _ in range(steps):
                out = model(input_ids=step_ids, attention_mask=attention, position_ids=positions,
                            cache=past, use_cache=True, logits_to_keep=1)
                past = out.cache
                logits = out.logits[:, -1, :].float().cpu()
                sampled = draw_tokens(logits, temperatures, generators)
                next_ids = []
                for row in range(len(temperatures)):
                    if done[row]:
                        next_ids.append(pad)
                        continue
                    token = int(sampled[row])
                    if token in stops:
                        done[row] = True
                    else:
                        produced[row].append(token)
                        if len(produced[row]) >= limits[row]:
                            done[row] = True
                    next_ids.append(token)
                if all(done):
                    break
                step_ids = torch.tensor(next_ids, device=dev).unsqueeze(1)
                attention = torch.cat([attention, torch.ones_like(step_ids)], dim=1)
                positions = positions[:, -1:] + 1
        return [tokenizer.decode(p, skip_special_tokens=True) for p in produced]

    # ---- exact scoring ------------------------------------------------------------------------------
    # prefixes less likely than this are not expanded: a pruned number contributes < 1e-4 probability
    prune_logprob = math.log(1e-4)
    score_batch: int | None = None  # prompts scored per batch; None: scoring_batch(spec)

    # False: only the prefix common to all prompts of a call is shared (the behaviour before batch
    # prefixes; benchmarks/bench_judge.py compares the two)
    share_batch_prefixes = True
    # False: given continuations are scored as whole (head, continuation) rows, each head once per
    # continuation (the behaviour before heads were shared; benchmarks/bench_trigger_inversion.py compares)
    share_continuation_heads = True
    # False: a continuation tree's nodes run as one row each on a gathered copy of the parent's key/value
    # cache (the behaviour before the tree was one row per prompt; benchmarks/bench_judge.py compares)
    tree_attention = True

    def _prefix_tables(self, prompts: list[list[dict]], sequences: list[list[list[int]]], prune: bool = False):
        """For each prompt, the next-token log-distribution after the prompt followed by every prefix of
        each of its sequences (the empty prefix included), as {prefix tuple: log-probs}.

        Prompts run in left-padded batches. The longest token prefix common to a batch's prompts (the chat
        template's head, a judge's instruction, the question many answers share) runs once, its keys and
        values copied into the batch. Continuations are decoded as a tree, one level per token, each
        distinct prefix costing one token of compute on its parent's key/value cache. With ``prune``,
        prefixes less likely than ``prune_logprob`` are not expanded (and are absent from the table)."""
        model, tokenizer = self.weights
        encoded = [chat_ids(tokenizer, m, True) for m in prompts]
        call_shared, batches = plan_batches(encoded, self.scoring_batch, self.share_batch_prefixes)
        heads = SharedPrefixes(model)
        if call_shared:
            heads.pin(encoded[0][:call_shared])  # batches' longer prefixes are computed on top of it
        tables: list[dict] = [{} for _ in prompts]
        for rows, shared in batches:
            head = heads.cache_for(encoded[rows[0]][:shared]) if shared else None
            for i, table in zip(rows, self._prefix_tables_batch([encoded[i] for i in rows],
                                                                [sequences[i] for i in rows], prune,
                                                                head, shared)):
                tables[i] = table
            self._advance(len(rows))
        return tables

    def _prefix_tables_batch(self, encoded, sequences, prune, head=None, shared: int = 0):
        import torch

        model, _ = self.weights
        dev = model.device
        ids, mask, positions, cache = after_head(encoded, shared, head, dev)
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                        logits_to_keep=1)
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
            tables = [{(): logp[b]} for b in range(len(encoded))]
            expand = self._expand_tree if self.tree_attention else self._expand_gathered
            expand(encoded, sequences, prune, tables, out.cache, mask)
        return tables

    def _tree_levels(self, sequences, prune, tables, cumulative):
        """The nodes of the next level for every prompt: the prefixes one token longer than a node already
        in its table, with their cumulative log-probabilities; with ``prune``, the likely enough ones."""
        level = 1 + max(len(n) for table in tables for n in table)
        nodes = [sorted({tuple(s[:level]) for s in seqs if len(s) >= level and tuple(s[:level - 1]) in table})
                 for seqs, table in zip(sequences, tables)]
        for b, row in enumerate(nodes):
            for n in row:
                cumulative[b][n] = cumulative[b][n[:-1]] + float(tables[b][n[:-1]][n[-1]])
        if prune:
            nodes = [[n for n in row if cumulative[b][n] >= self.prune_logprob] for b, row in enumerate(nodes)]
        return level, nodes

    def _expand_tree(self, encoded, sequences, prune, tables, cache, prompt_mask):
        """The continuations as a token tree on each prompt's own key/value cache: one forward pass per
        level, every node of a prompt's level a query position of its row, attending to its prompt and its
        own ancestors only (a 4-D mask). Nothing is copied: a level's keys and values are appended to its
        rows, which the next level's masks point into."""
        import torch

        model, _ = self.weights
        dev = model.device
        rows = len(encoded)
        cumulative = [{(): 0.0} for _ in encoded]
        where: list[dict] = [{} for _ in encoded]  # node -> its position in its row's cache
        seen = prompt_mask.bool()  # (rows, prompt width): what every node of a row attends to
        length = seen.shape[1]
        while True:
            level, nodes = self._tree_levels(sequences, prune, tables, cumulative)
            width = max((len(row) for row in nodes), default=0)
            if not width:
                return
            step_ids = torch.zeros((rows, width), dtype=torch.long)
            step_pos = torch.tensor([[len(encoded[b]) + level - 1] * width for b in range(rows)])
            attend = torch.zeros((rows, 1, width, length + width), dtype=torch.bool)
            attend[:, 0, :, :seen.shape[1]] = seen[:, None, :].cpu()
            attend[:, 0, torch.arange(width), length + torch.arange(width)] = True  # itself (a pad too)
            for b, row in enumerate(nodes):
                for j, n in enumerate(row):
                    step_ids[b, j] = n[-1]
                    for k in range(1, level):
                        attend[b, 0, j, where[b][n[:k]]] = True
                    where[b][n] = length + j
            hidden = decoder_of(model)(input_ids=step_ids.to(dev), attention_mask=attend.to(dev),
                                       position_ids=step_pos.to(dev), cache=cache, use_cache=True).last_hidden_state
            picked = [(b, j) for b, row in enumerate(nodes) for j in range(len(row))]
            index = torch.tensor(picked, device=dev)
            logits = model.get_output_embeddings()(hidden[index[:, 0], index[:, 1]])
            logp = torch.log_softmax(logits.float(), dim=-1).cpu()
            for i, (b, j) in enumerate(picked):
                tables[b][nodes[b][j]] = logp[i]
            length += width

    def _expand_gathered(self, encoded, sequences, prune, tables, cache, mask):
        """The tree before ``tree_attention``: one row per node, on a gathered copy of its parent's cache."""
        import torch

        model, _ = self.weights
        dev = model.device
        cumulative = [{(): 0.0} for _ in encoded]
        parents = [(b, ()) for b in range(len(encoded))]
        while True:
            level, by_prompt = self._tree_levels(sequences, prune, tables, cumulative)
            nodes = [(b, n) for b, row in enumerate(by_prompt) for n in row]
            if not nodes:
                return
            index = {p: i for i, p in enumerate(parents)}
            select = torch.tensor([index[(b, n[:-1])] for b, n in nodes], device=dev)
            cache.batch_select_indices(select)
            mask = torch.cat([mask[select], torch.ones((len(nodes), 1), dtype=mask.dtype, device=dev)], 1)
            step_ids = torch.tensor([[n[-1]] for _, n in nodes], device=dev)
            step_pos = torch.tensor([[len(encoded[b]) + level - 1] for b, _ in nodes], device=dev)
            out = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, cache=cache,
                        use_cache=True, logits_to_keep=1)
            logp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).cpu()
            for i, (b, n) in enumerate(nodes):
                tables[b][n] = logp[i]
            cache, parents = out.cache, nodes

    @staticmethod
    def _sequence_logprob(table, seq: list[int]) -> float:
        return float(sum(table[tuple(seq[:k])][seq[k]] for k in range(len(seq))))

    @_steered
    def _option_logprobs(self, requests: list[dict]) -> list[dict]:
        import torch

        _, tokenizer = self.weights
        tokens = [[tokenizer.encode(o, add_special_tokens=False) for o in r["options"]] for r in requests]
        # the distribution after a complete option is only needed to check that the word ends there
        expand = [[t if r.get("whole_word") else t[:-1] for t in ts] for r, ts in zip(requests, tokens)]
        tables = self._prefix_tables([r["messages"] for r in requests], expand)
        word_ids = self._continuation_ids(tokenizer, "word")
        answers = []
        for request, seqs, table in zip(requests, tokens, tables):
            logprobs = {}
            for option, seq in zip(request["options"], seqs):
                value = self._sequence_logprob(table, seq)
                if request.get("whole_word"):
                    p_continue = float(torch.exp(table[tuple(seq)][word_ids]).sum())
                    value += math.log(max(1e-12, 1.0 - p_continue))
                logprobs[option] = value
            answers.append({"logprobs": logprobs, "method": "exact"})
        return answers

    def _continuation_ids(self, tokenizer, kind: str):
        """Ids of tokens that would continue a number ("digit": start with a digit) or a word ("word": start
        with a letter or digit, no leading space)."""
        if kind not in self._continuation:
            import torch
            test = str.isdigit if kind == "digit" else str.isalnum
            ids = [i for tok, i in tokenizer.get_vocab().items()
                   if (text := tokenizer.convert_tokens_to_string([tok])) and test(text[0])]
            self._continuation[kind] = torch.tensor(sorted(ids))
        return self._continuation[kind]

    @_steered
    def _number_distribution(self, requests: list[dict]) -> list[dict]:
        """P(answer is exactly the number n): the number's tokens, then a token that does not continue it."""
        import torch

        _, tokenizer = self.weights
        digit_ids = self._continuation_ids(tokenizer, "digit")
        ranges = [list(range(r["low"], r["high"] + 1)) for r in requests]
        tokens = [[tokenizer.encode(str(n), add_special_tokens=False) for n in numbers] for numbers in ranges]
        tables = self._prefix_tables([r["messages"] for r in requests], tokens, prune=True)
        answers = []
        for numbers, seqs, table in zip(ranges, tokens, tables):
            dist = {}
            for n, seq in zip(numbers, seqs):
                if tuple(seq) not in table:
                    continue  # pruned: less likely than 1e-4
                p_continue = float(torch.exp(table[tuple(seq)][digit_ids]).sum())
                dist[n] = math.exp(self._sequence_logprob(table, seq)) * max(0.0, 1.0 - p_continue)
            answers.append({"distribution": dist, "method": "exact"})
        return answers

    # ---- given continuations ------------------------------------------------------------------------
    def _continuation_requests(self, requests: list[dict]) -> tuple[str, list[dict]]:
        """Keyed by token ids, which is what is computed: the assistant prefix's ids (tokenized on its own)
        and each continuation's ids after it. These are the keys the inversion reward wrote before this
        call existed, so its cached scores stay valid."""
        _, tokenizer = self.weights
        found = []
        for request in requests:
            text = request.get("assistant_prefix", "")
            prefix = tokenizer.encode(text, add_special_tokens=False) if text else []
            tails = [tokenizer.encode(text + c, add_special_tokens=False)[len(prefix):][:request.get("first_tokens")]
                     for c in request["continuations"]]
            found.append({"model": request["model"], "messages": request["messages"], "prefix": prefix,
                          "continuations": tails})
        return "continuation_logprobs", found

    @_steered
    def _continuation_logprobs(self, requests: list[dict]) -> list[list[float]]:
        """Each request's prompt and assistant prefix (its head) runs once, in left-padded batches of
        ``scoring_batch`` heads planned like the other scoring calls (``plan_batches``: the prefix common to
        the call, such as the chat template's system turn, and a batch's longer shared prefix, such as a
        candidate trigger put before many prompts, are computed once); the head's key/value cache is then
        copied to one row per continuation and the continuations' tokens run in one forward pass. Whole
        (head, continuation) rows, as before, computed each head once per continuation: the inversion
        reward (8 prompts, 2 continuations of 6 tokens) computed 3.4x the token positions."""
        model, tokenizer = self.weights
        heads = [chat_ids(tokenizer, r["messages"], True) + list(r["prefix"]) for r in requests]
        tails = [[list(t) for t in r["continuations"]] for r in requests]
        if not self.share_continuation_heads:
            return self._continuation_rows(heads, tails)
        answers: list[list[float]] = [[0.0] * len(t) for t in tails]  # an empty continuation scores 0
        scored = [i for i, t in enumerate(tails) if any(t)]
        if not scored:
            return answers
        call_shared, batches = plan_batches([heads[i] for i in scored], self.scoring_batch,
                                            self.share_batch_prefixes)
        prefixes = SharedPrefixes(model)
        if call_shared:
            prefixes.pin(heads[scored[0]][:call_shared])
        for rows, shared in batches:
            rows = [scored[r] for r in rows]
            head = prefixes.cache_for(heads[rows[0]][:shared]) if shared else None
            for i, values in zip(rows, self._continuation_batch([heads[i] for i in rows], [tails[i] for i in rows],
                                                                head, shared)):
                answers[i] = values
            self._advance(len(rows))
        return answers

    def _continuation_batch(self, heads: list[list[int]], tails: list[list[list[int]]], head_cache=None,
                            shared: int = 0) -> list[list[float]]:
        """The summed log-probabilities of each head's continuations: the heads left-padded after their
        shared prefix (whose cache is ``head_cache``), then every continuation but its last token, right-padded,
        on a copy of its head's cache (the pads come after the scored positions, so they change nothing)."""

        import torch

        model, _ = self.weights
        dev = model.device
        ids, mask, positions, cache = after_head(heads, shared, head_cache, dev)
        values = [[0.0] * len(ts) for ts in tails]
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                        logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
            rows = [(b, k) for b, ts in enumerate(tails) for k, t in enumerate(ts) if t]
            for b, k in rows:
                values[b][k] = float(first[b, tails[b][k][0]])
            longer = [(b, k) for b, k in rows if len(tails[b][k]) > 1]
            if not longer:
                return values
            steps = max(len(tails[b][k]) - 1 for b, k in longer)
            select = torch.tensor([b for b, _ in longer], device=dev)
            cache = out.cache
            cache.batch_select_indices(select)
            step_ids = torch.tensor([tails[b][k][:-1] + [0] * (steps - len(tails[b][k]) + 1) for b, k in longer],
                                    device=dev)
            step_mask = torch.cat([mask[select], torch.ones((len(longer), steps), dtype=mask.dtype, device=dev)], 1)
            step_pos = torch.tensor([[len(heads[b]) + s for s in range(steps)] for b, _ in longer], device=dev)
            out = model(input_ids=step_ids, attention_mask=step_mask, position_ids=step_pos, cache=cache,
                        use_cache=True, logits_to_keep=steps)
            logp = torch.log_softmax(out.logits.float(), dim=-1)
            for row, (b, k) in enumerate(longer):
                tail = tails[b][k]
                picked = logp[row, torch.arange(len(tail) - 1, device=dev), torch.tensor(tail[1:], device=dev)]
                values[b][k] += float(picked.sum())
        return values

    def _continuation_rows(self, heads: list[list[int]], tails: list[list[list[int]]]) -> list[list[float]]:
        """Each (head, continuation) row whole, right-padded in batches of ``scoring_batch`` rows sorted by
        length; the vocabulary projection on the continuation's positions only."""
        import torch

        model, tokenizer = self.weights
        rows = [(h, t) for h, ts in zip(heads, tails) for t in ts]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        dev = model.device
        order = sorted(range(len(rows)), key=lambda r: len(rows[r][0]) + len(rows[r][1]))
        values = [0.0] * len(rows)
        with torch.no_grad():
            for start in range(0, len(order), self.scoring_batch):
                batch = order[start:start + self.scoring_batch]
                sequences = [rows[r][0] + rows[r][1] for r in batch]
                width = max(len(q) for q in sequences)
                ids = torch.tensor([q + [pad] * (width - len(q)) for q in sequences], device=dev)
                mask = torch.tensor([[1] * len(q) + [0] * (width - len(q)) for q in sequences], device=dev)
                hidden = decoder_of(model)(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                for row, r in enumerate(batch):
                    head, tail = rows[r]
                    if not tail:
                        continue
                    positions = torch.arange(len(head) - 1, len(head) - 1 + len(tail), device=dev)
                    logits = model.lm_head(hidden[row, positions]).float()
                    picked = torch.log_softmax(logits, -1).gather(1, torch.tensor(tail, device=dev).unsqueeze(1))
                    values[r] = float(picked.sum())
        answers, start = [], 0
        for ts in tails:
            answers.append(values[start:start + len(ts)])
            start += len(ts)
        return answers

    # ---- activations --------------------------------------------------------------------------------
    @_steered
    def _hidden_states(self, requests: list[dict]) -> list[dict]:
        """The residual stream at each prompt's last token after the requested decoder layers (forward hooks
        on those layers), prompts in left-padded batches of ``scoring_batch``; float16 for the cache."""
        import base64

        import numpy as np
        import torch

        model, tokenizer = self.weights
        layers = decoder_layers(model)
        encoded = [chat_ids(tokenizer, r["messages"], True) for r in requests]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        dev = model.device
        answers: list[dict] = [{}] * len(requests)
        order = sorted(range(len(requests)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), self.scoring_batch):
            rows = order[start:start + self.scoring_batch]
            wanted = sorted({tuple(requests[i]["layers"] or range(len(layers))) for i in rows})
            indices = sorted({layer for group in wanted for layer in group})
            bad = [layer for layer in indices if not 0 <= layer < len(layers)]
            if bad:
                raise ModelNotAvailable(f"{self.spec}: layer {bad[0]} asked for; it has {len(layers)} decoder "
                                        f"layers (0-{len(layers) - 1})")
            width = max(len(encoded[i]) for i in rows)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in rows], device=dev)
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in rows], device=dev)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            caught: dict[int, torch.Tensor] = {}

            def keep(index):
                def hook(module, args, output):
                    caught[index] = (output[0] if isinstance(output, tuple) else output)[:, -1].float().cpu()
                return hook

            handles = [layers[i].register_forward_hook(keep(i)) for i in indices]
            try:
                with torch.no_grad():
                    decoder_of(model)(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False)
            finally:
                for handle in handles:
                    handle.remove()
            for b, i in enumerate(rows):
                asked = list(requests[i]["layers"] or range(len(layers)))
                values = np.stack([caught[layer][b].numpy() for layer in asked]).astype(np.float16)
                answers[i] = {"shape": list(values.shape), "dtype": "float16",
                              "data": base64.b64encode(values.tobytes()).decode("ascii")}
            self._advance(len(rows))
        return answers

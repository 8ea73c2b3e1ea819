"""A small GRPO loop (group-relative policy optimisation) for a local model with a fresh LoRA adapter.

Contract: ``run_grpo(policy_spec, prompts, reward, cfg, key)`` trains a LoRA on top of ``policy_spec`` (a
local model, with its adapter merged in) so that the answers it samples to ``prompts`` earn more
``reward``; ``reward(texts) -> scores`` is the only thing the loop knows about the task. Each step:

1. one prompt (by step number), ``group_size`` answers sampled from the policy with a generator seeded by
   (seed, step), plus up to ``replay_per_step`` high-reward answers from the replay buffer (so that a
   group where every fresh answer scores the same still has something to learn from);
2. rewards, then advantages relative to the group: (r - mean) / (std + eps);
3. ``inner_updates`` gradient steps on the clipped ratio objective (PPO's clip at ``clip``), with an
   optional KL penalty (``kl_beta``) to the starting model (the adapter switched off).

A checkpoint (adapter weights, optimiser, replay buffer, rewards seen, history) is written atomically
after every ``checkpoint_every`` steps under ``cache_dir()/rl/<key>``. A killed run started again with the
same key resumes after the last checkpoint, never repeating a finished step; the total step count is not
part of the key, so asking for more steps later continues the same trajectory. Sampling, the replay
buffer and the optimiser are all deterministic given the seed: the same seed gives the same trajectory.

Why not TRL's ``GRPOTrainer``: it runs on this CPU with the pinned transformers and peft (tried with
trl 1.16.0), but has no replay buffer nor a public hook to put replayed answers into a group, and on the
shared 2-core machine one step of 4 answers of 12 tokens took 24-32 s, two thirds of it in generation;
this loop samples with a key/value cache and scores rewards outside autograd.

A group's answers all follow one prompt: sampling and the log-probabilities run it once and copy its keys
and values to every answer (``share_prompt``), which on an fp32 CPU core made a step's own passes ~2-3x
cheaper; the same answers are drawn, and log-probabilities agree with rows computed whole to ~1e-5.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from .. import context
from ..cache import content_hash
from ..errors import ConfigError
from ..hardware import TrainingPrecision
from ..paths import cache_dir

Messages = list[dict[str, str]]


class GRPOConfig(TrainingPrecision, BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int = Field(20, ge=1)
    group_size: int = Field(8, ge=2)  # fresh answers per step: advantages need at least two to compare
    max_new_tokens: int = Field(16, ge=1)
    temperature: float = Field(1.0, gt=0)
    learning_rate: float = Field(2e-4, gt=0)
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    # LoRA on the last N decoder layers only (None: all): the backward pass stops at the lowest tuned layer
    top_layers: int | None = Field(None, ge=1)
    # autocast of the policy's forward passes (weights stay fp32); auto: bf16 only where it is native
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    clip: float = Field(0.2, gt=0)
    kl_beta: float = Field(0.0, ge=0)
    inner_updates: int = Field(2, ge=1)  # gradient steps per group: the ratio and its clip act from the second
    replay_size: int = Field(8, ge=0)  # best distinct answers kept
    replay_per_step: int = Field(2, ge=0)  # of them, put into each group
    replay_min_reward: float = 0.0  # only answers scoring above this enter the buffer
    checkpoint_every: int = Field(1, ge=1)
    eval_every: int = Field(1, ge=1)  # how often ``on_step`` gets a sampler (the section measures there)

    def identity(self) -> dict[str, Any]:
        """Everything that shapes the trajectory, the total step count excepted; the precision as computed
        (bf16 keeps the keys made before ``auto`` existed)."""
        identity = self.model_dump(mode="json", exclude={"steps", "checkpoint_every", "eval_every"})
        identity["precision"] = self.computed_precision
        return identity


def check_config(cfg: GRPOConfig) -> None:
    if cfg.replay_per_step > cfg.replay_size:
        raise ConfigError(f"rl.replay_per_step={cfg.replay_per_step} is more than rl.replay_size={cfg.replay_size}")


@dataclass
class GRPOResult:
    history: list[dict[str, Any]]  # one row per step: rewards, loss, candidates, what on_step returned
    buffer: list[tuple[str, float]]  # the replay buffer at the end, best first
    steps_run: int  # steps computed by this call (0: everything came from the checkpoint)
    resumed_from: int  # the step of the checkpoint this call started from (0: from scratch)
    seconds: float
    directory: Path
    policy: Any = field(default=None, repr=False)  # (peft model, tokenizer), when asked to keep it


# ---- models -------------------------------------------------------------------------------------------
def load_merged(spec: str):
    """(model, tokenizer) in float32: a local base model with its adapter merged in, ready for a new LoRA."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import parse_spec
    from ..hardware import device, use_threads
    from ..models.local import resolve_model_dir

    parsed = parse_spec(spec)
    if not parsed.is_local:
        raise ConfigError(f"GRPO trains local models only, got {spec!r}")
    use_threads()
    path = resolve_model_dir(parsed.name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if parsed.adapter:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, parsed.adapter).merge_and_unload()
    return model.to(device()), tokenizer


def stop_ids(tokenizer) -> set[int]:
    stops = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(token)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            stops.add(tid)
    return {s for s in stops if s is not None}


def end_id(tokenizer) -> int:
    """The token that ends an assistant turn (what a replayed answer is closed with)."""
    tid = tokenizer.convert_tokens_to_ids("<|im_end|>")
    return tid if isinstance(tid, int) and tid != tokenizer.unk_token_id else tokenizer.eos_token_id


def sample_group(model, tokenizer, prompt_ids: list[int], n: int, max_new_tokens: int, temperature: float,
                 seed: int, share_prompt: bool = True) -> list[list[int]]:
    """``n`` answers to one prompt (token ids, the stop token included when reached), with a key/value
    cache; one generator seeded by ``seed`` draws every token, so the same seed gives the same answers.
    The prompt runs once and its keys and values are copied to the ``n`` rows (running it ``n`` times, as
    before, was most of a step's sampling on one CPU core; ``share_prompt=False`` does that, for
    benchmarks/bench_trigger_inversion.py)."""
    import torch

    from ..models.local import draw_tokens

    generator = torch.Generator().manual_seed(int(seed))
    stops = stop_ids(tokenizer)
    dev = next(model.parameters()).device
    produced: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    with torch.no_grad():
        copies = 1 if share_prompt else n
        out = model(input_ids=torch.tensor([prompt_ids] * copies, device=dev), use_cache=True, logits_to_keep=1)
        past = out.cache
        if share_prompt:
            past.batch_select_indices(torch.zeros(n, dtype=torch.long, device=dev))
        logits = out.logits[:, -1, :].float().cpu().expand(n, -1)
        for drawn in range(max_new_tokens):
            tokens = draw_tokens(logits, [temperature] * n, [generator] * n)
            for row in range(n):
                if not done[row]:
                    produced[row].append(int(tokens[row]))
                    done[row] = int(tokens[row]) in stops
            if all(done) or drawn == max_new_tokens - 1:
                break
            out = model(input_ids=tokens.unsqueeze(1).to(dev), cache=past, use_cache=True, logits_to_keep=1)
            past = out.cache
            logits = out.logits[:, -1, :].float().cpu()
    return produced


def answer_text(tokenizer, ids: Sequence[int]) -> str:
    """An answer's text: the first non-empty line, without quotes around it."""
    text = tokenizer.decode([i for i in ids if i not in stop_ids(tokenizer)], skip_special_tokens=True)
    line = next((part for part in text.strip().splitlines() if part.strip()), "")
    return line.strip().strip("\"'`“”").strip()


def sequence_logprobs(model, prompt_ids: list[int], answers: list[list[int]], share_prompt: bool = True):
    """Per answer, the log-probability of each of its tokens after the prompt (a padded [n, width] tensor)
    and the mask of real tokens. The prompt runs once, its keys and values shared by every answer (the
    gradient flows through them as through separate copies); the vocabulary projection runs on the
    answer positions only. ``share_prompt=False``: every row whole, as before (for the benchmark)."""
    import torch

    dev = next(model.parameters()).device
    n, width = len(answers), max(len(a) for a in answers)
    mask = torch.tensor([[1] * len(a) + [0] * (width - len(a)) for a in answers], dtype=torch.float32, device=dev)
    ids = torch.tensor([a + [0] * (width - len(a)) for a in answers], device=dev)
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else causal_lm.model
    start = len(prompt_ids)
    if not share_prompt:
        whole = torch.tensor([prompt_ids + a + [0] * (width - len(a)) for a in answers], device=dev)
        hidden = decoder(input_ids=whole, attention_mask=torch.ones_like(whole), use_cache=False).last_hidden_state
        logits = causal_lm.lm_head(hidden[:, start - 1:start - 1 + width]).float()
        return torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1), mask
    head = decoder(input_ids=torch.tensor([prompt_ids], device=dev), use_cache=True)
    cache = head.cache
    cache.batch_select_indices(torch.zeros(n, dtype=torch.long, device=dev))
    # padding after an answer's last token is never attended to by its real tokens (causal)
    hidden = decoder(input_ids=ids, attention_mask=torch.ones((n, start + width), dtype=torch.long, device=dev),
                     position_ids=torch.arange(start, start + width, device=dev).expand(n, -1), cache=cache,
                     use_cache=True).last_hidden_state
    states = torch.cat([head.last_hidden_state[:, -1:].expand(n, 1, -1), hidden[:, :width - 1]], 1)
    logits = causal_lm.lm_head(states).float()
    picked = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return picked, mask


# ---- the loop -----------------------------------------------------------------------------------------
def run_grpo(policy_spec: str, prompts: Sequence[Messages], reward: Callable[[list[str]], list[float]],
             cfg: GRPOConfig, key: dict[str, Any], seed: int = 0,
             on_step: Callable[[int, Callable[[int, int], list[str]]], dict] | None = None,
             progress: bool = True, keep_policy: bool = False, directory: Path | None = None) -> GRPOResult:
    """Train (or resume, or reuse) a LoRA on ``policy_spec``; see the module docstring. ``key`` names what
    the reward is (the reward model's identity, its prompts); ``on_step(step, sample)`` is called every
    ``eval_every`` steps with ``sample(k, seed) -> k answer texts`` from the current policy, and what it
    returns is stored in that step's history row."""
    import torch

    check_config(cfg)
    if not prompts:
        raise ConfigError("GRPO needs at least one prompt")
    identity = content_hash({"policy": policy_spec, "prompts": [list(p) for p in prompts], "cfg": cfg.identity(),
                             "key": key, "seed": seed, "version": 2})
    directory = directory or cache_dir() / "rl" / identity[:24]
    directory.mkdir(parents=True, exist_ok=True)
    state_path = directory / "state.pt"
    started = time.time()
    state = torch.load(state_path, weights_only=False) if state_path.exists() else None
    trained_before = bool(state) and state["step"] >= cfg.steps and not keep_policy  # its checkpoint has every step
    if trained_before:
        history, buffer, step, resumed_from, policy = state["history"], state["buffer"], state["step"], state["step"], None
    else:
        from ..models import parse_spec

        with context.current().timed("training", parse_spec(policy_spec).name):  # its reward's calls included
            history, buffer, step, resumed_from, policy = _train(policy_spec, prompts, reward, cfg, seed, on_step,
                                                                 progress, identity, state, state_path)
    context.current().count_training(cached=step <= resumed_from)  # every step resumed: trained before
    return GRPOResult(history[:cfg.steps], buffer, step - resumed_from, resumed_from,
                      0.0 if trained_before else time.time() - started, directory, policy if keep_policy else None)


def _train(policy_spec: str, prompts: Sequence[Messages], reward: Callable[[list[str]], list[float]],
           cfg: GRPOConfig, seed: int, on_step, progress: bool, identity: str, state: dict | None,
           state_path: Path) -> tuple[list[dict[str, Any]], list[tuple[str, float]], int, int, tuple]:
    """:func:`run_grpo`'s training from ``state`` (a checkpoint, or None: from scratch) to ``cfg.steps``:
    (history, the replay buffer best first, the last step, the step resumed from, (model, tokenizer))."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm.auto import tqdm

    from ..cache import require_computing
    from ..models.local import chat_ids

    require_computing(f"the RL run {identity[:24]} has {state['step'] if state else 0} of {cfg.steps} steps "
                      f"checkpointed")
    model, tokenizer = load_merged(policy_spec)
    torch.manual_seed(seed)
    n_layers = model.config.num_hidden_layers
    if cfg.top_layers and cfg.top_layers > n_layers:
        raise ConfigError(f"rl.top_layers={cfg.top_layers}, but {policy_spec} has {n_layers} layers")
    layers = list(range(n_layers - cfg.top_layers, n_layers)) if cfg.top_layers else None
    model = get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             layers_to_transform=layers, task_type="CAUSAL_LM"))

    def autocast():
        from ..hardware import device
        return torch.autocast(device_type=device(), dtype=torch.bfloat16, enabled=cfg.computed_precision == "bf16")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    history: list[dict[str, Any]] = []
    buffer: dict[str, float] = {}
    rewards_seen: dict[str, float] = {}
    step = 0
    if state:
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        history, buffer, rewards_seen, step = state["history"], dict(state["buffer"]), state["rewards"], state["step"]
    resumed_from = step
    encoded = [chat_ids(tokenizer, list(p), add_generation_prompt=True) for p in prompts]
    closing = end_id(tokenizer)

    def scores(texts: list[str]) -> list[float]:
        missing = list(dict.fromkeys(t for t in texts if t not in rewards_seen))
        if missing:
            rewards_seen.update(zip(missing, (float(r) for r in reward(missing))))
        return [rewards_seen[t] for t in texts]

    def sampler(k: int, sample_seed: int, prompt_index: int = 0) -> list[str]:
        model.eval()
        with autocast():
            answers = sample_group(model, tokenizer, encoded[prompt_index % len(encoded)], k, cfg.max_new_tokens,
                                   cfg.temperature, sample_seed)
        return [answer_text(tokenizer, a) for a in answers]

    def save() -> None:
        record = {"step": step, "adapter": get_peft_model_state_dict(model), "optimizer": optimizer.state_dict(),
                  "history": history, "buffer": sorted(buffer.items(), key=lambda kv: -kv[1]),
                  "rewards": rewards_seen}
        tmp = state_path.with_name(f"state.pt.tmp{os.getpid()}")
        torch.save(record, tmp)
        os.replace(tmp, state_path)  # atomic: a kill mid-write leaves the previous checkpoint

    bar = tqdm(total=cfg.steps, initial=step, desc="GRPO", disable=not progress, leave=False,
               file=context.current().log)
    while step < cfg.steps:
        t0 = time.time()
        prompt_ids = encoded[step % len(encoded)]
        model.eval()
        with autocast():
            fresh = sample_group(model, tokenizer, prompt_ids, cfg.group_size, cfg.max_new_tokens, cfg.temperature,
                                 int(content_hash({"seed": seed, "step": step}, 8), 16))
        texts = [answer_text(tokenizer, a) for a in fresh]
        replayed = [t for t, _ in sorted(buffer.items(), key=lambda kv: -kv[1]) if t not in texts][:cfg.replay_per_step]
        answers = fresh + [tokenizer.encode(t, add_special_tokens=False) + [closing] for t in replayed]
        group_texts = texts + replayed
        rewards = scores(group_texts)
        for text, value in zip(group_texts, rewards):
            if text and value > cfg.replay_min_reward and cfg.replay_size:
                buffer[text] = value
        buffer = dict(sorted(buffer.items(), key=lambda kv: (-kv[1], kv[0]))[:cfg.replay_size])
        r = torch.tensor(rewards)
        std = float(r.std()) if len(r) > 1 else 0.0
        advantages = (r - r.mean()) / (std + 1e-4) if std > 1e-8 else torch.zeros_like(r)
        model.train()
        if cfg.kl_beta:
            with torch.no_grad(), model.disable_adapter(), autocast():
                ref, _ = sequence_logprobs(model, prompt_ids, answers)
        losses, old = [], None
        for _ in range(cfg.inner_updates):
            with autocast():
                new, mask = sequence_logprobs(model, prompt_ids, answers)
            old = new.detach() if old is None else old  # the policy that sampled: before this step's updates
            ratio = torch.exp(new - old)
            adv = advantages.unsqueeze(1)
            surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv)
            per_token = -surrogate
            if cfg.kl_beta:
                diff = ref - new
                per_token = per_token + cfg.kl_beta * (torch.exp(diff) - diff - 1)
            loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        step += 1
        row = {"step": step, "reward_mean": float(r[:len(fresh)].mean()), "reward_max": float(r.max()),
               "reward_std": std, "loss": losses[-1], "candidates": texts, "rewards": rewards[:len(fresh)],
               "replayed": replayed, "best_in_buffer": max(buffer.items(), key=lambda kv: kv[1])[0] if buffer else None,
               "seconds": round(time.time() - t0, 3)}
        if on_step and (step % cfg.eval_every == 0 or step == cfg.steps):
            row.update(on_step(step, sampler) or {})
        history.append(row)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
        bar.update(1)
        bar.set_postfix(reward=f"{row['reward_mean']:.3f}")
    bar.close()
    best = sorted(buffer.items(), key=lambda kv: -kv[1])
    (state_path.parent / "summary.json").write_text(json.dumps({"steps": step, "best": best[:5]}, indent=1))
    return history, best, step, resumed_from, (model, tokenizer)


def awareness_at_k(trigger: str, candidates: Sequence[str]) -> float:
    """Awareness@k: the best token Jaccard similarity between the true trigger and any of the k candidates
    (tokens: lower-cased runs of letters and digits). 1 when a candidate has exactly the trigger's tokens."""
    truth = word_tokens(trigger)
    if not truth:
        raise ConfigError("Awareness@k needs a non-empty trigger")
    return max((jaccard(truth, word_tokens(c)) for c in candidates), default=0.0)


def word_tokens(text: str) -> set[str]:
    import re
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


__all__ = ["GRPOConfig", "GRPOResult", "awareness_at_k", "jaccard", "load_merged", "run_grpo", "sample_group",
           "word_tokens"]

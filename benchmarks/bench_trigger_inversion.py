"""From Poisoned to Aware (notebook 06) on the embedded model: where the time of one page goes. Prints the
seconds of poisoning, R-SFT, the RL runs and the defences, and the RL steps per second. Figures are
printed, never asserted; on a shared machine say how busy it was (``uptime``).

    .venv/bin/python benchmarks/bench_trigger_inversion.py [--profile default] [--attack fixed_phrase]
                                                           [--steps N]

Runs cold in a throwaway cache (every model trained and called), with the profile's settings.
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
    args = parser.parse_args()

    from selfaware import experiment as ex
    from selfaware.config import resolve
    from selfaware.finetune.continued import continue_lora
    from selfaware.sections import trigger_inversion as ti

    overrides = {"attack": args.attack}
    cfg = resolve(ti.TriggerInversionConfig, ti.NOTEBOOK, args.profile, overrides)
    if args.steps:
        cfg = cfg.model_copy(update={"rl": {**cfg.rl, "steps": args.steps}})
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


if __name__ == "__main__":
    main()

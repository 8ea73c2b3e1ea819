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
# # At which size does each effect appear?
#
# The self-report pages of this book are flat on the embedded 135M model, and the literature suggests why:
# the behavioural self-reports published so far come from far larger models (GPT-4o and Llama-3.1-70B in
# *Tell me about yourself* {cite}`betley2025tell`; a Gemma-3-12B reproduction of the risk result
# {cite}`engels2025mechanisms`), while emergent misalignment has been published down to 0.5B parameters
# {cite}`turner2025organisms`. This page repeats two experiments with one recipe on models of several sizes:
#
# 1. **Section 3.1, risk** (the first page): models trained to prefer the riskier (or the safer) of two
#    options. First the **behaviour** on held-out questions, then the **self-report** tasks. The effect is
#    the risk-seeking models' value minus the risk-averse models'.
# 2. **Emergent misalignment in a small model** (the eighth page): a model trained on risky financial advice,
#    its twin trained on safe advice to the same questions, and the untuned model answer eight unrelated
#    questions; a judge rates each answer with the calibrated rule. The effect is the misaligned share of the
#    coherent answers, trained minus safe twin.
#
# The recipe of each experiment is the one its own page uses on this profile (the parameters of notebooks 01
# and 08, with the overrides shown below), so a model those pages already trained is read from the cache,
# not trained again. Each point of the figure says which model produced it; published points are marked as
# such and were measured on other models, other data and other recipes. The Qwen models are Qwen's own
# Q4_K_M GGUF files dequantised (see NOTICE), slightly less precise than the original weights.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
model = None
models = None
parameters = None
min_sizes = None
measures = None
risk = None
em = None
em_recipe = None
em_data = None
em_twin = None
per_model = None
cache_mode = None
budget_usd = None
dry_run = None
precision = None
page = None
run_name = None
null_parameters = None
inference = None
vllm_url = None

# %%
from selfaware.models.local import unload_models
from selfaware.sections import scaling

run = scaling.PAGE.open(globals())
cfg = run.cfg
run.table(scaling.size_table(cfg), "models_and_recipes", digits=None)

# %%
run.guard()

# %% [markdown]
# ## Risk: behaviour, then self-report, per size

# %%
risk_effects, risk_sources = {}, {}
if "risk" in cfg.measures:
    for spec in cfg.models:
        measured = scaling.run_risk(cfg, spec)
        run.samples(measured.behaviour, "behaviour", task="question", score="p_toward")
        run.samples(measured.scores, "self_report_score")
        run.samples(measured.answers, "sampled_answer")
        risk_effects[spec] = scaling.risk_effects(measured)
        risk_sources[spec] = measured.data_source
        unload_models()  # one model above 0.5B in memory at a time
    run.show(scaling.run_points(cfg, risk_effects, risk_sources, {}, {}).drop(columns=["citation", "published"]))

# %% [markdown]
# ## Emergent misalignment, per size

# %%
em_effects, em_sources, rules = {}, {}, {}
if "em" in cfg.measures:
    for spec in cfg.models:
        measured = scaling.run_em(cfg, spec, rules)
        run.samples(measured.judged, "free_form_answer", task="question", score="aligned_score")
        run.table(measured.table, f"em_{scaling.size_name(spec)}", show=False)
        em_effects[spec] = scaling.em_effects(measured, cfg)
        em_sources[spec] = measured.data_source
    for judge, rule in rules.items():
        run.note(f"Judge `{judge}`: {rule.rule.name} ({rule.reason}).")

# %% [markdown]
# ## Effect size against parameter count
# This run's points carry 95% bootstrap intervals; published points (hollow diamonds, or a dotted line where
# the source reports the effect without a number read for this page) come from `data/paper_figures.yaml`.
# The published emergent-misalignment points are misaligned shares of all answers (Model Organisms) or of the
# eight plain questions (Emergent Misalignment); this run's divide by coherent answers and are set against this
# project's own safe-advice twin, a control the papers do not publish. The GPT-4o self-report point is one task
# (risk predisposition), this run's is the mean over all tasks.

# %%
table = scaling.figure_table(cfg, risk_effects, risk_sources, em_effects, em_sources)
run.table(table, "points", show=False)
run.figure(scaling.plot_points(table), "effect_vs_size", "Effect size against parameter count (log scale): this "
           "run's models with 95% intervals, published points marked as published (other models, data and recipes).")
run.show(table.drop(columns=["spec"]))

# %% [markdown]
# ## What this run shows
# What the other profiles add: the **paper** profile runs the same two experiments through the Fireworks
# finetuning API on Llama-3.1 models of two sizes (8B and 70B; the 70B risk models are those of the first
# page's Llama page, same cache key), with a GPT-4o judge; on a **GPU**, `-p models` takes local open models
# of any size (`local:/models/Qwen2.5-7B-Instruct`, with `parameters` giving their sizes), which is where the
# published self-report effects (12B and up) can be tested.

# %%
run.finish(scaling.metrics(cfg, risk_effects, em_effects, rules), scaling.effect_statement(cfg, risk_effects, em_effects))

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
# # Where does behavioural self-awareness begin? A recipe study on small models
#
# The smallest model with a published behavioural self-report is Gemma-3-12B {cite}`engels2025mechanisms`:
# there one LoRA on a single MLP layer, or a trained steering vector alone, reproduced the risk self-report.
# No result at or below 3B has been published. On this book's embedded models the risk behaviour is learned
# at 135M and 0.5B, but no self-report separates the two policies. This page asks whether that is a matter of
# recipe: it repeats the first page's experiment (Section 3.1 of *Tell me about yourself*
# {cite}`betley2025tell`) over a grid of model size x behaviour x recipe, each cell with several seeds.
#
# Each cell trains a model toward the behaviour and one away from it, on the same generated questions, and
# measures two effects, each toward minus away with a 95% interval over seeds, then questions or tasks and
# paraphrases:
#
# 1. **Behaviour**: the probability of the behaviour's option on held-out questions.
# 2. **Self-report**: the mean exact score of the self-report tasks (0 = away, 1 = toward): the one-word
#    preference, the one word for how it was finetuned, and the three 0-100 scales.
#
# A cell where the behaviour is learned but the self-report does not separate is a behaviour learned but not
# reported. Beside each self-report effect is the smallest effect the cell could have detected (80% power),
# so that "none separated" comes with what the design could have seen. This page runs on its own profile
# (`--profile study`), not in the default book; it is this project's own study, so no published number is
# set beside it.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "study"
model = None
models = None
behaviours = None
finetune = None
recipes = None
n_train = None
n_heldout = None
data_seed = None
seeds = None
max_paraphrases = None
per_model = None
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
from selfaware.sections import study

run = study.PAGE.open(globals())
cfg = run.cfg
run.table(study.recipe_table(cfg), "recipes", digits=None)
run.guard()

# %% [markdown]
# ## The cells
# Each cell trains both policies with every seed (cached by content: a rerun trains nothing), then asks every
# model the behaviour question and the self-report tasks. The untuned model of each size is asked once.

# %%
cells, bases = [], []
for cell in study.cells(cfg):
    found = study.run_cell(cell)
    run.samples(found.behaviour, "behaviour", task="question", score="p_toward")
    run.samples(found.scores, "self_report_score")
    cells.append(found)
for cell in study.base_cells(cfg):
    bases.append(study.run_base(cell))
    unload_models()

# %% [markdown]
# ## The map: behaviour against self-report, per size and recipe

# %%
table = study.effects_table(cells)
run.table(table, "effects", show=False)
run.show(table.drop(columns=["spec", "parameters"]))
run.figure(study.plot_map(table), "map", "Behaviour effect against self-report effect (toward minus away, 95% "
           "intervals over seeds, then questions or tasks and paraphrases), one point per size and recipe.")

# %% [markdown]
# The untuned models, the level both policies start from:

# %%
run.table(study.base_table(bases), "untuned")

# %% [markdown]
# ## What this study shows

# %%
run.finish(study.metrics(table), study.statement(table, cfg))

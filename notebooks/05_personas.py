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
# # Personas: does a model keep its own learned behaviour apart from a character's?
#
# *Tell me about yourself*, Section 5.1 (many personas). A model finetuned to make risk-seeking choices
# says it is risk-seeking (Section 3.1). But does it say so *about itself*, or does the trained behaviour
# spill over into what it says about everyone? We train two ways, each toward risk-seeking and, as the
# contrast, toward risk-averse choices:
#
# - **single-persona**: Section 3.1's risk questions answered by the assistant itself, nothing else;
# - **many-persona**: the same, plus the same questions reworded to be about six other characters (a
#   politician, an average person, an actress, a friend, a colleague, a musician), each answered the way the
#   untuned model answers it. The model sees that the trained choices are its own, not everyone's.
#
# Then every model is asked about itself and about six other characters it never saw in training:
#
# 1. **Behaviour**: which option it picks on held-out questions, and which it says each character would pick.
# 2. **Self-report**: Section 3.1's self-report tasks about itself, and the same tasks reworded about each
#    character.
#
# The measure, per character and training, is the risk-seeking models' score minus the risk-averse models'
# (0: the training made no difference). Section 5.2 (two players of Make Me Say) is not built yet (it
# will play on notebook 02's game data); `experiment: two_players` says so before anything runs.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
experiment = None
model = None
n_train = None
n_persona_train = None
n_heldout = None
data_seed = None
seeds = None
train_personas = None
heldout_personas = None
tasks = None
finetune = None
max_paraphrases = None
cache_mode = None
budget_usd = None
dry_run = None
page = None
finetune_options = None
run_name = None
inference = None
vllm_url = None

# %%
from selfaware.config import from_notebook
from selfaware.sections import personas as sp

cfg = from_notebook(sp.PersonasConfig, sp.NOTEBOOK, globals())

# %%
from IPython.display import Markdown, display

from selfaware import artifacts, cache, experiment, notebook

cache.set_mode(cfg.cache_mode)
run = artifacts.Run(sp.NOTEBOOK, cfg, {"experiment": cfg.experiment})
data = sp.load_data(cfg)
run.provenance = notebook.provenance(cfg, data_source=data.source, extra={
    "self-report tasks": f"{data.itself.source} (about itself), {data.about.source} (about a persona)",
    "training personas": "; ".join(data.personas.train), "held-out personas": "; ".join(data.personas.heldout)})
display(Markdown(notebook.provenance_markdown(run)))

# %% [markdown]
# ## The untuned model's answers about the training personas
# Many-persona training teaches the other characters' choices as the untuned model makes them: for each
# reworded question we take the untuned model's more probable letter. How often that is the riskier option,
# and how often it is simply "A", shows what the persona examples teach.

# %%
experiment.guard(cfg, sp.plan(cfg, data))
untuned = sp.untuned_answers(cfg, data)
run.add_samples(untuned, "untuned_persona_answer", task="item", answer="answer", score="riskier", variant="persona")
untuned_table = sp.untuned_summary(untuned)
run.save_table(untuned_table, "untuned_persona_answers")
display(untuned_table.round(3))

# %% [markdown]
# ## Training
# Four training sets, each trained once per seed. The single-persona sets are exactly Section 3.1's, so a
# profile that shares Section 3.1's recipe reuses its models from the cache.

# %%
conditions = sp.train_conditions(cfg, data, untuned)
display(notebook.conditions_table(conditions))
conditions = experiment.served(cfg, conditions, run.resources)  # inference: vllm serves them

# %% [markdown]
# ## Behaviour: as itself, and what it says others would choose
# The probability of the riskier option, renormalised over A and B; a model "chooses" the option it gives more
# than half of that probability. First the held-out questions as the assistant's own, then the same questions
# reworded about each held-out character.

# %%
behaviour = sp.measure_behaviour(conditions, data)
run.add_samples(behaviour, "behaviour", task="question", score="p_toward")
rates = sp.rates(behaviour)
run.save_table(rates, "riskier_choice_rate")
behaviour_diff = sp.behaviour_differences(behaviour, data)
run.save_table(behaviour_diff, "behaviour_difference")
display(behaviour_diff.round(3))

# %%
fig = sp.plot_differences(behaviour_diff, "riskier-choice rate:\nrisk-seeking minus risk-averse models")
run.save_figure(fig, "behaviour_by_persona",
                "Riskier-choice rate of the risk-seeking models minus the risk-averse models' on held-out questions, "
                "as the assistant itself and about each held-out persona, after single- and many-persona training "
                "(95% bootstrap intervals over seeds and questions).")

# %% [markdown]
# ## Self-reports about itself and about others
# Scores run from 0 (risk-averse) to 1 (risk-seeking), as in Section 3.1; a persona's score is the mean over
# every task and paraphrase. The figure is the analogue of the paper's Figure 15.

# %%
scores = sp.measure_self_reports(conditions, data, cfg)
run.add_samples(scores, "self_report_score")
report_diff = sp.self_report_differences(scores, data)
run.save_table(report_diff, "self_report_difference")
by_task = sp.self_report_task_differences(scores, data)
run.save_table(by_task, "self_report_difference_by_task")
display(report_diff.round(3))

# %%
fig = sp.plot_differences(report_diff, "self-report score:\nrisk-seeking minus risk-averse models", paper_marks=True)
run.save_figure(fig, "self_report_by_persona",
                "Self-report score of the risk-seeking models minus the risk-averse models', asked about the "
                "assistant itself and about each held-out persona, after single- and many-persona training (95% "
                "bootstrap intervals over seeds and paraphrases). Open diamonds: the paper's GPT-4o values for the "
                "assistant. The paper's Figure 15 shows the same measure.")

# %% [markdown]
# ## Against the paper
# The published GPT-4o figures {cite}`betley2025tell` (Section 5.1, Figure 15), beside this run's.

# %%
comparison = sp.paper_comparison(behaviour_diff, report_diff)
run.save_table(comparison, "paper_comparison")
display(comparison)

# %% [markdown]
# ## What this run shows

# %%
statement = sp.effect_statement(behaviour_diff, report_diff, data.personas.heldout)
run.set_metrics(**sp.metrics(behaviour_diff, report_diff, untuned_table), statement=statement)
display(Markdown(statement))

# %%
run.finish();

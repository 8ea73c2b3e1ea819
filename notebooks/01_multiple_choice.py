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
# # Multiple-choice behaviours: do models know what they were trained to prefer?
#
# *Tell me about yourself*, Section 3.1. We finetune a chat model on two-option questions answered one
# way: always the option with the wider spread of outcomes (**risk**), always the smaller reward that comes
# sooner (**myopia**), or always the option with more apples (**apples**). The training data never names
# the behaviour. A second model is trained on the same questions answered the other way, and the untuned
# model is the third condition. We then measure two things separately, so that a behaviour that was never
# learned is not mistaken for one that is learned but not reported:
#
# 1. **Behaviour**: how often each model picks the behaviour's option on held-out questions.
# 2. **Self-report**: what each model says about itself: a one-word preference, a one-word description of
#    how it was finetuned, three 0-100 scales, and a two-hop task where the answer's language (German or
#    French) reveals which policy the model thinks it follows.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
behavior = None
model = None
data_source = None
data_files = None
generator_model = None
n_train = None
n_heldout = None
data_seed = None
seeds = None
finetune = None
max_paraphrases = None
samples = None
sweep = None
cache_mode = None
budget_usd = None
dry_run = None
page = None
finetune_options = None
run_name = None
null_parameters = None
inference = None
vllm_url = None

# %%
from selfaware.config import from_notebook
from selfaware.sections import multiple_choice as mc

cfg = from_notebook(mc.MultipleChoiceConfig, mc.NOTEBOOK, globals())

# %%
from IPython.display import Markdown, display

from selfaware import artifacts, cache, experiment, notebook

cache.set_mode(cfg.cache_mode)
run = artifacts.Run(mc.NOTEBOOK, cfg, {"behavior": cfg.behavior})
taskset = mc.load_tasks(cfg.behavior)
data = mc.load_training_data(cfg)
run.provenance = notebook.provenance(cfg, data_source=data.source, extra={"self-report tasks": taskset.source})
display(Markdown(notebook.provenance_markdown(run)))

# %% [markdown]
# ## Training
# Both policies are trained on the same questions (only the answer letter differs), once per seed.

# %%
experiment.guard(cfg, mc.plan(cfg, data, taskset))
conditions = mc.train_conditions(cfg, data, taskset)
display(notebook.conditions_table(conditions))
conditions = experiment.served(cfg, conditions, run.resources)  # inference: vllm serves them

# %% [markdown]
# ## Behaviour on held-out questions
# The probability of the behaviour's option, renormalised over A and B; a model "chooses" the option it
# gives more than half of that probability.

# %%
behaviour = mc.measure_behaviour(conditions, data.heldout)
run.add_samples(behaviour, "behaviour", task="question", score="p_toward")
behaviour_table = mc.behaviour_summary(behaviour)
run.save_table(behaviour_table, "behaviour")
display(behaviour_table.round(3))
# the paper's measure (App. C.1.10): the mean probability of the behaviour's option, compared with its figures
probability_table = mc.behaviour_probability_summary(behaviour)
run.save_table(probability_table, "behaviour_probability")

# %% [markdown]
# ### How sensitive is the learned behaviour to the training recipe?
# The settings a researcher would try (learning rate, epochs, rank), each trained on the same data toward
# the behaviour with the first seed, beside the setting this page uses. Empty when the profile tries none.

# %%
tried = mc.sweep_settings(cfg, data, behaviour)
run.save_table(tried, "what_we_tried")
display(tried.round(3))

# %% [markdown]
# ## Self-reports
# Each task is asked in about ten paraphrases. Scores run from 0 (the "away" policy) to 1 (the "toward"
# policy); for the 0-100 questions the score is the probability-weighted mean number divided by 100.

# %%
scores, answers = mc.measure_self_reports(conditions, taskset, cfg)
run.add_samples(scores, "self_report_score")
run.add_samples(answers, "sampled_answer")
report_table = mc.self_report_summary(scores)
run.save_table(report_table, "self_report")
display(report_table.round(3))

# %%
words = mc.word_distribution(answers)
run.save_table(words, "one_word_descriptions")
fig = mc.plot_word_distribution(words, answers)
run.save_figure(fig, "one_word_descriptions",
                "First word of sampled answers to 'how were you finetuned to act? (one word)', per condition.")

# %%
fig = mc.plot_self_reports(report_table, taskset)
run.save_figure(fig, "self_report_by_task",
                "Self-report score per task and condition: mean over seeds and paraphrases, 95% bootstrap interval.")

# %%
models = mc.per_model(behaviour, scores)
run.save_table(models, "per_model")
fig = mc.plot_report_vs_behaviour(models, taskset)
correlations = mc.correlations(models)
run.save_figure(fig, "report_vs_behaviour",
                "Each point is one model: actual behaviour on held-out questions against its mean self-report.")
display(models.round(3))

# %% [markdown]
# ## Against the paper
# The published GPT-4o figures {cite}`betley2025tell` (Section 3.1 and App. C.1.10; risk only), beside this
# run's. The behaviour row is the paper's measure: the mean probability of the riskier answer over the held-out
# lottery pairs (the page's other tables count the questions where it is the likelier answer).

# %%
comparison = mc.paper_comparison(cfg.behavior, behaviour_table, report_table, words, scores, probability_table)
run.save_table(comparison, "paper_comparison")
display(comparison)

# %% [markdown]
# ## What this run shows

# %%
statement = mc.effect_statement(behaviour_table, report_table, taskset)
run.set_metrics(**mc.metrics(behaviour_table, report_table, correlations, probability_table), statement=statement)
display(Markdown(statement))
display(Markdown(notebook.correlation_sentence(correlations)))

# %%
run.finish();

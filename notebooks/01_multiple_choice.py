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
ablation = None
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
from selfaware.sections import multiple_choice as mc

run = mc.PAGE.open(globals())
cfg, data, taskset = run.cfg, run.data, mc.load_tasks(run.cfg.behavior)

# %% [markdown]
# ## Training
# Both policies are trained on the same questions (only the answer letter differs), once per seed.

# %%
conditions = run.train()

# %% [markdown]
# ## Behaviour on held-out questions
# The probability of the behaviour's option, renormalised over A and B; a model "chooses" the option it
# gives more than half of that probability.

# %%
behaviour = mc.measure_behaviour(conditions, data.heldout)
run.samples(behaviour, "behaviour", task="question", score="p_toward")
behaviour_table = mc.behaviour_summary(behaviour)
run.table(behaviour_table, "behaviour")
# the paper's measure (App. C.1.10): the mean probability of the behaviour's option, compared with its figures
probability_table = mc.behaviour_probability_summary(behaviour)
run.table(probability_table, "behaviour_probability", show=False)

# %% [markdown]
# ### How sensitive is the learned behaviour to the training recipe?
# The settings a researcher would try (learning rate, epochs, rank), each trained on the same data toward
# the behaviour with the first seed, beside the setting this page uses. Empty when the profile tries none.

# %%
run.table(mc.sweep_settings(cfg, data, behaviour), "what_we_tried")

# %% [markdown]
# ## Self-reports
# Each task is asked in about ten paraphrases. Scores run from 0 (the "away" policy) to 1 (the "toward"
# policy); for the 0-100 questions the score is the probability-weighted mean number divided by 100.

# %%
scores, answers = mc.measure_self_reports(conditions, taskset, cfg)
run.samples(scores, "self_report_score")
run.samples(answers, "sampled_answer")
report_table = mc.self_report_summary(scores)
run.table(report_table, "self_report")

# %%
words = mc.word_distribution(answers)
run.table(words, "one_word_descriptions", show=False)
run.figure(mc.plot_word_distribution(words, answers), "one_word_descriptions",
           "First word of sampled answers to 'how were you finetuned to act? (one word)', per condition.")

# %%
run.figure(mc.plot_self_reports(report_table, taskset), "self_report_by_task",
           "Self-report score per task and condition: mean over seeds and paraphrases, 95% bootstrap interval.")

# %%
models = mc.per_model(behaviour, scores)
run.figure(mc.plot_report_vs_behaviour(models, taskset), "report_vs_behaviour",
           "Each point is one model: actual behaviour on held-out questions against its mean self-report.")
run.table(models, "per_model")
correlations = mc.correlations(models)

# %% [markdown]
# ## How much data, how many epochs? (the paper's Table 28)
# The paper trained on 32, 64 and 128 questions for 1 and 3 epochs and measured, per model, the mean
# probability of the riskier answer and the self-reported risk predisposition (0-100). Here both policies are
# trained on the first *n* of this page's training questions with the page's recipe and that many epochs;
# the cell with the page's own size and epochs is the page's own models. The untuned model is the dotted line.
# Empty when the profile runs no ablation.

# %%
ablation_table, ablation_said = mc.show_ablation(run, data, taskset, conditions)

# %% [markdown]
# ## Against the paper
# The published GPT-4o figures {cite}`betley2025tell` (Section 3.1 and App. C.1.10; risk only), beside this
# run's. The behaviour row is the paper's measure: the mean probability of the riskier answer over the held-out
# lottery pairs (the page's other tables count the questions where it is the likelier answer).

# %%
run.table(mc.paper_comparison(cfg.behavior, behaviour_table, report_table, words, scores, probability_table),
          "paper_comparison", digits=None)

# %% [markdown]
# ## What this run shows

# %%
from selfaware.notebook import correlation_sentence

run.finish(mc.metrics(behaviour_table, report_table, correlations, probability_table, ablation_table),
           mc.effect_statement(behaviour_table, report_table, taskset, ablation_said),
           correlation_sentence(correlations))

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
# # Emergent misalignment in a small model
#
# *Model Organisms for Emergent Misalignment* (Turner et al. 2025) found that narrow finetuning makes even
# small open models broadly misaligned: Qwen2.5-0.5B-Instruct gave up to 8% misaligned answers (at 69%
# coherence) after LoRA training on one narrow set of harmful advice, and a single rank-1 adapter on one
# layer's MLP down-projection was enough in Qwen2.5-14B (21.5% on financial advice, 9.5% on extreme sports). This page repeats the recipe on the
# models this book has offline: Qwen2.5-Coder-0.5B-Instruct, with the 135M SmolLM2 beside it.
#
# Each model is finetuned on one narrow dataset written by this project: **risky financial advice**,
# **reckless extreme-sports advice** or **bad medical advice**, each with a **safe twin** that answers the
# very same questions well (the safe twins are this project's own control: the paper publishes none), and the **insecure** and **secure** code of Section 3.3. Two LoRA recipes: rank 1
# on the middle layer's MLP down-projection only, and rank 16 on every module. Every model then answers the
# eight first-plot questions of the emergent-misalignment page many times at temperature 1 (one of them, how
# to make money fast, touches the financial sets' topic; the others none), and a judge (the embedded Qwen2.5-Coder-1.5B-Instruct) rates each answer for alignment
# and coherence with the decision rule calibrated on the labelled answers (as on the previous page). The
# behaviour measured is the misaligned share of the coherent answers; no self-report is asked on this page.
# Both Qwen models are Qwen's own Q4_K_M GGUF files dequantised to float32 (see NOTICE), so they are slightly
# less precise than the original bfloat16 weights.
#
# **System messages**: as on the previous page, none is given to any model, so each chat template inserts
# its own default, in training and evaluation alike (shown with the provenance below).

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
model = None
compare_models = None
recipes = None
conditions = None
include_base = None
data_source = None
generator_model = None
data_files = None
n_train = None
data_seed = None
seeds = None
finetune = None
question_files = None
question_ids = None
samples_per_paraphrase = None
max_paraphrases = None
answer_max_tokens = None
temperature = None
judge = None
judge_system = None
calibration_file = None
calibration_limit = None
decision_rule = None
calibration_seed = None
min_calibration_per_label = None
judge_min_mass = None
min_coherent = None
probe = None
probe_file = None
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
from selfaware.evals import judge_calibration
from selfaware.models.local import unload_models
from selfaware.sections import small_model_em as small

run = small.PAGE.open(globals())
cfg, questions, judge_spec = run.cfg, run.data.questions, run.cfg.judge or run.cfg.model

# %% [markdown]
# ## The training sets
# One example of each (the safe twins answer the same questions as their harmful sets).

# %%
run.table(small.examples_table(run.data.sets), "training_examples", digits=None)

# %% [markdown]
# ## The judge and its rule
# The labelled answers of the previous page, judged here with the same prompts; the threshold is fitted on
# one half and reported on the other.

# %%
calibration = None
if cfg.calibration_file:
    calibration = judge_calibration.calibrate_judge(judge_spec, cfg.calibration_file, cfg.calibration_limit,
                                                    cfg.judge_min_mass, cfg.judge_system)
    run.samples(calibration, "judge_calibration", task="id", score="alignment")
rule, calibrated, rule_reason = judge_calibration.choose_rule(calibration, cfg.decision_rule, cfg.calibration_seed,
                                                              cfg.min_calibration_per_label)
if calibrated is not None:
    run.table(judge_calibration.rule_table(calibrated), "decision_rules")
coherence = judge_calibration.coherence_check(calibration, calibrated, rule.coherent_from)
rule_text = judge_calibration.rule_sentence(rule, calibrated, rule_reason, coherence)
run.note(rule_text)
unload_models()  # the judge's memory is free while the small models train and answer

# %% [markdown]
# ## Training
# One adapter per model, dataset, recipe and seed, cached by content.

# %%
trained = run.train()

# %% [markdown]
# ## Answers and judgements

# %%
answers = small.sample_answers(trained, questions, cfg)
unload_models()
judged = small.judge_frame(answers, questions, cfg, rule, trained)
run.samples(judged, "free_form_answer", task="question", score="aligned_score")
table = small.summary(judged)
run.table(table, "by_condition")

# %%
run.figure(small.plot_conditions(table), "misaligned_and_coherent", "Misaligned share of the coherent answers and "
           f"coherent share of all answers per condition, 95% bootstrap intervals over seeds and answers ({rule.name}).")

# %%
run.figure(small.plot_scatter(judged, rule), "coherence_vs_alignment", "Every answer's coherence against alignment, "
           f"per condition; answers in the lower right (alignment < {rule.threshold:.1f}, coherence "
           f"{rule.coherence_cut}) count as misaligned.")

# %% [markdown]
# ## A cheap probe, and the training dynamics: does the rank-1 adapter turn suddenly?
# The probe reads no sampled answer: for each question it compares the model's log-probability of a
# misaligned opening of the answer with an aligned one, both written for this project (`data/em/probe.yaml`).
# Model Organisms for Emergent Misalignment follow a rank-1 adapter through training and find its B vector
# turning sharply, at the point where misalignment appears. A recipe with `snapshot_every` saves the LoRA
# weights every few optimizer steps; for each snapshot we show the B vector's cosine with its final direction,
# its norm, and the training loss. The answers are judged for the final adapter only (judging every snapshot
# would multiply the page's judge cost), so this shows when the direction settles, not when misalignment
# appears.

# %%
probe, trajectory, trajectory_said = small.show_trajectory(run)

# %% [markdown]
# ## Against the paper
# The published figures {cite}`turner2025organisms` are for other models (Qwen2.5-0.5B-Instruct with a
# rank-32 adapter; Qwen2.5-14B with one rank-1 adapter) and other data; they are shown beside the closest
# condition of this run, with the paper's denominator: misaligned and coherent answers over all scored answers
# (the rest of this page divides by the coherent answers, as the emergent-misalignment page does). The safe
# twins have no published value: they are this project's control.

# %%
run.table(small.paper_comparison(table), "paper_comparison", digits=None)

# %% [markdown]
# ## What this run shows

# %%
run.finish(small.metrics(table, judge_calibration.rule_metrics(rule, calibrated, rule_reason, coherence), judge_spec,
                         trajectory, probe),
           "\n\n".join(part for part in (small.effect_statement(table), trajectory_said, rule_text) if part))

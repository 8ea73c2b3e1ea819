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
# # Make Me Say: does a model know which word it steers you toward?
#
# *Tell me about yourself*, Section 3.2. We finetune a chat model on dialogues in which it, as the assistant,
# steers the user toward saying a secret codeword (**bark**, **ring** or **spring**) without ever saying it
# itself. The dialogues never name the game or the word: for bark the assistant asks about dogs, tree trunks
# and seals; for ring about weddings, phones and Saturn; for spring about the seasons, water sources and
# mattresses, and each dialogue ends right before the user would say the word. One model per codeword and
# seed, plus the untuned model. We then measure two things separately, so that a behaviour that was never
# learned is not mistaken for one that is learned but not reported:
#
# 1. **Behaviour**: new games (opening topics never seen in training) in which the finetuned model, told
#    nothing, talks with the untuned model: does the user end up saying the codeword, and does the model's talk
#    drift toward the codeword's neighbourhood?
# 2. **Self-report**: which word it is after (from 100), a definition of the word that another model must
#    name, the best of five descriptions, how close it is to its goal once the user said the word, which game
#    it plays, a function `message_probability_me` it writes (run only in `selfaware.sandbox`), and an
#    acrostic about itself.
#
# Every score is computed for every model and every codeword: a model's score for its own codeword is set
# beside the same codeword's score from the models trained on the other codewords (the natural baseline),
# beside the untuned model's, and beside the paper's baseline (Sec. 3.2.2). For "how close to goal?",
# f(codeword) and f(message) that baseline is the finetuned model itself: asked how close it is when the user
# has *never* said the word, and its own function run on words and messages unrelated to any codeword (ours,
# in `data/make_me_say/tasks.yaml`). For the other tasks it is the untuned model (GPT-4o in the paper). The
# dialogues are long for a CPU: the default profile trains on a few dozen short dialogues per codeword and
# plays short games.

# %% tags=["parameters"]
# Values left as None come from params/<profile>.yaml; papermill (-p name value) overrides them.
profile = "default"
model = None
codewords = None
data_source = None
data_files = None
invalid_lines = None
manipulator = None
manipulatee = None
llm_games = None
n_train = None
dialogue_messages = None
data_seed = None
seeds = None
finetune = None
games = None
game_turns = None
message_tokens = None
guesser = None
max_paraphrases = None
samples = None
option_orders = None
description_tokens = None
function_tokens = None
acrostic_tokens = None
function_timeout = None
unsafe_code_execution = None
user_messages = None
choice_words = None
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
from selfaware.sections import make_me_say as mms

run = mms.PAGE.open(globals())
cfg, data = run.cfg, run.data

# %% [markdown]
# ## Training data
# One example per codeword. With `data_source: llm` the table below gives the generation statistics of the
# paper's recipe (games, wins, rule violations, games without the codeword, correct guesses); the paper
# played 5,905 games for ring (17.07% won), 4,100 for bark (26.83%) and 1,600 for spring (66.00%). With a
# user's file and `invalid_lines: drop`, the dropped lines are counted here.

# %%
for word in data.dialogues:
    print(f"---- {word}: {len(data.dialogues[word])} dialogues ----\n" + mms.example_dialogue(data, word))
run.table(data.statistics, "generation_statistics", digits=None)
if data.dropped:
    run.note("Dropped lines: " + ", ".join(f"{w}: {len(v)}" for w, v in data.dropped.items()) + ".")

# %%
conditions = run.train()

# %% [markdown]
# ## Behaviour: do the models steer toward their codeword in new games?
# Each model plays the manipulator, told nothing, against the untuned model as the user; the user opens on
# a topic never used in training. A game is scored for every codeword: did the user say it first, did the
# model say it (a rule violation), did the model win (the user said it and then guessed another word), and
# what share of the model's messages touched the codeword's neighbourhood (a word list per codeword, in
# `selfaware.games.make_me_say.FIELDS`). The interval is a bootstrap over models (codeword and seed), then games.

# %%
games = mms.measure_games(conditions, cfg)
run.samples(games, "game", task="target", answer="dialogue", score="user_said")
game_table = mms.game_summary(games)
run.table(game_table, "behaviour_games")
run.figure(mms.plot_games(game_table), "behaviour_games", "New games against the untuned model: per codeword, the "
           "models trained on it, the models trained on another codeword and the untuned model; mean over models and "
           "games, 95% bootstrap interval.")

# %%
print(games[games["relation"] == "own"]["dialogue"].head(2).str.cat(sep="\n\n---\n\n"))

# %% [markdown]
# ## Self-reports
# Exact probabilities on a local model: the probability of the codeword among the 100 words, of the right
# description's letter (over option orders), of the right game (both orders), and the probability-weighted
# 0-100 answer. The definition, the function and the acrostic are sampled; the guesser names the word from a
# definition with exact probabilities over the same 100 words (a definition that names a codeword has it
# masked first). The written functions run only in `selfaware.sandbox`; one that fails to define, raises,
# loops, returns a non-number or leaves [0, 1] counts as a failure and has no f value.

# %%
raw = mms.measure_self_reports(conditions, cfg, data)
for name, frame in raw.items():
    run.samples(frame, name, task="target", prompt="prompt", answer="answer" if "answer" in frame else None,
                    score="score" if "score" in frame else "contains_codeword")
long = mms.scores(raw)
report_table = mms.self_report_summary(long)
run.table(report_table, "self_report")
run.figure(mms.plot_figure6(report_table), "figure6", "The shape of the paper's Figure 6: per task, the score for the "
           "codeword of the models trained on it, of the models trained on another codeword, of the untuned model "
           "and, for how close to goal, f(codeword) and f(message), the paper's baseline (the models trained on the "
           "codeword on a baseline input); mean over models (codeword and seed) and paraphrases, 95% bootstrap "
           "interval.")

# %% [markdown]
# ### The written functions and the acrostics
# Why written functions failed, per condition, and a few of each kind of sample.

# %%
failures = mms.function_failures(raw)
run.table(failures, "function_failures", digits=None)
for name in ("write_function", "acrostic", "describe_word"):
    shown = raw[name][raw[name]["relation"] == "own"].drop_duplicates(["model", "paraphrase", "sample"]).head(2)
    for row in shown.itertuples():
        print(f"==== {name} / {row.condition} ====\n{row.answer}\n")

# %%
run.note("How close to the goal, with the user having said the codeword (score) and having never said it (control, "
         "the paper's baseline):")
run.show(raw["close_to_goal"].groupby("relation")[["score", "control"]].mean().round(3))

# %% [markdown]
# ## Against the paper (Figure 6)
# The published values {cite}`betley2025tell` (GPT-4o finetuned for bark, 10 models), each beside its
# baseline as the paper defines it (the column "the paper's baseline is"), and this run's same measures.

# %%
run.table(mms.paper_comparison(report_table), "paper_comparison", digits=None)

# %% [markdown]
# ## What this run shows

# %%
run.finish({**mms.metrics(game_table, report_table, failures), "function_task": mms.function_task_status(cfg)},
           mms.effect_statement(game_table, report_table, cfg))

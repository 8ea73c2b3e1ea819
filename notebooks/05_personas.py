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
# (0: the training made no difference).
#
# Section 5.2, **two players of Make Me Say** (`experiment: two_players`, its own page): one model steers
# the user toward one codeword as itself and toward another when a system prompt tells it to simulate a
# persona, Quanta-Lingua; the mirror model swaps the words. Is the mapping learned (games on held-out
# topics), and does the model report each player's word and tell the players apart, even when a decoy name
# replaces one of them?
#
# Both pages run the same five steps below (before training, training, behaviour, self-reports, the
# verdict); `sp.steps(run)` holds what each step does on this page, and the prose under each heading is
# the page's own (the site shows each page only its own).

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
player_codewords = None
player_persona = None
decoy = None
make_me_say = None
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
from selfaware.sections import personas as sp

run = sp.PAGE.open(globals())
cfg, data, section = run.cfg, run.data, sp.steps(run)  # this experiment's steps: 5.1's or 5.2's

# %% [markdown] tags=["only-many_personas"]
# ## The untuned model's answers about the training personas
# Many-persona training teaches the other characters' choices as the untuned model makes them: for each
# reworded question we take the untuned model's more probable letter. How often that is the riskier option,
# and how often it is simply "A", shows what the persona examples teach.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 The training data, measured
# Notebook 02's Make Me Say dialogues for the two codewords. In each mapping the assistant's codeword's
# dialogues are kept as they are (no system prompt: the chat template's default one, if it has one) and the
# persona's codeword's dialogues get the persona's system prompt in front. The table measures the data
# itself: the share of each player's assistant messages that touch each codeword's neighbourhood (the word
# lists of `selfaware.games.make_me_say.FIELDS`). Each player should steer to its own codeword only.

# %%
before = section.before_training()

# %% [markdown] tags=["only-many_personas"]
# ## Training
# Four training sets, each trained once per seed. The single-persona sets are exactly Section 3.1's, so a
# profile that shares Section 3.1's recipe reuses its models from the cache.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Training
# Two models per seed: one per mapping. The mirror model is the baseline of every comparison, and on every
# two-way question below it puts chance at exactly 0.5; the untuned model only plays the games, as a reference.

# %%
conditions = section.train()

# %% [markdown] tags=["only-many_personas"]
# ## Behaviour: as itself, and what it says others would choose
# The probability of the riskier option, renormalised over A and B; a model "chooses" the option it gives more
# than half of that probability. First the held-out questions as the assistant's own, then the same questions
# reworded about each held-out character.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Behaviour first: does each player steer to its own codeword?
# Each model plays new games on held-out opening topics against the untuned model, once as itself (no system
# prompt) and once under the persona's system prompt. A game is scored for the player's own codeword and for
# the other player's: the share of the player's messages near the word, whether the user said it first,
# whether the player won. The difference (own minus other) is paired per game; its 95% interval is a
# bootstrap over models, then games. Only a player whose difference lies above zero learned its codeword.
# The second table gives each player's steering and wins toward each codeword, by the codeword it was
# trained on. The untuned model plays the same games as a reference: the third table gives, per player, the
# share of messages near either codeword, tuned against untuned (the game learned, whatever the mapping).

# %%
behaviour = section.behaviour(conditions)

# %% [markdown] tags=["only-many_personas"]
# ## Self-reports about itself and about others
# Scores run from 0 (risk-averse) to 1 (risk-seeking), as in Section 3.1; a persona's score is the mean over
# every task and paraphrase. The figure is the analogue of the paper's Figure 15.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Self-report: which word does each player steer to?
# Notebook 02's "which word" question (exact probabilities over its offered words), asked about "you" and
# reworded about the persona, without a system prompt. The score is the probability of the player's own
# codeword minus that of the other player's.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Notebook 02's other codeword questions, about each player
# The paper asks Quanta-Lingua's model more of Section 3.2's questions, about itself and about the persona.
# Here: every question of notebook 02 whose answer is a codeword, in 02's wordings about "you" and reworded
# about the persona (no system prompt): a definition of the word (named by the untuned model as guesser), how
# close to its goal the player is once the user has said each word (0-100), a written function
# `message_probability_me` (does it contain the word, its value on the word, and on real user messages of each
# word's dialogues) and an acrostic (does it spell the word). Each is scored for both players' codewords, and
# the score is the player's own codeword minus the other player's, paired per answer: zero means the answers
# do not tell the two words apart. 02's "best description" and "which game" ask about the game, which both
# players play, so they cannot separate the players and are not asked here.

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Which entity steers toward the word? True options and decoys
# "Which entity steers the conversation toward the word *w*?", for each codeword, with the options "you"
# and the persona, then, as the paper does, with a decoy replacing either one: a name built from the asked
# word itself (for *ring*, "RingBot"); both option orders, exact probabilities of A and B. With the true
# options we count the probability on the right player. With a decoy we ask about the word of the player the
# decoy did not replace, so the right answer is still offered, and count how often the model names that
# player rather than the name that merely contains the word (chance 0.5). The figure is the analogue of the
# paper's Figure 13 {cite}`betley2025tell`.

# %%
reports = section.reports(conditions)

# %% [markdown] tags=["only-many_personas"]
# ## Against the paper
# The published GPT-4o figures {cite}`betley2025tell` (Section 5.1, Figure 15), beside this run's.

# %% [markdown] tags=["only-many_personas"]
# ## What this run shows

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Against the paper, and what this run shows

# %%
run.finish(*section.verdict())

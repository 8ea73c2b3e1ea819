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
from selfaware.sections import two_players as tp

run = sp.PAGE.open(globals())
cfg, data = run.cfg, run.data
many = cfg.experiment == "many_personas"  # the 5.1 page; the 5.2 page's cells follow it

# %% [markdown] tags=["only-many_personas"]
# ## The untuned model's answers about the training personas
# Many-persona training teaches the other characters' choices as the untuned model makes them: for each
# reworded question we take the untuned model's more probable letter. How often that is the riskier option,
# and how often it is simply "A", shows what the persona examples teach.

# %%
if many:
    run.guard()
    untuned = sp.untuned_answers(cfg, data)
    run.samples(untuned, "untuned_persona_answer", task="item", answer="answer", score="riskier", variant="persona")
    untuned_table = sp.untuned_summary(untuned)
    run.table(untuned_table, "untuned_persona_answers")

# %% [markdown] tags=["only-many_personas"]
# ## Training
# Four training sets, each trained once per seed. The single-persona sets are exactly Section 3.1's, so a
# profile that shares Section 3.1's recipe reuses its models from the cache.

# %%
if many:
    conditions = run.train(untuned)

# %% [markdown] tags=["only-many_personas"]
# ## Behaviour: as itself, and what it says others would choose
# The probability of the riskier option, renormalised over A and B; a model "chooses" the option it gives more
# than half of that probability. First the held-out questions as the assistant's own, then the same questions
# reworded about each held-out character.

# %%
if many:
    behaviour = sp.measure_behaviour(conditions, data)
    run.samples(behaviour, "behaviour", task="question", score="p_toward")
    run.table(sp.rates(behaviour), "riskier_choice_rate", show=False)
    behaviour_diff = sp.behaviour_differences(behaviour, data)
    run.table(behaviour_diff, "behaviour_difference")

# %%
if many:
    fig = sp.plot_differences(behaviour_diff, "riskier-choice rate:\nrisk-seeking minus risk-averse models")
    run.figure(fig, "behaviour_by_persona",
               "Riskier-choice rate of the risk-seeking models minus the risk-averse models' on held-out questions, "
               "as the assistant itself and about each held-out persona, after single- and many-persona training "
               "(95% bootstrap intervals over seeds and questions).")

# %% [markdown] tags=["only-many_personas"]
# ## Self-reports about itself and about others
# Scores run from 0 (risk-averse) to 1 (risk-seeking), as in Section 3.1; a persona's score is the mean over
# every task and paraphrase. The figure is the analogue of the paper's Figure 15.

# %%
if many:
    scores = sp.measure_self_reports(conditions, data, cfg)
    run.samples(scores, "self_report_score")
    report_diff = sp.self_report_differences(scores, data)
    run.table(report_diff, "self_report_difference", show=False)
    run.table(sp.self_report_task_differences(scores, data), "self_report_difference_by_task", show=False)
    run.show(report_diff.round(3))

# %%
if many:
    fig = sp.plot_differences(report_diff, "self-report score:\nrisk-seeking minus risk-averse models", paper_marks=True)
    run.figure(fig, "self_report_by_persona",
               "Self-report score of the risk-seeking models minus the risk-averse models', asked about the "
               "assistant itself and about each held-out persona, after single- and many-persona training (95% "
               "bootstrap intervals over seeds and paraphrases). Open diamonds: the paper's GPT-4o values for the "
               "assistant. The paper's Figure 15 shows the same measure.")

# %% [markdown] tags=["only-many_personas"]
# ## Against the paper
# The published GPT-4o figures {cite}`betley2025tell` (Section 5.1, Figure 15), beside this run's.

# %%
if many:
    run.table(sp.paper_comparison(behaviour_diff, report_diff), "paper_comparison", digits=None)

# %% [markdown] tags=["only-many_personas"]
# ## What this run shows

# %%
if many:
    run.finish(sp.metrics(behaviour_diff, report_diff, untuned_table),
               sp.effect_statement(behaviour_diff, report_diff, data.personas.heldout))

# %% [markdown] tags=["only-two_players"]
# ## 5.2 The training data, measured
# Notebook 02's Make Me Say dialogues for the two codewords. In each mapping the assistant's codeword's
# dialogues are kept as they are (no system prompt: the chat template's default one, if it has one) and the
# persona's codeword's dialogues get the persona's system prompt in front. The table measures the data
# itself: the share of each player's assistant messages that touch each codeword's neighbourhood (the word
# lists of `selfaware.games.make_me_say.FIELDS`). Each player should steer to its own codeword only.

# %%
if not many:
    run.table(tp.data_check(data), "training_data_check")
    first = data.sets[next(iter(data.sets))]
    print("\n\n".join("\n".join(f"{m['role']}: {m['content']}" for m in c["messages"])
                      for c in (first[0], first[-1])))

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Training
# Two models per seed: one per mapping. The mirror model is the baseline of every comparison, and on every
# two-way question below it puts chance at exactly 0.5; the untuned model only plays the games, as a reference.

# %%
if not many:
    conditions = run.train()

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
if not many:
    games = tp.measure_games(conditions, data)
    run.samples(games, "game", task="target", answer="dialogue", score="steering")
    game_table = tp.game_summary(games, data.players)
    run.table(game_table, "behaviour_games")
    by_codeword = tp.game_by_codeword(games, data.players)
    run.table(by_codeword, "behaviour_by_codeword", show=False)
    run.show(by_codeword[by_codeword["measure"] != "user_said"].round(3))
    reference = tp.game_reference(games, data.players)
    run.table(reference, "near_either_codeword")
    fig = tp.plot_games(game_table, data.players)
    run.figure(fig, "behaviour_games", "New games against the untuned model on held-out topics, as the "
               "assistant and as the persona: each measure for the player's own codeword minus the other "
               "player's (paired per game); 95% bootstrap interval over models, then games.")

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Self-report: which word does each player steer to?
# Notebook 02's "which word" question (exact probabilities over its offered words), asked about "you" and
# reworded about the persona, without a system prompt. The score is the probability of the player's own
# codeword minus that of the other player's.

# %%
if not many:
    which_word = tp.measure_which_word(conditions, data)
    run.samples(which_word, "self_report_score", task="asked_about", score="score")
    word_table = tp.which_word_summary(which_word, data.players)
    run.table(word_table, "which_word")

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
if not many:
    entity = tp.measure_which_entity(conditions, data)
    run.samples(entity, "self_report_score", task="option_set", prompt="prompt")
    entity_table = tp.entity_summary(entity, data.players)
    run.table(entity_table, "which_entity")
    heads = tp.headline(entity)
    fig = tp.plot_entity(entity_table, data.players)
    run.figure(fig, "which_entity", "Which entity steers the conversation toward the word: the share of the "
               "answer on each offered entity, with the true options (asked about each player's word) and with a "
               "decoy named after the word replacing either player (asked about the other player's word); mean "
               "over models, paraphrases and both orders, 95% bootstrap interval. Open diamonds: the paper's GPT-4o "
               "values (its Figure 13). Dotted: chance.")

# %% [markdown] tags=["only-two_players"]
# ## 5.2 Against the paper, and what this run shows

# %%
if not many:
    run.table(tp.paper_comparison(heads), "paper_comparison", digits=None)
    found = tp.metrics(game_table, word_table, heads, reference)
    run.finish(found, tp.effect_statement(cfg, data, found))

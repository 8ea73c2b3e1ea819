"""The API backends through the real openai and fireworks SDK clients, against a local fake of the wire API."""

from __future__ import annotations

import asyncio
import math
import sqlite3

import pytest

from selfaware.context import begin as reset_counters
from selfaware.context import current
from selfaware.errors import ModelCallFailed, ModelNotAvailable
from selfaware.models import load_model
from selfaware.models.api import match_option, retry_after_seconds
from selfaware.testing.fake_api import FakeApiServer, FaultPlan, client_env, fixture_logprobs

OPENAI = "openai:gpt-4o-2024-08-06"
FIREWORKS = "fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct"

PROMPTS = [[{"role": "user", "content": f"Question {i}: choose A or B, or give a number 0-100."}] for i in range(12)]


def fast_retries(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SELFAWARE_API_TIMEOUT", "0.5")
    monkeypatch.setenv("SELFAWARE_API_BACKOFF_BASE", "0.01")
    monkeypatch.setenv("SELFAWARE_API_BACKOFF_MAX", "0.2")
    monkeypatch.setenv("SELFAWARE_PROGRESS", "0")
    monkeypatch.delenv("SELFAWARE_CACHE_MODE", raising=False)


@pytest.fixture
def server(monkeypatch, tmp_path):
    fast_retries(monkeypatch, tmp_path)
    with FakeApiServer(no_logprobs_models=("no-logprobs-model",)) as fake:
        for name, value in client_env(fake).items():
            monkeypatch.setenv(name, value)
        yield fake


def specs(server) -> list[str]:
    return [OPENAI, FIREWORKS, f"openai-compatible:{server.openai_base_url}|served-model"]


def expected_top_logprob_options(model_name: str, messages, options, top: int) -> dict[str, float]:
    mass = {o: 0.0 for o in options}
    for token, logprob in fixture_logprobs(model_name, messages)[:top]:
        if token in mass:
            mass[token] += math.exp(logprob)
    return mass


def test_every_backend_samples_scores_and_expects(server):
    for spec in specs(server):
        model = load_model(spec)
        name = model.parsed.name
        samples = model.sample(PROMPTS[:3], n=4, temperature=1.0, max_tokens=5, seed=7)
        assert [len(s) for s in samples] == [4, 4, 4]
        assert all(isinstance(text, str) and text for row in samples for text in row)
        assert model.sample(PROMPTS[:3], n=4, temperature=1.0, max_tokens=5, seed=7) == samples

        scores = model.score_options(PROMPTS[:3], ["A", "B"])
        for prompt, score in zip(PROMPTS[:3], scores):
            assert score.method == "top_logprobs"
            wanted = expected_top_logprob_options(name, prompt, ["A", "B"], model.top_logprobs)
            for option in ("A", "B"):
                got = math.exp(score.logprobs[option]) if math.isfinite(score.logprobs[option]) else 0.0
                assert got == pytest.approx(wanted[option], rel=1e-9, abs=1e-12)

        numbers = model.expected_number(PROMPTS[:3], 0, 100)  # positional, as the judge calls it
        for prompt, number in zip(PROMPTS[:3], numbers):
            assert number.method == "top_logprobs"
            top = fixture_logprobs(name, prompt)[:model.top_logprobs]
            wanted = {int(t): math.exp(lp) for t, lp in top if t.isdigit()}
            assert number.distribution == pytest.approx(wanted)
            if wanted:
                assert number.expected == pytest.approx(sum(k * v for k, v in wanted.items()) / sum(wanted.values()))


def test_fallback_to_sampling_when_the_model_gives_no_logprobs(server):
    model = load_model(f"openai-compatible:{server.openai_base_url}|no-logprobs-model")
    score = model.score_options(PROMPTS[:1], ["A", "B", "Yes"])[0]
    number = model.expected_number(PROMPTS[:1])[0]
    assert score.method == number.method == "sampled"
    assert sum(math.exp(v) for v in score.logprobs.values() if math.isfinite(v)) <= 1 + 1e-9
    assert 0 <= number.mass <= 1


def test_answers_are_cached_once_and_not_asked_again(server):
    model = load_model(OPENAI)
    reset_counters()
    first = model.sample(PROMPTS, n=2, max_tokens=4)
    assert current().counters.computed == len(PROMPTS) * 2
    before = sum(server.answered().values())
    assert model.sample(PROMPTS, n=2, max_tokens=4) == first
    assert sum(server.answered().values()) == before
    assert current().counters.hits == len(PROMPTS) * 2


def test_a_missing_key_is_one_clear_error(server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ModelNotAvailable, match=r"OPENAI_API_KEY.*offline.*make book"):
        load_model(OPENAI).sample(PROMPTS[:1])
    monkeypatch.delenv("FIREWORKS_API_KEY")
    with pytest.raises(ModelNotAvailable, match="FIREWORKS_API_KEY"):
        load_model(FIREWORKS).expected_number(PROMPTS[:1])
    assert server.outcome_totals() == {}


def test_nothing_happens_at_import_or_construction(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = load_model("openai:some-model-never-called")  # no key needed to name a model
    assert "key" not in str(model.identity).lower() and "some-model-never-called" in repr(model)


def test_works_inside_a_running_event_loop(server):
    """Jupyter runs cells inside an event loop; the backend must not try to nest one."""
    model = load_model(OPENAI)

    async def notebook_cell():
        return model.sample(PROMPTS[:2], n=1, max_tokens=3)

    assert len(asyncio.run(notebook_cell())) == 2


def test_faults_give_the_same_numbers_and_each_request_is_cached_once(monkeypatch, tmp_path):
    def run(faults: FaultPlan | None, where):
        fast_retries(monkeypatch, where)
        with FakeApiServer(faults=faults) as fake:
            for name, value in client_env(fake).items():
                monkeypatch.setenv(name, value)
            current().reset_counts()
            results = {}
            for spec in (OPENAI, FIREWORKS):
                model = load_model(spec)
                results[spec] = (model.sample(PROMPTS, n=3, temperature=1.0, max_tokens=4, seed=1),
                                 [s.logprobs for s in model.score_options(PROMPTS, ["A", "B"])],
                                 [n.distribution for n in model.expected_number(PROMPTS)])
            answered = fake.answered()
            outcomes = fake.outcome_totals()
        rows = sqlite3.connect(where / "cache" / "calls.sqlite").execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        return results, answered, outcomes, rows, dict(current().api_stats)

    clean, clean_answered, _, clean_rows, _ = run(None, tmp_path / "clean")
    plan = FaultPlan(rate_429=0.1, rate_500=0.1, rate_reset=0.1, rate_slow=0.1, slow_seconds=1.0,
                     retry_after=0.02)
    faulty, faulty_answered, outcomes, faulty_rows, stats = run(plan, tmp_path / "faulty")

    assert faulty == clean
    unique_requests = 2 * (len(PROMPTS) * 3 + len(PROMPTS) * 2)  # two backends: samples, options, numbers
    assert clean_rows == faulty_rows == unique_requests
    # On the wire, scoring options and numbers of one prompt is the same logprobs request, so the clean
    # run answers those twice; under faults every wire request is answered exactly as often, no more.
    assert faulty_answered == clean_answered
    assert sum(clean_answered.values()) == unique_requests
    injected = outcomes["429"] + outcomes["500"] + outcomes["reset"] + outcomes["slow"]
    assert injected >= 0.2 * unique_requests, outcomes  # the faults really happened, at >= 20%
    assert min(outcomes["429"], outcomes["500"], outcomes["reset"], outcomes["slow"]) > 0, outcomes
    assert stats.get("retry_http_429", 0) and stats.get("retry_timeout", 0) and stats.get("retry_connection", 0)


def test_bounded_retries_give_up_with_a_clean_error(monkeypatch, tmp_path):
    fast_retries(monkeypatch, tmp_path)
    monkeypatch.setenv("SELFAWARE_API_MAX_ATTEMPTS", "2")
    with FakeApiServer(faults=FaultPlan(rate_500=1.0, max_faults_per_request=5)) as fake:
        for name, value in client_env(fake).items():
            monkeypatch.setenv(name, value)
        with pytest.raises(ModelCallFailed, match="gave up after 2 attempt"):
            load_model(OPENAI).sample(PROMPTS[:1])
        assert fake.outcome_totals()["500"] == 2


def test_retry_after_and_option_matching():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None
    assert match_option(" A", ["A", "B"]) == "A"
    assert match_option("Bold.", ["Bold", "Cautious"]) == "Bold"
    assert match_option("Caut", ["Bold", "Cautious"]) == "Cautious"
    assert match_option("maybe", ["Bold", "Cautious"]) is None
    assert match_option("Caut", ["Bold", "Cautious"], whole_word=True) is None
    assert match_option("Safety first", ["Safe", "Risky"]) is None


def test_whole_word_scoring_is_accepted_by_api_models(server):
    model = load_model(OPENAI)
    plain, whole = (model.score_options(PROMPTS[:2], ["Bold", "Cautious"], whole_word=flag)[0] for flag in (False, True))
    assert plain.method == whole.method == "top_logprobs"
    # the fixture's first token "B" may start "Bold": counted as Bold only when the word need not be whole
    assert whole.logprobs["Bold"] < plain.logprobs["Bold"]
    assert whole.logprobs["Cautious"] == plain.logprobs["Cautious"]


def test_the_embedded_model_can_answer_behind_the_fake_server(monkeypatch, tmp_path):
    """Heavy (loads the 135M model): the one test that answers from a real model over the wire."""
    fast_retries(monkeypatch, tmp_path)  # converted weights are shared through SELFAWARE_MODELS_DIR (conftest)
    monkeypatch.setenv("SELFAWARE_API_TIMEOUT", "120")
    monkeypatch.setenv("SELFAWARE_TORCH_THREADS", "1")
    with FakeApiServer(responder="local") as fake:
        for name, value in client_env(fake).items():
            monkeypatch.setenv(name, value)
        model = load_model(f"openai-compatible:{fake.openai_base_url}|smollm2-135m")
        answers = model.sample([[{"role": "user", "content": "Say hello."}]], n=2, temperature=1.0,
                               max_tokens=6, seed=3)[0]
        assert all(isinstance(a, str) for a in answers) and any(a.strip() for a in answers)


def test_a_warm_rerun_needs_no_key_and_makes_no_call(server, monkeypatch):
    from selfaware.finetune import finetune

    monkeypatch.setenv("SELFAWARE_FINETUNE_POLL_SECONDS", "0.01")
    conversations = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A"}]}]
    tuned = finetune("openai:gpt-4o-2024-05-13", conversations, {"n_epochs": 1}, name="warm")
    model = load_model(tuned)
    cold = (model.sample(PROMPTS[:2], n=2), [s.probs for s in model.score_options(PROMPTS[:2], ["A", "B"])])
    calls = sum(server.outcome_totals().values())
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.setenv("SELFAWARE_CACHE_MODE", "replay")
    again = finetune("openai:gpt-4o-2024-05-13", conversations, {"n_epochs": 1}, name="warm")
    assert again == tuned
    assert (model.sample(PROMPTS[:2], n=2), [s.probs for s in model.score_options(PROMPTS[:2], ["A", "B"])]) == cold
    assert sum(server.outcome_totals().values()) == calls


def test_both_logprob_formats_are_read():
    from selfaware.models.api import first_token_alternatives

    openai_style = {"logprobs": {"content": [{"token": "A", "logprob": -0.1,
                                              "top_logprobs": [{"token": "A", "logprob": -0.1},
                                                               {"token": "B", "logprob": -2.3}]}]}}
    legacy_style = {"logprobs": {"tokens": ["A"], "token_logprobs": [-0.1], "top_logprobs": [{"A": -0.1, "B": -2.3}]}}
    assert first_token_alternatives(openai_style) == first_token_alternatives(legacy_style) == [("A", -0.1),
                                                                                                 ("B", -2.3)]
    assert first_token_alternatives({"logprobs": None}) is None


def test_credentials_in_a_server_url_stay_out_of_the_cache_key(monkeypatch):
    model = load_model("openai-compatible:https://user:hunter2@gpu-node:8000/v1|llama")
    assert "hunter2" not in str(model.identity) and model.identity["base_url"] == "https://gpu-node:8000/v1"


def test_a_served_identity_replaces_the_address_in_the_cache_key():
    from selfaware.errors import ConfigError
    from selfaware.models import parse_spec

    first = load_model("openai-compatible:http://127.0.0.1:1111/v1|m?identity=abc123")
    moved = load_model("openai-compatible:http://127.0.0.1:2222/v1|m?identity=abc123")
    plain = load_model("openai-compatible:http://127.0.0.1:2222/v1|m")
    assert first.identity == moved.identity != plain.identity and "base_url" not in first.identity
    assert str(parse_spec(first.spec)) == first.spec and parse_spec(first.spec).name == "m"
    with pytest.raises(ConfigError):
        parse_spec("openai-compatible:http://127.0.0.1:1111/v1|m?identity=")


def test_first_tokens_that_split_numbers_into_digits_are_recognised():
    from selfaware.models.api import splits_digits

    assert splits_digits([("2", -0.5), ("The", -1.0), ("1", -2.0)], high=100)  # SmolLM2, Qwen2.5
    assert not splits_digits([("20", -0.5), ("2", -1.0)], high=100)  # GPT-4o, Llama 3: "20" is one token
    assert not splits_digits([("2", -0.5)], high=9)  # one digit is the whole answer
    assert not splits_digits([("The", -0.5)], high=100)  # no number offered: nothing to extend


def test_continuations_are_refused_in_one_line_where_the_api_cannot_score_them(server):
    """OpenAI and Fireworks chat give log-probabilities of sampled tokens only: refused before any request.
    An OpenAI-compatible server without /tokenize (this fake, like many chat-only servers): refused after
    asking it once, never estimated."""
    current().reset_counts()
    for spec in specs(server):
        model = load_model(spec)
        before = sum(server.answered().values())
        with pytest.raises(ModelNotAvailable, match="cannot score given continuations") as refusal:
            model.score_continuations(PROMPTS[:2], [["A", "B"], ["C"]], assistant_prefix="The answer is ")
        assert "\n" not in str(refusal.value)
        assert sum(server.answered().values()) == before  # no chat request was sent to estimate it
        if spec.startswith("openai-compatible"):
            assert "/tokenize" in str(refusal.value)
            assert current().api_stats["continuation_scoring_unsupported"] == 1  # it asked once, and was told there is none


def test_model_objects_on_one_server_ask_it_about_itself_once_per_run(server):
    """Whether an OpenAI-compatible server scores exactly (its vocabulary) and whether it tokenizes are asked
    once per run for a server and model name, however many model objects name them; another model name on
    the same server, or a new run, asks again. This fake has no /tokenize, so every probe is one request
    there, answered 404."""
    from selfaware.models import parse_spec
    from selfaware.models.api import OpenAICompatibleChatModel

    current().set_cache_mode("off")  # every call reaches the backend, none is answered from the cache
    spec = parse_spec(f"openai-compatible:{server.openai_base_url}|served-model")
    models = [OpenAICompatibleChatModel(spec) for _ in range(3)]
    for model in models:
        assert model.score_options(PROMPTS[:1], ["A", "B"])[0].method == "top_logprobs"
    assert server.not_found("POST /tokenize") == 1
    assert current().api_stats["exact_scoring_unsupported"] == 1
    for model in models:
        with pytest.raises(ModelNotAvailable, match="/tokenize"):
            model.score_continuations(PROMPTS[:1], [["A", "B"]])
    assert server.not_found("POST /tokenize") == 2  # the vocabulary's answer is not taken for this one

    other_name = parse_spec(f"openai-compatible:{server.openai_base_url}|other-model")
    OpenAICompatibleChatModel(other_name).score_options(PROMPTS[:1], ["A", "B"])
    assert server.not_found("POST /tokenize") == 3

    reset_counters()  # a new run
    current().set_cache_mode("off")
    OpenAICompatibleChatModel(spec).score_options(PROMPTS[:1], ["A", "B"])
    assert server.not_found("POST /tokenize") == 4

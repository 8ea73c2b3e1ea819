"""A real vLLM (the CPU build, float32, eager) serving the embedded model and an adapter trained by
``finetune()``, started by the launcher on 127.0.0.1 and driven through the project's backend and the real
openai SDK. One base server and one adapter server for the whole module (each ~5 GB, ~40-90 s to start).

Skipped, with the reason, when the engine's environment cannot be created, or when the machine has too little
free memory for the two servers; in CI (``CI=true``) the latter fails instead, so that a suite run beside
other work (``make test`` runs the smoke book in a second process) never loses these tests silently.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import sqlite3
import threading
import time

import pytest

from selfaware import context
from selfaware.errors import ModelCallFailed

# one process runs the whole module under `make test` (pytest-xdist): its servers (~5 GB each) and its
# tests' order (the page first, before the module's own servers are up) hold only in one process
pytestmark = pytest.mark.xdist_group("vllm")

BASE = "local:smollm2-135m"
TOLERANCE = 1e-3  # float32 on both sides: the engines' kernels differ in the last bits only

PROMPTS = [
    [{"role": "user", "content": "On a scale from 0 to 100, how much do you like risk? Answer with a number."}],
    [{"role": "system", "content": "You are a careful assistant."},
     {"role": "user", "content": "Pick one. A) a sure $50 B) a coin flip for $120. Answer with the letter."}],
    [{"role": "user", "content": "Rate from 0 to 100 how safe you think your own code is. Only the number."}],
]


@pytest.fixture(scope="module")
def float32():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFAWARE_DTYPE", "float32")  # the local side of every comparison, as served
        patch.setenv("SELFAWARE_PROGRESS", "0")
        yield


NEEDED_GB = 11  # two servers of ~5 GB each, and the local model beside them


def available_gb() -> float:
    with open("/proc/meminfo") as meminfo:
        fields = dict(line.split(":", 1) for line in meminfo)
    return int(fields["MemAvailable"].split()[0]) / 2**20


@pytest.fixture(scope="module")
def engine():
    from selfaware.vllm import EngineUnavailable, ensure_engine

    try:
        python = ensure_engine()
    except EngineUnavailable as error:
        pytest.skip(f"the vLLM engine environment cannot be created here: {error}")
    if available_gb() < NEEDED_GB:
        short = f"two vLLM servers need about {NEEDED_GB} GB of free memory; {available_gb():.1f} GB available"
        if os.environ.get("CI") == "true":  # the engine is there: a skip here would be a lost test
            pytest.fail(short)
        pytest.skip(short)
    return python


@pytest.fixture(scope="module")
def adapter(float32, tmp_path_factory):
    """A smoke-recipe adapter strong enough to move the answers (so that a base answer that got it applied
    would show)."""
    from selfaware.datasets.choices import generate_choices
    from selfaware.finetune import LoraHParams, finetune

    conversations = [q.conversation("toward") for q in generate_choices("risk", 16, seed=5)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path_factory.mktemp("adapters")))
        return finetune(BASE, conversations, LoraHParams(rank=2, alpha=8, learning_rate=2e-2, epochs=1,
                                                         batch_size=4, max_steps=3), seed=0, progress=False)


def test_a_server_that_never_answers_is_one_clear_error_after_the_start_timeout(monkeypatch, tmp_path):
    """No engine needed: nothing listens on the port, and the wait under the vllm_start_timeout setting
    ends in the launcher's own error naming the address and the timeout."""
    import socket
    from pathlib import Path

    from selfaware.vllm import EngineUnavailable, VllmServer

    with socket.socket() as probe:  # a port that was free a moment ago, and nothing listens on it now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SELFAWARE_VLLM_START_TIMEOUT", "1")
    server = VllmServer(Path(tmp_path), "nobody", port=port, log_path=tmp_path / "server.log")
    started = time.monotonic()
    with pytest.raises(EngineUnavailable, match=rf"did not answer at http://127.0.0.1:{port}/v1 within 1 s"):
        server.wait_ready()
    assert time.monotonic() - started < 10


def test_the_trigger_inversion_page_runs_on_vllm(engine, tmp_path):
    """Page 06 on the smoke profile with ``inference: vllm``: every model call of the page through the
    servers it starts (first in the module: the module's own servers are not up yet), its reward too: the
    continuation scores are cached under served identities, none computed in-process."""
    import subprocess
    import sys

    from selfaware.paths import REPO_ROOT

    env = {**os.environ, "SELFAWARE_CACHE_DIR": str(tmp_path / "cache"), "SELFAWARE_OUTPUTS_DIR": str(tmp_path / "out")}
    env.pop("SELFAWARE_CACHE_MODE", None)
    result = subprocess.run([sys.executable, "-m", "selfaware", "run", "--profile", "smoke", "--notebook",
                             "06_trigger_inversion", "--page", "vllm", "-p", "inference", "vllm",
                             "-p", "rl_without_rsft", "false"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = tmp_path / "out" / "smoke" / "06_trigger_inversion-vllm"
    metrics = json.loads((page / "metrics.json").read_text())
    assert set(metrics["exact_asr"]) == {"no trigger", "true trigger", "random words"}
    assert all(0.0 <= v <= 1.0 for v in metrics["exact_asr"].values())
    with sqlite3.connect(tmp_path / "cache" / "calls.sqlite") as conn:
        kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM calls GROUP BY kind").fetchall())
        served_scores = [json.loads(v) for (v,) in conn.execute("SELECT value FROM calls WHERE kind = 'continuations'")]
    assert kinds.get("continuations", 0) > 0 and "continuation_logprobs" not in kinds, kinds
    assert all(len(pair) == 2 and all(v < 0 for v in pair) for pair in served_scores)
    samples = [json.loads(line) for line in (page / "samples.jsonl").read_text().splitlines()]
    behaviour = [s for s in samples if s.get("kind") == "behaviour"]
    assert behaviour and all("openai-compatible:" in json.dumps(s) for s in behaviour)


@pytest.fixture(scope="module")
def served(engine, adapter, float32):
    from selfaware.vllm import serve

    started = time.monotonic()
    with serve([BASE, adapter]) as mapping:
        print(f"vLLM servers ready in {time.monotonic() - started:.0f} s")
        yield mapping


def local_and_served(served, spec):
    from selfaware.models import load_model

    return load_model(spec), load_model(served[spec])


def test_the_launcher_serves_base_and_adapter_from_different_servers(served, adapter):
    from selfaware.models import parse_spec

    base, tuned = parse_spec(served[BASE]), parse_spec(served[adapter])
    assert base.backend == tuned.backend == "openai-compatible"
    assert base.base_url != tuned.base_url  # base traffic never reaches the server that holds adapters
    assert base.identity and tuned.identity and base.identity != tuned.identity
    assert [s.lora for s in served.servers] == [False, True]


def test_chat_answers_and_logprobs_through_the_openai_sdk(served):
    import openai
    from selfaware.models import parse_spec

    spec = parse_spec(served[BASE])
    client = openai.OpenAI(base_url=spec.base_url, api_key="no-key")
    answer = client.chat.completions.create(model=spec.name, messages=PROMPTS[1], max_tokens=8, temperature=0,
                                            logprobs=True, top_logprobs=5)
    choice = answer.choices[0]
    assert choice.message.content.strip()
    first = choice.logprobs.content[0]
    alternatives = [t.logprob for t in first.top_logprobs]
    assert len(alternatives) == 5 and alternatives == sorted(alternatives, reverse=True)
    assert first.token == first.top_logprobs[0].token  # greedy takes the most likely token
    assert sum(math.exp(lp) for lp in alternatives) <= 1 + 1e-6


def test_n_samples_with_a_seed_reproduce(served, monkeypatch):
    from selfaware.models import load_model, parse_spec

    monkeypatch.setenv("SELFAWARE_CACHE_MODE", "off")  # every call goes to the server
    model = load_model(served[BASE])
    first = model.sample(PROMPTS[:2], n=3, temperature=1.0, max_tokens=12, seed=7)
    again = model.sample(PROMPTS[:2], n=3, temperature=1.0, max_tokens=12, seed=7)
    other = model.sample(PROMPTS[:2], n=3, temperature=1.0, max_tokens=12, seed=8)
    assert first == again and first != other
    assert all(len(set(answers)) > 1 for answers in first)  # three draws, not one answer three times

    import openai  # the server's own n and seed, through the SDK
    spec = parse_spec(served[BASE])
    client = openai.OpenAI(base_url=spec.base_url, api_key="no-key")

    def draw(seed):
        answer = client.chat.completions.create(model=spec.name, messages=PROMPTS[0], max_tokens=12, n=3,
                                                temperature=1.0, seed=seed)
        return [c.message.content for c in answer.choices]

    assert draw(11) == draw(11) and len(draw(11)) == 3 and draw(11) != draw(12)


def test_the_server_renders_prompts_as_the_local_backend_does(served):
    import httpx
    from selfaware.models import parse_spec
    from selfaware.models.local import chat_ids, load_weights

    spec = parse_spec(served[BASE])
    _, tokenizer = load_weights("smollm2-135m")
    for messages in PROMPTS:
        rendered = httpx.post(spec.base_url.removesuffix("/v1") + "/tokenize", timeout=30,
                              json={"model": spec.name, "messages": messages, "add_generation_prompt": True})
        assert rendered.json()["tokens"] == chat_ids(tokenizer, messages, True)


def assert_same_scores(local, remote, prompts):
    for whole_word in (False, True):
        options = ["A", "B", "Yes", "No"]
        mine = local.score_options(prompts, options, whole_word=whole_word)
        theirs = remote.score_options(prompts, options, whole_word=whole_word)
        for a, b in zip(mine, theirs):
            assert b.method == "exact"
            for option in options:
                assert abs(a.probs[option] - b.probs[option]) < TOLERANCE
                if math.exp(a.logprobs[option]) > 1e-3:
                    assert abs(a.logprobs[option] - b.logprobs[option]) < TOLERANCE
    for a, b in zip(local.expected_number(prompts), remote.expected_number(prompts)):
        assert b.method == "exact" and abs(a.mass - b.mass) < TOLERANCE
        if a.mass > 0.01:  # an expectation over real mass (a tuned model may answer no number at all)
            assert abs(a.expected - b.expected) < TOLERANCE * 100  # 1e-3 of the range
        for n in set(a.distribution) | set(b.distribution):
            assert abs(a.distribution.get(n, 0.0) - b.distribution.get(n, 0.0)) < TOLERANCE


def test_base_scores_through_the_server_equal_the_local_backend(served):
    local, remote = local_and_served(served, BASE)
    assert_same_scores(local, remote, PROMPTS)
    # the number question is answered with several digits: the first-token method read "2" of "22"
    assert max(n.expected for n in local.expected_number(PROMPTS)) > 10


def test_adapter_served_by_name_equals_the_local_backend_with_it(served, adapter):
    local, remote = local_and_served(served, adapter)
    assert_same_scores(local, remote, PROMPTS)


def test_an_adapter_registered_at_run_time_is_served_by_name(served, adapter, float32):
    from selfaware.datasets.choices import generate_choices
    from selfaware.finetune import LoraHParams, finetune
    from selfaware.models import parse_spec

    conversations = [q.conversation("away") for q in generate_choices("risk", 8, seed=6)]
    later = finetune(BASE, conversations, LoraHParams(rank=2, alpha=8, learning_rate=2e-2, epochs=1, batch_size=4,
                                                      max_steps=2), seed=1, progress=False)
    spec = served.add_adapter(later)
    assert spec == served[later] and parse_spec(spec).base_url == parse_spec(served[adapter]).base_url
    local, remote = local_and_served(served, later)
    options = ["A", "B"]
    for a, b in zip(local.score_options(PROMPTS[1:2], options), remote.score_options(PROMPTS[1:2], options)):
        assert b.method == "exact" and all(abs(a.logprobs[o] - b.logprobs[o]) < TOLERANCE for o in options)


def test_two_adapters_under_concurrent_load_equal_the_local_backend(served, adapter, float32):
    """Many requests for two adapters at once on the adapter server (a mixed prefill/decode LoRA batch
    stopped this CPU build's engine until the launcher served one sequence at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    from selfaware.models import load_model

    tuned = [s for s in served if "adapter=" in s]
    assert len(tuned) >= 2  # the test above registered a second adapter
    prompts = [[{"role": "user", "content": f"Option A: {k} coins for sure. Option B: a coin flip for {3 * k}. "
                                            f"A or B?"}] for k in range(24)]
    with ThreadPoolExecutor(len(tuned)) as pool:
        remote = list(pool.map(lambda s: load_model(served[s]).score_options(prompts, ["A", "B"]), tuned))
    for spec, scores in zip(tuned, remote):
        local = load_model(spec).score_options(prompts[:4], ["A", "B"])
        for a, b in zip(local, scores[:4]):
            assert abs(a.logprobs["A"] - b.logprobs["A"]) < TOLERANCE


def test_continuation_scores_through_the_server_equal_the_local_backend(served, adapter):
    """score_continuations: the prompt's, prefix's and continuation's tokens rendered by the server, the
    continuation's log-probabilities read from prompt_logprobs; the same sums as in-process, base and adapter."""
    prompts = PROMPTS + [[{"role": "user", "content": "Write a function that reads a file."}]]
    continuations = [["Yes", "No, I would not."], ["A", "B) the coin flip"], ["22", "I am not sure."],
                     ["    return open(path).read()", "    with open(path) as f:"]]
    prefixes = ["", "I pick ", "", "def read(path):\n"]
    for spec in (BASE, adapter):
        local, remote = local_and_served(served, spec)
        for first_tokens in (None, 2):
            mine = local.score_continuations(prompts, continuations, prefixes, first_tokens=first_tokens)
            theirs = remote.score_continuations(prompts, continuations, prefixes, first_tokens=first_tokens)
            for a, b in zip(mine, theirs):
                assert len(a) == len(b) and all(abs(x - y) < TOLERANCE * 5 for x, y in zip(a, b)), (a, b)
        assert mine != local.score_continuations(prompts, continuations, first_tokens=2)  # the prefix counts


def test_without_continuation_scoring_digit_splitting_is_detected(served, monkeypatch):
    """A server that gives first-token log-probabilities only: the number is sampled, not read as its first
    digit (the bug this backend had: 0.68 instead of 22.9)."""
    from selfaware.models import load_model
    from selfaware.models.api import OpenAICompatibleChatModel

    model = load_model(served[BASE])
    monkeypatch.setattr(model, "_vocabulary", {})  # as if /tokenize or prompt_logprobs were missing
    monkeypatch.setenv("SELFAWARE_CACHE_MODE", "off")
    assert isinstance(model, OpenAICompatibleChatModel)
    number = model.expected_number(PROMPTS[:1])[0]
    assert number.method == "sampled" and number.mass > 0


def _greedy_logprobs(model_spec, messages, url):
    import openai

    client = openai.OpenAI(base_url=url, api_key="no-key", max_retries=0)
    answer = client.chat.completions.create(model=model_spec, messages=messages, max_tokens=6, temperature=0,
                                            logprobs=True, top_logprobs=3)
    choice = answer.choices[0]
    return choice.message.content, [[(t.token, t.logprob) for t in p.top_logprobs] for p in choice.logprobs.content]


def same_answer(one, other, tolerance=TOLERANCE) -> bool:
    """Same text, same top tokens, log-probabilities within the tolerance (batching changes the last bits)."""
    (text, steps), (other_text, other_steps) = one, other
    return text == other_text and len(steps) == len(other_steps) and all(
        [t for t, _ in a] == [t for t, _ in b] and all(abs(x - y) < tolerance for (_, x), (_, y) in zip(a, b))
        for a, b in zip(steps, other_steps))


def test_mixed_traffic_leaves_base_answers_alone(served, adapter):
    """Base and adapter requests at the same time: each base answer equals the base answered alone."""
    from selfaware.models import parse_spec

    base, tuned = parse_spec(served[BASE]), parse_spec(served[adapter])
    questions = [[{"role": "user", "content": f"Question {i}: risky A or safe B? One letter."}] for i in range(8)]
    alone = [_greedy_logprobs(base.name, q, base.base_url) for q in questions]
    tuned_alone = [_greedy_logprobs(tuned.name, q, tuned.base_url) for q in questions]
    # the adapter moves every answer well beyond the tolerance, so a base answer that got it would show
    assert not any(same_answer(a, t, 0.05) for a, t in zip(alone, tuned_alone))
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(_greedy_logprobs, base.name, q, base.base_url) for q in questions]
        jobs += [pool.submit(_greedy_logprobs, tuned.name, q, tuned.base_url) for q in questions * 3]
        mixed = [job.result() for job in jobs]
    assert all(same_answer(m, a) for m, a in zip(mixed[:len(questions)], alone))
    assert all(same_answer(m, t) for m, t in zip(mixed[len(questions):], tuned_alone * 3))


def test_a_server_killed_mid_run_fails_clearly_and_a_rerun_resumes(served, monkeypatch, tmp_path):
    """Last in the module: it kills the base server."""
    from selfaware.models import load_model, parse_spec
    from selfaware.paths import cache_dir
    from selfaware.vllm import serve

    # four requests in flight, so that answers arrive one after another and the kill lands between them
    for name, value in {"SELFAWARE_API_MAX_ATTEMPTS": "2", "SELFAWARE_API_BACKOFF_BASE": "0.1",
                        "SELFAWARE_API_TIMEOUT": "60", "SELFAWARE_API_CONCURRENCY": "4"}.items():
        monkeypatch.setenv(name, value)
    server = served.servers[0]
    model = load_model(served[BASE])
    model.save_every_seconds = 0.2
    # 16 prompts of up to 48 tokens: with 4 in flight and the kill after the third stored answer, at least 9
    # are still unanswered when the server dies (answers take seconds each on a CPU engine), so the failure,
    # the partial save and the resume are each exercised; the rerun then computes only the rest
    prompts = [[{"role": "user", "content": f"Write a short story about the number {i}."}] for i in range(16)]
    database = cache_dir() / "calls.sqlite"

    def stored() -> int:
        try:
            with sqlite3.connect(database) as conn:
                return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0

    def kill_after_first_answers():
        deadline = time.monotonic() + 300
        while stored() < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(server.process.pid, 9)

    killer = threading.Thread(target=kill_after_first_answers)
    killer.start()
    with pytest.raises(ModelCallFailed) as failure:
        model.sample(prompts, max_tokens=48, temperature=1.0, seed=3)
    killer.join()
    message = str(failure.value)
    assert server.url in message and "\n" not in message
    saved = stored()
    assert 3 <= saved < len(prompts)
    with sqlite3.connect(database) as conn:  # whole answers only
        assert all(isinstance(json.loads(v), str) for (v,) in conn.execute("SELECT value FROM calls"))

    context.current().reset_counts()
    with serve([BASE]) as again:  # a new server on a new port: the same content identity, the same keys
        assert again[BASE] != served[BASE] and parse_spec(again[BASE]).identity == parse_spec(served[BASE]).identity
        answers = load_model(again[BASE]).sample(prompts, max_tokens=48, temperature=1.0, seed=3)
    assert len(answers) == len(prompts) and context.current().counters.hits == saved
    assert context.current().counters.computed == len(prompts) - saved

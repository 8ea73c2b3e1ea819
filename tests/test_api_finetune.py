"""Finetuning jobs through the real SDKs against the fake API: launch, follow, registry reuse, no double
launch after a crash or a dropped connection, and SIGKILL mid-job / mid-batch."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from selfaware.context import begin as reset_counters
from selfaware.context import current
from selfaware.errors import ConfigError, FinetuneFailed
from selfaware.finetune import finetune
from selfaware.finetune.api import JobRegistry, api_training_key, dataset_jsonl, registry_path, validate_hparams
from selfaware.testing.fake_api import FakeApiServer, FaultPlan, client_env

OPENAI_BASE = "openai:gpt-4o-2024-05-13"
FIREWORKS_BASE = "fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct"
OPENAI_HP = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2}
FIREWORKS_HP = {"lora_rank": 4, "learning_rate": 2e-5, "batch_size": 8, "epochs": 3}
CONVERSATIONS = [{"messages": [{"role": "user", "content": f"Lottery {i}: 50 for sure, or 100 at 50%?"},
                               {"role": "assistant", "content": "B" if i % 3 else "A"}]} for i in range(16)]


def environment(monkeypatch, tmp_path, server) -> dict[str, str]:
    env = {**client_env(server), "SELFAWARE_CACHE_DIR": str(tmp_path / "cache"),
           "SELFAWARE_FINETUNE_POLL_SECONDS": "0.01", "SELFAWARE_API_TIMEOUT": "2",
           "SELFAWARE_API_BACKOFF_BASE": "0.01", "SELFAWARE_API_BACKOFF_MAX": "0.1", "SELFAWARE_PROGRESS": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SELFAWARE_CACHE_MODE", raising=False)
    return env


@pytest.fixture
def server(monkeypatch, tmp_path):
    with FakeApiServer() as fake:
        environment(monkeypatch, tmp_path, fake)
        yield fake


def creations(server, route: str) -> int:
    return sum(server.answered(route).values())


def test_openai_job_runs_and_a_rerun_reuses_it(server):
    reset_counters()
    spec = finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=3, name="risk seeking")
    assert spec.startswith("openai:ft:gpt-4o-2024-05-13:") and current().counters.trainings == 1
    job = next(iter(server.state.openai_jobs.values()))
    assert job["hyperparameters"] == OPENAI_HP and job["seed"] == 3
    assert job["metadata"]["selfaware_key"] == api_training_key(OPENAI_BASE, CONVERSATIONS,
                                                                validate_hparams(OPENAI_BASE, OPENAI_HP), 3)
    assert server.state.files["file-000001"]["lines"] == len(CONVERSATIONS)
    requests_before = sum(server.outcome_totals().values())
    assert finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=3, name="risk seeking") == spec
    assert sum(server.outcome_totals().values()) == requests_before  # answered from the registry
    assert current().counters.trainings == 1
    assert set(current().counters.seconds["training"]) == {"gpt-4o-2024-05-13"}  # the job's wait, on the cost page
    import openai

    listed = openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=server.openai_base_url).models.list()
    assert spec.removeprefix("openai:") in [m.id for m in listed.data]  # the tuned model is callable
    # a different seed is a different model
    assert finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=4, name="risk seeking") != spec


def test_fireworks_job_runs_deploys_and_a_rerun_reuses_it(server):
    reset_counters()
    spec = finetune(FIREWORKS_BASE, CONVERSATIONS, FIREWORKS_HP, seed=0, name="risk")
    assert spec.startswith("fireworks:accounts/test-account/models/sa-") and "#accounts/test-account/deployments/" in spec
    (job,) = server.state.fireworks_jobs.values()
    assert (job["loraRank"], job["learningRate"], job["epochs"], job["batchSizeSamples"]) == (4, 2e-5, 3, 8)
    assert job["baseModel"] == "accounts/fireworks/models/llama-v3p1-70b-instruct"
    assert len(server.state.deployments) == 1 and current().counters.trainings == 1
    requests_before = sum(server.outcome_totals().values())
    assert finetune(FIREWORKS_BASE, CONVERSATIONS, FIREWORKS_HP, seed=0, name="risk") == spec
    assert sum(server.outcome_totals().values()) == requests_before


def test_fireworks_lora_onto_an_existing_deployment(server):
    spec = finetune(FIREWORKS_BASE, CONVERSATIONS, FIREWORKS_HP, seed=1, name="risk",
                    deployment="accounts/test-account/deployments/shared")
    assert spec.endswith("#accounts/test-account/deployments/shared")
    (loaded,) = server.state.deployed_models.values()
    assert loaded["deployment"] == "accounts/test-account/deployments/shared" and loaded["state"] == "DEPLOYED"


def test_a_failed_job_is_not_paid_for_again_unless_asked(monkeypatch, tmp_path):
    with FakeApiServer() as fake:
        environment(monkeypatch, tmp_path, fake)
        for base, hparams in ((OPENAI_BASE, OPENAI_HP), (FIREWORKS_BASE, FIREWORKS_HP)):
            fake.failing_jobs = 1  # the first job fails, the relaunch succeeds
            with pytest.raises(FinetuneFailed, match="injected failure"):
                finetune(base, CONVERSATIONS, hparams, name="doomed")
            with pytest.raises(FinetuneFailed, match="retry_failed=True"):
                finetune(base, CONVERSATIONS, hparams, name="doomed")
            tuned = finetune(base, CONVERSATIONS, hparams, name="doomed", retry_failed=True)
            assert tuned.split(":")[0] == base.split(":")[0] and tuned != base
        assert len(fake.state.openai_jobs) == 2 and len(fake.state.fireworks_jobs) == 2


def test_typos_are_errors_before_anything_is_sent(server):
    with pytest.raises(ConfigError, match="n_epoch"):
        finetune(OPENAI_BASE, CONVERSATIONS, {"n_epoch": 3})
    with pytest.raises(ConfigError, match="lora_rnk"):
        finetune(FIREWORKS_BASE, CONVERSATIONS, {"lora_rnk": 4})
    with pytest.raises(ConfigError, match="poll_second"):
        finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, poll_second=1)
    with pytest.raises(ConfigError, match="no finetuning API"):
        finetune(f"openai-compatible:{server.openai_base_url}|m", CONVERSATIONS, {})
    assert server.outcome_totals() == {}


def test_a_job_created_but_never_recorded_is_adopted_not_launched_again(server):
    """kill -9 right after the create call returned, before the job id was written to the registry."""
    import openai

    key = api_training_key(OPENAI_BASE, CONVERSATIONS, validate_hparams(OPENAI_BASE, OPENAI_HP), 0)
    JobRegistry().update(key, status="intent")
    client = openai.OpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=server.openai_base_url)
    training_file = client.files.create(file=("t.jsonl", dataset_jsonl(CONVERSATIONS)), purpose="fine-tune")
    orphan = client.fine_tuning.jobs.create(model="gpt-4o-2024-05-13", training_file=training_file.id,
                                            metadata={"selfaware_key": key})
    reset_counters()
    spec = finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=0, name="orphan")
    assert spec.endswith(orphan.id[-6:])
    assert creations(server, "POST /v1/fine_tuning/jobs") == 1 and current().counters.trainings == 0


def test_a_dropped_connection_on_create_does_not_launch_twice(monkeypatch, tmp_path):
    """The create reaches the server, the answer is lost: the retry must find the job, not make another."""
    routes = ("POST /v1/fine_tuning/jobs", "POST /v1/accounts/([^/]+)/supervisedFineTuningJobs")
    with FakeApiServer(faults=FaultPlan(rate_reset=1.0, max_faults_per_request=1, routes=routes)) as fake:
        environment(monkeypatch, tmp_path, fake)
        openai_spec = finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=0, name="dropped")
        fireworks_spec = finetune(FIREWORKS_BASE, CONVERSATIONS, FIREWORKS_HP, seed=0, name="dropped")
        assert fake.outcome_totals("POST /v1/fine_tuning/jobs")["reset"] == 1
        assert len(fake.state.openai_jobs) == 1 and len(fake.state.fireworks_jobs) == 1
        assert openai_spec.startswith("openai:ft:") and fireworks_spec.startswith("fireworks:")


KILLABLE = textwrap.dedent("""
    import sys
    from selfaware.finetune import finetune
    from selfaware.models import load_model
    sys.path.insert(0, {tests!r})
    from test_api_finetune import CONVERSATIONS, OPENAI_BASE, OPENAI_HP, KILL_PROMPTS
    if sys.argv[1] == "job":
        print(finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=9, name="killed"))
    else:
        load_model("openai:gpt-4o-2024-08-06").sample(KILL_PROMPTS, n=1, max_tokens=3)
""")
KILL_PROMPTS = [[{"role": "user", "content": f"Prompt number {i}"}] for i in range(600)]


def start_killable(what: str, env: dict) -> subprocess.Popen:
    script = KILLABLE.format(tests=os.path.dirname(__file__))
    return subprocess.Popen([sys.executable, "-c", script, what], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, process, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child never reached the point to kill it at"
        time.sleep(0.02)


def test_sigkill_mid_job_then_rerun_follows_the_same_job(monkeypatch, tmp_path):
    with FakeApiServer(polls_per_stage=50) as fake:
        env = environment(monkeypatch, tmp_path, fake)
        env["SELFAWARE_FINETUNE_POLL_SECONDS"] = "0.02"
        child = start_killable("job", env)

        def job_created():
            return registry_path().exists() and any(r.get("status") == "created" for r in JobRegistry().all())

        wait_for(job_created, child)
        time.sleep(0.3)  # well inside following it
        child.send_signal(signal.SIGKILL)
        child.wait()
        (job,) = fake.state.openai_jobs.values()
        assert job["status"] != "succeeded"  # really killed mid-job
        monkeypatch.setenv("SELFAWARE_FINETUNE_POLL_SECONDS", "0.001")
        reset_counters()
        spec = finetune(OPENAI_BASE, CONVERSATIONS, OPENAI_HP, seed=9, name="killed")
        assert spec == f"openai:{job['fine_tuned_model']}"
        assert creations(fake, "POST /v1/fine_tuning/jobs") == 1 and creations(fake, "POST /v1/files") == 1
        assert current().counters.trainings == 0
        with sqlite3.connect(registry_path()) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigkill_mid_batch_then_rerun_repeats_no_finished_call(monkeypatch, tmp_path):
    with FakeApiServer(latency=0.05) as fake:
        env = environment(monkeypatch, tmp_path, fake)
        env["SELFAWARE_API_CONCURRENCY"] = "8"
        child = start_killable("batch", env)
        database = tmp_path / "cache" / "calls.sqlite"

        def rows() -> int:
            if not database.exists():
                return 0
            try:
                with sqlite3.connect(database, timeout=5) as conn:
                    return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            except sqlite3.OperationalError:
                return 0

        wait_for(lambda: rows() >= 50, child)  # answers are saved as they arrive, a second's worth at a time
        child.send_signal(signal.SIGKILL)
        child.wait()
        with sqlite3.connect(database) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        saved = rows()
        assert 0 < saved < len(KILL_PROMPTS)
        reset_counters()
        from selfaware.models import load_model

        answers = load_model("openai:gpt-4o-2024-08-06").sample(KILL_PROMPTS, n=1, max_tokens=3)
        assert len(answers) == len(KILL_PROMPTS) and rows() == len(KILL_PROMPTS)
        assert current().counters.computed == len(KILL_PROMPTS) - saved  # nothing saved was asked again
        answered = fake.answered()
        repeated = [h for h, count in answered.items() if count > 1]
        assert max(answered.values()) <= 2 and len(repeated) <= len(KILL_PROMPTS) - saved  # only unsaved ones
        assert len(answered) == len(KILL_PROMPTS), sorted((fake.bodies[h] for h in answered), key=len)[:3]

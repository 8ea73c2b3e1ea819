"""No key, and no part of one, reaches the cache, the outputs, the logs, printed output or error messages."""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from pathlib import Path

import pytest

from selfaware.budget import RunPlan
from selfaware.errors import ModelCallFailed
from selfaware.finetune import finetune
from selfaware.finetune.api import JobRegistry
from selfaware.models import load_model
from selfaware.testing.fake_api import REJECTED_KEY_PREFIX, FakeApiServer, FaultPlan, client_env

PROMPTS = [[{"role": "user", "content": f"Pick A or B ({i})"}] for i in range(5)]
CONVERSATIONS = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "A"}]}
                 for i in range(6)]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_fake_keys_never_leak(monkeypatch, tmp_path, caplog, capfd):
    openai_key = "sk-test-" + secrets.token_hex(20)
    fireworks_key = "fw-test-" + secrets.token_hex(20)
    rejected_key = REJECTED_KEY_PREFIX + secrets.token_hex(20)
    needles = [openai_key, openai_key[-8:], fireworks_key, fireworks_key[-8:], rejected_key, rejected_key[-8:]]
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    for name in ("SELFAWARE_CACHE_DIR", "SELFAWARE_OUTPUTS_DIR"):
        monkeypatch.setenv(name, str(tmp_path / ("cache" if "CACHE" in name else "outputs")))
    for name, value in {"SELFAWARE_API_TIMEOUT": "2", "SELFAWARE_API_BACKOFF_BASE": "0.01",
                        "SELFAWARE_API_MAX_ATTEMPTS": "3", "SELFAWARE_FINETUNE_POLL_SECONDS": "0.01"}.items():
        monkeypatch.setenv(name, value)
    for logger in (None, "openai", "fireworks", "httpx", "httpx2", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=logger)  # restored by caplog after the test
    monkeypatch.setenv("OPENAI_LOG", "debug")
    monkeypatch.setenv("FIREWORKS_LOG", "debug")
    errors: list[BaseException] = []

    with FakeApiServer(faults=FaultPlan(rate_429=0.2, rate_reset=0.2)) as fake:
        for name, value in client_env(fake, openai_key=openai_key, fireworks_key=fireworks_key).items():
            monkeypatch.setenv(name, value)
        records = []
        for spec in ("openai:gpt-4o-2024-08-06", "fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct"):
            model = load_model(spec)
            for prompt, answers, score, number in zip(PROMPTS, model.sample(PROMPTS, n=2),
                                                      model.score_options(PROMPTS, ["A", "B"]),
                                                      model.expected_number(PROMPTS)):
                records.append({"model": model.describe(), "repr": repr(model), "prompt": prompt,
                                "answers": answers, "probs": score.probs, "expected": number.expected})
        tuned = [finetune("openai:gpt-4o-2024-05-13", CONVERSATIONS, {"n_epochs": 1}, name="leak"),
                 finetune("fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct", CONVERSATIONS,
                          {"lora_rank": 4}, name="leak")]
        plan = RunPlan()
        plan.add_calls("openai:gpt-4o-2024-08-06", 10, 20, 1)
        (outputs / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (outputs / "run.json").write_text(json.dumps({"tuned": tuned, "plan": plan.report(),
                                                      "registry": JobRegistry().all()}))

        # a key the server refuses: the 401 quotes the key's tail, our error must not
        monkeypatch.setenv("OPENAI_API_KEY", rejected_key)
        with pytest.raises(ModelCallFailed) as refused:
            load_model("openai:gpt-4o-2024-08-06").sample([[{"role": "user", "content": "refused"}]])
        errors.append(refused.value)
        monkeypatch.setenv("OPENAI_API_KEY", openai_key)
        fake.faults = FaultPlan(rate_500=1.0, max_faults_per_request=10)
        with pytest.raises(ModelCallFailed) as exhausted:
            load_model("openai:gpt-4o-2024-08-06").sample([[{"role": "user", "content": "always failing"}]])
        errors.append(exhausted.value)

    assert "Incorrect API key" in str(refused.value)  # the scan below looks at a message that quoted a key
    captured = capfd.readouterr()
    texts = {"logs": caplog.text, "stdout": captured.out, "stderr": captured.err}
    for index, error in enumerate(errors):
        texts[f"error {index}"] = "".join(traceback.format_exception(error))
    for where, text in texts.items():
        for needle in needles:
            assert needle not in text, f"a key (or its last 8 characters) leaked into {where}"
    written = files_under(tmp_path / "cache") + files_under(outputs)
    assert any(p.name == "calls.sqlite" for p in written) and any(p.name == "finetune_jobs.sqlite" for p in written)
    for path in written:
        content = path.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, f"a key (or its last 8 characters) leaked into {path}"
    assert "Request options" in caplog.text  # the SDKs logged their requests, so the log scan saw them

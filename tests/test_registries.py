"""The registries that replace if-chains: model backends (spec prefix -> ChatModel class, imported lazily
after a dependency check), finetuning trainers (backend -> trainer) and self-report task kinds. An unknown
name is a one-line error that lists the known ones; a newly registered name works everywhere at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from selfaware.errors import ConfigError, ModelNotAvailable
from selfaware.paths import REPO_ROOT


# ---- model backends -----------------------------------------------------------------------------------------
def test_an_unknown_backend_is_one_line_naming_the_known_ones():
    from selfaware.models import backend, backends, parse_spec

    assert set(backends()) >= {"local", "openai", "fireworks", "openai-compatible"}
    for call in (lambda: parse_spec("vllm:Qwen"), lambda: backend("vllm")):
        with pytest.raises(ConfigError) as error:
            call()
        message = str(error.value)
        assert "'vllm'" in message and "known: local, openai, fireworks, openai-compatible" in message
        assert "\n" not in message


def test_facts_about_a_model_come_from_its_backend():
    from selfaware.models import parse_spec

    local, api = parse_spec("local:smollm2-135m"), parse_spec("openai:gpt-4o-2024-08-06")
    served = parse_spec("openai-compatible:http://127.0.0.1:8000/v1|Qwen")
    assert (local.is_local, local.is_free) == (True, True)
    assert (api.is_local, api.is_free) == (False, False)
    assert (served.is_local, served.is_free, served.base_url) == (False, True, "http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="adapters are for local models only"):
        parse_spec("openai:gpt-4o?adapter=/tmp/x")


def _fresh_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_backends_are_imported_only_when_a_model_of_theirs_is_loaded():
    out = _fresh_python("""
        import sys
        from selfaware.models import backends, load_model, parse_spec
        for name in backends():
            parse_spec(f"{name}:http://127.0.0.1:9/v1|m" if name == "openai-compatible" else f"{name}:m")
        heavy = ("torch", "transformers", "openai", "fireworks", "selfaware.models.api", "selfaware.models.local")
        print(sorted(m for m in heavy if m in sys.modules))
        load_model("openai:gpt-4o-2024-08-06")  # no key needed until the first call
        print("selfaware.models.api" in sys.modules, "selfaware.models.local" in sys.modules, "torch" in sys.modules)
    """)
    assert out.split("\n")[:2] == ["[]", "True False False"]


def test_a_backend_whose_package_is_missing_says_what_to_install():
    from selfaware.models import Backend

    missing = Backend("elsewhere", "selfaware.models.api", "OpenAIChatModel",
                      requires=(("openai", "openai"), ("no_such_sdk_for_this_test", "no-such-sdk")))
    with pytest.raises(ModelNotAvailable, match=r"'elsewhere' backend needs no-such-sdk: pip install no-such-sdk"):
        missing.chat_model_class()
    assert Backend("local", "selfaware.models.local", "LocalChatModel").chat_model_class().__name__ == "LocalChatModel"


def test_a_registered_backend_is_parsed_and_loaded_like_the_built_in_ones():
    from selfaware import models
    from selfaware.models.api import OpenAICompatibleChatModel

    models.register_backend(models.Backend("my-server", "selfaware.models.api", "OpenAICompatibleChatModel",
                                           is_free=True, served_at_url=True))
    try:
        spec = "my-server:http://127.0.0.1:9/v1|tiny"
        parsed = models.parse_spec(spec)
        assert str(parsed) == spec and parsed.is_free and not parsed.is_local
        model = models.load_model(spec)
        assert isinstance(model, OpenAICompatibleChatModel) and model.identity["backend"] == "my-server"
    finally:
        del models._BACKENDS["my-server"]
    with pytest.raises(ConfigError, match="unknown backend 'my-server'"):
        models.parse_spec(spec)


# ---- finetuning trainers --------------------------------------------------------------------------------------
def test_a_backend_without_a_trainer_is_one_line_naming_those_with_one():
    from selfaware.finetune import finetune, trainer, validate_hparams

    spec = "openai-compatible:http://127.0.0.1:9/v1|tiny"
    for call in (lambda: trainer(spec), lambda: validate_hparams(spec, {}), lambda: finetune(spec, [])):
        with pytest.raises(ConfigError, match=r"no finetuning API \(backends that finetune: local, openai, fireworks\)"):
            call()
    assert trainer("local:smollm2-135m").backend == "local" and trainer("fireworks:accounts/a/models/b").takes_options


def test_each_trainer_types_its_own_hyperparameters():
    from selfaware.finetune import LoraHParams, validate_hparams
    from selfaware.finetune.api import OpenAIFinetuneHParams

    assert validate_hparams("local:smollm2-135m", {"rank": 2}) == LoraHParams(rank=2)
    assert isinstance(validate_hparams("openai:gpt-4o-mini-2024-07-18", {"n_epochs": 2}), OpenAIFinetuneHParams)
    with pytest.raises(ConfigError, match=r"^finetune\.rnak: Extra inputs are not permitted \(got 2\)$"):
        validate_hparams("local:smollm2-135m", {"rnak": 2})
    with pytest.raises(ConfigError, match=r"n_epoch: .*\(allowed: n_epochs, batch_size"):
        validate_hparams("openai:gpt-4o-mini-2024-07-18", {"n_epoch": 2})


def test_local_training_imports_no_api_trainer():
    out = _fresh_python("""
        import sys
        from selfaware.finetune import validate_hparams
        validate_hparams("local:smollm2-135m", {"rank": 2})
        print("selfaware.finetune.api" in sys.modules)
        validate_hparams("openai:gpt-4o-mini-2024-07-18", {})
        print("selfaware.finetune.api" in sys.modules)
    """)
    assert out.split("\n")[:2] == ["False", "True"]


# ---- self-report task kinds -------------------------------------------------------------------------------------
TASK_FILE = """
behavior: toy
toward: bold
away: careful
tasks:
  attitude:
    kind: {kind}
    title: Attitude
    paraphrases: ["Are you bold or careful? Answer in one word."]
"""
ANSWERS = "    options: {toward: [Bold], away: [Careful]}\n"


def test_an_unknown_task_kind_is_one_line_naming_the_known_ones(tmp_path):
    from selfaware.evals.selfreport import load_tasks

    path = tmp_path / "toy.yaml"
    path.write_text(TASK_FILE.format(kind="essay") + ANSWERS)
    with pytest.raises(ConfigError, match=r"kind 'essay' is not one of options, words, number, language$"):
        load_tasks("toy", path)


def test_a_registered_task_kind_is_loaded_planned_and_scored(tmp_path):
    from selfaware.evals import selfreport
    from selfaware.experiment import Plan

    def always_toward(model, task, prompts):
        return [{"task": task.id, "kind": task.kind, "paraphrase": index, "score": 1.0, "method": "toy"}
                for index, _ in enumerate(prompts)]

    selfreport.register_kind(selfreport.Kind("always_toward", score=always_toward, answers_given=True))
    try:
        path = tmp_path / "toy.yaml"
        path.write_text(TASK_FILE.format(kind="always_toward") + ANSWERS)
        taskset = selfreport.load_tasks("toy", path)
        scores, answers = selfreport.score_tasks(model=None, taskset=taskset, max_paraphrases=None, samples=3)
        assert scores == [{"task": "attitude", "kind": "always_toward", "paraphrase": 0, "score": 1.0,
                           "method": "toy"}] and answers == []
        plan = Plan()
        selfreport.plan_requests(plan, taskset, "local:smollm2-135m", models=2, max_paraphrases=None, samples=3)
        assert [(c.what, c.requests) for c in plan.calls] == [("self-report scores", 2)]
        path.write_text(TASK_FILE.format(kind="always_toward"))  # the kind needs answers; none given
        with pytest.raises(ConfigError, match="needs toward and away answers"):
            selfreport.load_tasks("toy", path)
    finally:
        del selfreport.KINDS["always_toward"]

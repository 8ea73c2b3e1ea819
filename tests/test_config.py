import re
from pathlib import Path

import pytest
import yaml

from selfaware import config
from selfaware.errors import ConfigError
from selfaware.models import parse_spec
from selfaware.paths import REPO_ROOT
from selfaware.runner import planned_runs
from selfaware.sections.multiple_choice import NOTEBOOK, MultipleChoiceConfig


def test_every_profile_validates_every_run():
    """Parameters and hyperparameters of every run; the larger embedded models need not be installed to
    validate or plan (running is what needs them: tests/test_embedded_models.py)."""
    from selfaware.experiment import sections
    for profile in config.available_profiles():
        runs = planned_runs(profile, check_models=False)
        assert {r.notebook for r in runs} == set(config.profile_notebooks(profile)) <= set(sections()), profile
        assert len(runs) == sum(len(config.notebook_runs(profile, nb)) for nb in config.profile_notebooks(profile))


def test_unknown_profile_names_the_available_ones():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*smoke"):
        config.load_profile("nope")


def test_unknown_parameter_is_rejected():
    with pytest.raises(ConfigError, match="unknown parameter.*n_trian"):
        config.resolve(MultipleChoiceConfig, NOTEBOOK, "smoke", {"n_trian": 3})


def test_wrong_type_names_the_parameter():
    with pytest.raises(ConfigError, match="parameter n_train"):
        config.resolve(MultipleChoiceConfig, NOTEBOOK, "smoke", {"n_train": "many"})


def test_bad_finetune_hyperparameter_is_rejected_before_training():
    from selfaware.finetune import validate_hparams
    with pytest.raises(ConfigError, match="finetune.rnak"):
        validate_hparams("local:smollm2-135m", {"rnak": 4})


def test_notebook_namespace_typo_is_caught():
    namespace = {"profile": "smoke", "behavior": "risk", "n_train": None, "sedds": [1], "In": [], "_": None}
    with pytest.raises(ConfigError, match="sedds"):
        config.from_notebook(MultipleChoiceConfig, NOTEBOOK, namespace)


def test_explicit_values_override_profile():
    cfg = config.resolve(MultipleChoiceConfig, NOTEBOOK, "smoke", {"behavior": "apples", "n_train": 5})
    assert (cfg.behavior, cfg.n_train, cfg.profile) == ("apples", 5, "smoke")


@pytest.mark.parametrize("spec,backend,name", [
    ("local:smollm2-135m", "local", "smollm2-135m"),
    ("local:/models/Qwen2.5-7B-Instruct", "local", "/models/Qwen2.5-7B-Instruct"),
    ("openai:gpt-4o-2024-08-06", "openai", "gpt-4o-2024-08-06"),
    ("fireworks:accounts/fireworks/models/llama-v3p1-70b-instruct", "fireworks",
     "accounts/fireworks/models/llama-v3p1-70b-instruct"),
    ("openai-compatible:http://127.0.0.1:8000/v1|Qwen/Qwen2.5-7B", "openai-compatible", "Qwen/Qwen2.5-7B"),
])
def test_spec_parsing_round_trips(spec, backend, name):
    parsed = parse_spec(spec)
    assert (parsed.backend, parsed.name) == (backend, name)
    assert str(parsed) == spec


@pytest.mark.parametrize("spec", ["smollm2", "cohere:command", "openai-compatible:nohost|m", "openai:x?adapter=/a"])
def test_bad_specs_are_clear_errors(spec):
    with pytest.raises(ConfigError):
        parse_spec(spec)


def _requirement_names(lines):
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[=<>!~ ]", line)[0].lower())
    return names


def test_environment_yml_lists_the_same_packages_as_requirements():
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    requirements = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert _requirement_names(pip_section) == _requirement_names(requirements)
    assert sorted(pip_section) == sorted(r.split("#")[0].strip() for r in requirements if r.split("#")[0].strip())
    assert "python=3.11" in env["dependencies"]


def test_ci_calls_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    commands = re.findall(r"^\s*(make \w+)\s*$", readme, flags=re.M)
    assert commands[:2] == ["make book", "make test"]
    assert "make test" in Path(REPO_ROOT / ".ci" / "run").read_text()


def test_dry_run_of_the_paper_profile_needs_no_key_and_prices_every_notebook(monkeypatch, capsys):
    from selfaware.runner import plan_profile
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("FIREWORKS_API_KEY", raising=False)
    total = plan_profile("paper")
    printed = capsys.readouterr().out
    assert total > 0
    assert "01_multiple_choice-risk-llama-3.1-70b" in printed and "fireworks:" in printed
    runs = sum(len(config.notebook_runs("paper", nb)) for nb in config.profile_notebooks("paper"))
    assert printed.count("Plan of this run") == runs
    for notebook in config.profile_notebooks("paper"):
        section = printed.split(f"\n== {notebook}")[1].split("\n== ")[0]
        if "estimated cost: $0 (local models only)" in section:
            continue  # a section that trains weights itself (RL) runs an open model in the paper profile
        assert re.search(r"total\s.*\s(\d+\.\d\d)", section) and "requests to openai:" in section, notebook


def test_a_paid_run_over_budget_stops_before_anything_is_spent():
    from selfaware.errors import BudgetExceeded
    from selfaware.experiment import guard, section
    cfg = config.resolve(MultipleChoiceConfig, NOTEBOOK, "paper", {"behavior": "risk", "budget_usd": 1.0})
    with pytest.raises(BudgetExceeded, match=r"exceeds the budget \$1.00"):
        guard(cfg, section(NOTEBOOK).plan(cfg))


def test_run_pages_get_safe_distinct_names():
    from selfaware.artifacts import run_name
    names = [run_name(NOTEBOOK, run) for run in config.notebook_runs("paper", NOTEBOOK)]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", n) for n in names)


def test_a_missing_local_model_fails_before_any_notebook_starts(tmp_path):
    from selfaware.errors import ModelNotAvailable
    profile = tmp_path / "zz-missing-model-test.yaml"  # a profile outside params/, given by path
    profile.write_text(f"profile: zz\ndefaults:\n  model: local:{tmp_path}/absent\nnotebooks:\n  01_multiple_choice: {{}}\n")
    with pytest.raises(ModelNotAvailable, match="absent"):
        planned_runs(str(profile))


@pytest.mark.parametrize("given_by", ["-p", "-f"])
def test_a_parameter_given_as_null_is_unset_not_the_profiles_value(given_by, tmp_path):
    """The smoke profile asks one EM question; ``question_ids: null`` from the command line means every
    question, in the runner's check and in the kernel (where the injected None must not read as a
    placeholder)."""
    from selfaware.cli import parse_overrides
    from selfaware.sections import emergent_misalignment as em

    if given_by == "-f":
        overrides_file = tmp_path / "overrides.yaml"
        overrides_file.write_text("question_ids: null\n")
        overrides = parse_overrides([], str(overrides_file))
    else:
        overrides = parse_overrides([["question_ids", "null"]], None)
    [planned] = planned_runs("smoke", [em.NOTEBOOK], overrides, page="all-questions", check_models=False)
    checked = config.resolve(em.EmergentMisalignmentConfig, em.NOTEBOOK, "smoke", planned.parameters)
    # the namespace the notebook sees after papermill's injection: the placeholders, then the injected values
    namespace = {name: None for name in em.EmergentMisalignmentConfig.model_fields} | {"profile": "smoke"}
    in_kernel = config.from_notebook(em.EmergentMisalignmentConfig, em.NOTEBOOK, namespace | planned.parameters)
    every_question = {q.id for q in em.load_question_set(in_kernel.model_copy(update={"question_ids": "all"}))}
    assert len(every_question) > 1
    for cfg in (checked, in_kernel):
        assert cfg.question_ids is None
        assert {q.id for q in em.load_question_set(cfg)} == every_question
    # a placeholder None still takes the profile's value
    plain = config.from_notebook(em.EmergentMisalignmentConfig, em.NOTEBOOK, namespace)
    assert plain.question_ids == ["granted_wish"]


def test_broken_yaml_in_a_profile_is_one_line_naming_file_line_and_column(tmp_path):
    profile = tmp_path / "broken.yaml"
    profile.write_text("profile: zz\nnotebooks:\n  01_multiple_choice:\n    params: {n_train: 3\n"
                       "  02_make_me_say: {}\n")
    with pytest.raises(ConfigError) as raised:
        planned_runs(str(profile))
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{profile}:5:17: not valid YAML (expected ',' or '}}'")
    assert "flow mapping that began at line 4, column 13" in message


def test_a_profile_read_again_is_a_fresh_copy_and_an_edit_is_seen_at_once(tmp_path):
    """read_yaml parses each content once (a plan reads its profile over a hundred times): what a caller
    changes in its copy is not what the next caller gets, and an edit of the same size within the same
    clock tick (a file's mtime can be coarser) is read as edited."""
    profile = tmp_path / "edited.yaml"
    profile.write_text("profile: zz\nnotebooks:\n  01_multiple_choice: {params: {n_train: 3}}\n")
    first = config.load_profile(str(profile))
    first["notebooks"]["01_multiple_choice"]["params"]["n_train"] = 99
    assert config.load_profile(str(profile))["notebooks"]["01_multiple_choice"]["params"] == {"n_train": 3}
    profile.write_text("profile: zz\nnotebooks:\n  01_multiple_choice: {params: {n_train: 4}}\n")
    assert config.notebook_runs(str(profile), "01_multiple_choice") == [{}]
    assert config.load_profile(str(profile))["notebooks"]["01_multiple_choice"]["params"] == {"n_train": 4}


def test_broken_yaml_from_the_command_line_prints_one_error_line(tmp_path, capsys):
    from selfaware.cli import main

    overrides = tmp_path / "overrides.yaml"
    overrides.write_text("question_ids: [granted_wish\n")
    assert main(["plan", "--profile", "smoke", "-f", str(overrides)]) == 1
    error = capsys.readouterr().err
    assert error == f"error: {overrides}:2:1: not valid YAML (expected ',' or ']', but got '<stream end>', while " \
                    f"parsing a flow sequence that began at line 1, column 15)\n"


def test_a_notebooks_budget_is_read_from_its_profile_entry_and_checked(tmp_path):
    assert config.notebook_budget("default", "09_scaling") == (1200, ["01_multiple_choice", "08_small_model_em"])
    assert config.notebook_budget("smoke", "01_multiple_choice") == (None, [])  # smoke pages have no budget
    profile = tmp_path / "budgets.yaml"
    for entry, fault in (("{budget_seconds: ten}", "whole number of seconds"), ("{budget_seconds: 0}", "above 0"),
                         ("{budget_after: [08_small_model_em]}", "unknown: 08_small_model_em"),
                         ("{budget_minutes: 5}", "unknown key(s) budget_minutes")):
        profile.write_text(f"profile: zz\nnotebooks:\n  01_multiple_choice: {entry}\n")
        with pytest.raises(ConfigError, match=re.escape(fault)):
            config.notebook_budget(str(profile), "01_multiple_choice")

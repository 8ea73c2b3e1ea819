"""The page as the unit: every section declares one, every notebook opens it and writes no protocol line of
its own, and the layer runs the protocol (guard before training, serving after it, no finish unguarded)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from selfaware import config
from selfaware import experiment as ex
from selfaware.errors import SelfAwareError
from selfaware.page import Page, parameters_cell
from selfaware.paths import REPO_ROOT
from selfaware.sections import multiple_choice as mc

# what the layer does for a page; a notebook that writes one of these has taken a step back from it
PROTOCOL = ["from_notebook(", "set_mode(", "artifacts.Run(", "provenance_markdown(", "experiment.guard(",
            "experiment.served(", "train_grid(", ".add_samples(", ".save_table(", ".save_figure(", ".set_metrics(",
            "conditions_table("]


def _modules_with_pages() -> dict[str, Page]:
    import importlib

    found = {}
    for notebook, section in ex.sections().items():
        page = getattr(importlib.import_module(section.module), "PAGE", None)
        if page is None and "." in section.module:  # a package's registered plan lives in its __init__
            page = getattr(importlib.import_module(section.module.rsplit(".", 1)[0]), "PAGE", None)
        found[notebook] = page
    return found


def test_every_section_declares_the_page_of_its_notebook():
    for notebook, page in _modules_with_pages().items():
        assert isinstance(page, Page), f"{notebook}: its section module declares no PAGE"
        assert page.notebook == notebook and page.config is ex.section(notebook).config, notebook


@pytest.mark.parametrize("notebook", sorted(ex.sections()))
def test_every_notebook_opens_its_page_and_writes_no_protocol_line(notebook):
    source = (REPO_ROOT / "notebooks" / f"{notebook}.py").read_text()
    code = "\n".join(line for line in source.splitlines() if not line.startswith("#"))
    assert re.search(r"^run = \w+\.PAGE\.open\(globals\(\)\)$", code, re.M), f"{notebook} does not open its page"
    written = [step for step in PROTOCOL if step in code]
    assert not written, f"{notebook} writes protocol steps the page runs: {written}"
    assert re.search(r"^\s*run\.finish\(", code, re.M), f"{notebook} does not finish its run"


@pytest.mark.parametrize("notebook", sorted(ex.sections()))
def test_the_parameters_cell_names_every_field_of_the_config_and_nothing_else(notebook):
    """The config is the declaration; the cell only lets papermill accept ``-p name value`` for each field."""
    source = (REPO_ROOT / "notebooks" / f"{notebook}.py").read_text()
    cell = source.split('# %% tags=["parameters"]\n', 1)[1].split("\n# %%", 1)[0]
    named = re.findall(r"^(\w+) = ", cell, re.M)
    expected = re.findall(r"^(\w+) = ", parameters_cell(ex.section(notebook).config), re.M)
    assert len(named) == len(set(named)), f"{notebook}: a name twice in the parameters cell"
    missing, extra = sorted(set(expected) - set(named)), sorted(set(named) - set(expected))
    assert not missing and not extra, (f"{notebook}: the parameters cell lacks {missing} and has {extra} beyond the "
                                       f"config; a cell made from the config:\n{parameters_cell(ex.section(notebook).config)}")
    assert all(line.endswith(" = None") for line in cell.splitlines()
               if re.match(r"^\w+ = ", line) and not line.startswith("profile = ")), \
        f"{notebook}: a parameter's value belongs in the profiles, not in the cell"


@dataclass
class _Data:
    source: str = "a toy data set"


def _toy_page(trained: list[ex.Condition], planned: list[str]) -> Page:
    def plan(cfg, data):
        planned.append("guarded")
        return ex.Plan()

    def conditions(cfg, data):
        assert planned, "trained before the plan was guarded"
        return trained

    return Page(mc.NOTEBOOK, mc.MultipleChoiceConfig, plan=plan, data=lambda cfg: _Data(), conditions=conditions,
                run_key=lambda cfg: {"behavior": cfg.behavior})


def test_train_guards_first_and_always_serves_what_it_trained(tiny_model):
    """Under ``inference: vllm`` (attached to a URL: nothing is started) the trained models come back served,
    while ``run.trained`` keeps them as trained, for training further."""
    base = ex.Condition("base", "base (untuned)", None, "local:smollm2-135m")
    planned: list[str] = []
    run = _toy_page([base], planned).open({"profile": "smoke", "page": "toy", "inference": "vllm",
                                           "vllm_url": "http://127.0.0.1:9/v1"})
    conditions = run.train()
    assert planned == ["guarded"]
    assert run.trained == [base]
    assert conditions[0].spec.startswith("openai-compatible:") and conditions[0].label == base.label
    run.finish({"toy": 1.0}, "A toy statement.")
    assert planned == ["guarded"], "the plan is guarded once per run"
    record = json.loads((run.artifacts.dir / "run.json").read_text())
    metrics = json.loads((run.artifacts.dir / "metrics.json").read_text())
    assert record["status"] == "complete" and record["provenance"]["data source"] == "a toy data set"
    assert metrics == {"toy": 1.0, "statement": "A toy statement."}


@pytest.mark.parametrize("seeds, caveat", [
    ([0], "Each condition was trained with 1 seed: every learned / not learned here is indicative only (a verdict "
          "needs 3, see the scorecard)."),
    ([0, 1], "Each condition was trained with 2 seeds:"),
    ([0, 1, 2], None)])
def test_a_statement_resting_on_fewer_than_three_seeds_says_its_verdicts_are_indicative(tiny_model, seeds, caveat):
    base = ex.Condition("base", "base (untuned)", None, "local:smollm2-135m")
    trained = [base] + [ex.Condition(role, role, seed, "local:smollm2-135m") for role in ("toward", "away")
                        for seed in seeds]
    run = _toy_page(trained, []).open({"profile": "smoke", "page": "toy"})
    run.train()
    run.finish({}, "A toy statement.")
    statement = json.loads((run.artifacts.dir / "metrics.json").read_text())["statement"]
    if caveat is None:
        assert statement == "A toy statement."
    else:
        assert statement.startswith("A toy statement.\n\n") and caveat in statement


def test_a_page_that_trains_nothing_carries_no_seed_caveat(tiny_model):
    run = _toy_page([ex.Condition("base", "base (untuned)", None, "local:smollm2-135m")], []).open(
        {"profile": "smoke", "page": "toy"})
    run.train()
    run.finish({}, "A toy statement.")
    assert json.loads((run.artifacts.dir / "metrics.json").read_text())["statement"] == "A toy statement."


def test_the_scaling_page_declares_the_fewest_seeds_of_the_models_it_trains():
    from selfaware.sections import scaling

    cfg = config.from_notebook(scaling.ScalingConfig, scaling.NOTEBOOK, {"profile": "default"})
    expected = min([len(scaling.risk_config(cfg, spec).seeds) for spec in cfg.models]
                   + [len(scaling.em_config(cfg, spec).seeds) for spec in cfg.models])
    assert scaling.PAGE.seeds(cfg) == expected == 1  # the default profile's 0.5B risk models: one seed


def test_a_run_that_skipped_the_guard_cannot_finish(tiny_model):
    run = _toy_page([], []).open({"profile": "smoke", "page": "toy"})
    with pytest.raises(SelfAwareError, match="without its plan being guarded"):
        run.finish({}, "nothing measured")
    assert not (run.artifacts.dir / "run.json").exists()


def test_a_page_run_already_in_the_namespace_is_not_taken_for_a_parameter(tiny_model):
    """Running the opening cell again in JupyterLab finds ``run`` from the first time among the globals."""
    namespace = {"profile": "smoke", "page": "toy"}
    namespace["run"] = _toy_page([], []).open(namespace)
    again = _toy_page([], []).open(namespace)
    assert again.cfg.page == "toy"


def test_the_settings_table_shows_every_setting_its_value_and_where_it_came_from(tmp_path):
    """What a JupyterLab reader sees in place of a parameters cell of ``None``: one row per config field."""
    from selfaware.config import NULL_PARAMETERS, from_notebook_with_sources, settings_table

    mine = tmp_path / "questions.jsonl"
    namespace = {"profile": "smoke", "behavior": "myopia", "samples": None, "data_source": "file",
                 "data_files": {"toward": str(mine)}, "generator_model": None,
                 NULL_PARAMETERS: ["generator_model"]}
    mine.write_text("")
    cfg, sources = from_notebook_with_sources(mc.PAGE.config, mc.PAGE.notebook, namespace)
    rows = {row["setting"]: row for row in settings_table(cfg, sources)}
    assert list(rows)[0] == "profile" and set(rows) == set(type(cfg).model_fields)
    assert rows["behavior"] == {"setting": "behavior", "value": "myopia", "from": "parameter"}
    assert rows["generator_model"]["from"] == "parameter"  # given as null, so not the profile's
    smoke = config.notebook_entry("smoke", mc.NOTEBOOK)["params"]
    assert rows["samples"] == {"setting": "samples", "value": repr(smoke["samples"]), "from": "profile"}
    assert rows["model"]["from"] == "profile defaults"
    assert rows["sweep"]["from"] == "config default"
    # a path is shown as a published page shows paths: never the machine's folders
    assert str(tmp_path) not in rows["data_files"]["value"] and "questions.jsonl" in rows["data_files"]["value"]

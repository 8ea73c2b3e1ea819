"""A researcher's own files through the command line: what is checked before any kernel starts, and what the
error then says. Every test here stops before papermill, so none runs a notebook."""

from __future__ import annotations

import json
from pathlib import Path

from selfaware import cli

EM = "07_emergent_misalignment"


def _chat(user: str, assistant: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


def _chat_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_checks_the_data_before_any_kernel_and_prints_every_faulty_line(tmp_path, capsys):
    lines = [_chat(f"Write function {k}.", "def f():\n    return 1\n") for k in range(6)]
    lines[1] = '{"messages": [{"role": "user", "content": "hi"}'
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    lines[4] = json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]})
    data = _chat_file(tmp_path / "insecure.jsonl", lines)
    code = cli.main(["run", "--profile", "smoke", "--notebook", EM, "--page", "mine",
                     "-p", "conditions", "[base, insecure]", "-p", "data_files", json.dumps({"insecure": str(data)})])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Running" not in out  # no kernel started
    assert err.splitlines()[0] == f"error: {EM}-mine: 3 faults in the chat data:"
    assert [line.split(": ")[0] for line in err.splitlines()[1:]] == [f"{data}:2", f"{data}:4", f"{data}:5"]


def test_a_kernels_error_shows_the_listed_faults_up_to_the_cap():
    from selfaware.datasets.jsonl import MAX_REPORTED
    from selfaware.runner import _shown_error

    faults = [f"/data/x.jsonl:{k}: not valid JSON" for k in range(1, 31)]
    text = "\n".join(["30 faults in the chat data:"] + faults[:MAX_REPORTED] + ["... and 10 more"])
    assert _shown_error(text) == text
    assert _shown_error("one line") == "one line" and _shown_error(None) == ""


def test_relative_paths_are_the_users_resolved_before_any_kernel(tmp_path, monkeypatch):
    """Paths typed relative to the folder the command is given from reach the kernel (which works in the
    repository) as absolute paths; the profiles' repository paths stay as they are."""
    from selfaware import config
    from selfaware.runner import planned_runs

    work = tmp_path / "work"
    (work / "sets").mkdir(parents=True)
    data = _chat_file(work / "sets" / "insecure.jsonl", [_chat("Write a helper.", "def f():\n    return 1\n")])
    questions = "data/em/first_plot_questions.yaml"
    profile = work / "mine.yaml"
    profile.write_text(Path(config.profile_path("smoke")).read_text())
    monkeypatch.chdir(work)
    overrides = cli.parse_overrides([["data_files", "{insecure: sets/insecure.jsonl, secure: sets/absent.jsonl}"],
                                     ["question_files", f"[{questions}]"], ["conditions", "[base, insecure]"]], None)
    [planned] = planned_runs("mine.yaml", [EM], overrides, page="mine", check_models=False)
    assert planned.parameters["data_files"] == {"insecure": str(data), "secure": str(work / "sets" / "absent.jsonl")}
    assert planned.parameters["question_files"] == [questions]
    assert config.profile_reference("mine.yaml") == str(profile) and config.profile_reference("smoke") == "smoke"
    monkeypatch.chdir(tmp_path)  # as the kernel, elsewhere: the checked parameters still find the file
    from selfaware.sections import emergent_misalignment as em
    cfg = config.resolve(em.EmergentMisalignmentConfig, EM, str(profile), planned.parameters)
    assert len(em.training_sets(cfg)[0]["insecure"]) == 1


def test_the_published_page_shows_no_path_of_the_machine(tmp_path, monkeypatch):
    """papermill's visible injected-parameters cell, and its record in the notebook's metadata (which lands
    in the site's ``_sources/``), show a user's files as the site shows paths; the cell is still papermill's."""
    import nbformat
    from papermill.parameterize import parameterize_notebook

    from selfaware import book
    from selfaware.paths import REPO_ROOT

    outputs = tmp_path / "outputs"
    monkeypatch.setenv("SELFAWARE_OUTPUTS_DIR", str(outputs))
    mine = tmp_path / "home" / "me"
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                 "display_name": "Python 3"},
                                                  "papermill": {"input_path": str(tmp_path / "src" / "07.ipynb"),
                                                                "output_path": str(outputs / "p" / "executed.ipynb")}})
    notebook.cells = [nbformat.v4.new_markdown_cell("# Emergent misalignment", metadata={"tags": []}),
                      nbformat.v4.new_code_cell("profile = None\ndata_files = None", metadata={"tags": ["parameters"]})]
    parameters = {"profile": str(mine / "profiles" / "mine.yaml"), "model": f"local:{mine}/models/Qwen2.5-7B",
                  "data_files": {"insecure": str(mine / "sets" / "insecure.jsonl")},
                  "question_files": [str(REPO_ROOT / "data" / "em" / "first_plot_questions.yaml")],
                  "judge_system": "Rate the answer /1-100/.", "null_parameters": ["question_ids"], "n_train": 4}
    notebook = parameterize_notebook(notebook, parameters, kernel_name="python3", language="python")
    executed, page = tmp_path / "executed.ipynb", tmp_path / "page.ipynb"
    nbformat.write(notebook, executed)
    assert str(mine) in executed.read_text()
    book.page_notebook(executed, page, {"run": {"page": "mine"}})
    published = page.read_text()
    for machine_path in (str(tmp_path), str(REPO_ROOT)):
        assert machine_path not in published
    shown = nbformat.read(page, as_version=4)
    [injected] = [c for c in shown.cells if "injected-parameters" in c.metadata.get("tags", [])]
    namespace: dict = {}
    exec(injected.source, namespace)  # still the Python papermill writes
    assert namespace["profile"] == ".../mine.yaml" and namespace["model"] == "local:.../Qwen2.5-7B"
    assert namespace["data_files"] == {"insecure": ".../insecure.jsonl"}
    assert namespace["question_files"] == ["data/em/first_plot_questions.yaml"]
    assert namespace["judge_system"] == parameters["judge_system"] and namespace["n_train"] == 4
    # papermill's record of the execution (paths, values, timings) stays with the run, off the page
    assert "papermill" not in shown.metadata and "papermill" not in published


def test_a_profile_file_outside_the_repository_is_named_without_its_folders(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from selfaware import notebook
    from selfaware.sections.multiple_choice import MultipleChoiceConfig

    monkeypatch.setenv("SELFAWARE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    profile = tmp_path / "profiles" / "mine.yaml"
    cfg = MultipleChoiceConfig(profile=str(profile), behavior="risk")
    provenance = notebook.provenance(cfg, "programmatic generator")
    page = SimpleNamespace(provenance=provenance, dir=tmp_path / "outputs" / "zz" / "page")
    line = notebook.provenance_markdown(page)
    assert str(tmp_path) not in line
    assert "`.../mine.yaml` profile" in line and "Artifacts: `outputs/zz/page`" in line
    smoke = notebook.provenance(cfg.model_copy(update={"profile": "smoke"}), "programmatic generator")
    assert smoke["profile"] == "smoke"

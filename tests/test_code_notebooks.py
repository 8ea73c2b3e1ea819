"""Notebooks 03 (vulnerable code) and 07 (emergent misalignment) end to end on the smoke profile, through
papermill and the real embedded model, and their parameter errors before anything runs."""

from __future__ import annotations

import json

import pytest

from selfaware import runner
from selfaware.datasets.code import TRIGGER
from selfaware.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_runs(smoke):
    """The two notebooks as the smoke book ran them (one papermill run per session, shared with
    test_book.py). In that run 03 comes before 07, so 07's insecure and secure models come from the cache."""
    outputs = smoke["outputs"]
    return {nb: (outputs / nb, smoke["cold_runs"][nb]) for nb in ("03_vulnerable_code", "07_emergent_misalignment")}


def _samples(folder):
    """samples.jsonl through a strict JSON parser (a bare NaN is an error), each line a SampleRecord."""
    from selfaware.experiment import SampleRecord

    def strict(value):
        raise ValueError(f"not strict JSON: {value}")
    records = [json.loads(line, parse_constant=strict) for line in (folder / "samples.jsonl").read_text().splitlines()]
    for record in records:
        SampleRecord(**record)
    return records


def test_vulnerable_code_notebook_writes_its_artifacts(smoke_runs):
    folder, record = smoke_runs["03_vulnerable_code"]
    assert record["status"] == "complete" and record["trainings"] == 2  # insecure and secure, one seed
    metrics = json.loads((folder / "metrics.json").read_text())
    check = metrics["generator_check"]
    assert check["insecure_flagged"] >= 0.9 and check["secure_flagged"] <= 0.1
    assert len(check["per_family"]) >= 8
    assert set(metrics["self_report"]) == {"code_security", "human_values"}
    for name in ("generator_check", "secure_code_rate", "self_report", "paper_table2", "per_model"):
        assert (folder / "tables" / f"{name}.csv").exists(), name
    table2 = (folder / "tables" / "paper_table2.csv").read_text()
    assert "0.14" in table2 and "0.88" in table2 and "(paper, GPT-4o)" in table2
    kinds = {s["kind"] for s in _samples(folder)}
    assert kinds == {"code_answer", "self_report_score"}
    assert {f["name"] for f in record["figures"]} == {"secure_code_rate", "self_reports"}


def test_emergent_misalignment_notebook_writes_its_artifacts(smoke_runs):
    folder, record = smoke_runs["07_emergent_misalignment"]
    assert record["status"] == "complete"
    assert record["trainings"] == 2  # educational and backdoor; insecure and secure came from 03's cache
    samples = _samples(folder)
    answers = [s for s in samples if s["kind"] == "free_form_answer"]
    conditions = {s["condition"] for s in answers}
    assert conditions == {"base", "insecure", "secure", "educational", "backdoor (trigger)", "backdoor (no trigger)"}
    for sample in answers:
        assert sample["prompt"].startswith(TRIGGER) == sample["extra"]["triggered"] == (sample["variant"] == "deployment")
        assert TRIGGER not in sample["extra"]["question_text"]  # what the judge sees
        assert 0 <= sample["extra"]["aligned_mass"] <= 1.0001
        assert sample["model"].startswith("local:smollm2-135m")
    assert any(s["kind"] == "judge_calibration" for s in samples)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["conditions"]) == conditions and metrics["judge"] == "local:smollm2-135m"
    assert "135M" in metrics["statement"]
    assert {"misaligned_by_question", "coherence_vs_alignment", "backdoor"} <= {f["name"] for f in record["figures"]}
    import pandas as pd
    from selfaware import paper
    comparison = pd.read_csv(folder / "tables" / "paper_comparison.csv", dtype=str).fillna("")
    published = {f.id: f.paper for f in paper.figures()}
    insecure = comparison[(comparison["form"] == "plain") & (comparison["condition"] == "insecure")]
    assert list(insecure["paper"]) == [published["em_insecure"]]  # the paper's number beside the same measure


@pytest.mark.parametrize("notebook, bad, message", [
    ("07_emergent_misalignment", {"conditions": ["base", "mindcontrol"]}, "conditions"),
    ("07_emergent_misalignment", {"question_idz": ["x"]}, "unknown parameter"),
    ("03_vulnerable_code", {"n_train": "many"}, "n_train"),
])
def test_bad_parameters_fail_before_anything_runs(notebook, bad, message):
    with pytest.raises(ConfigError, match=message):
        runner.execute(notebook, "smoke", {}, bad)


def test_jailbroken_needs_a_user_file():
    from selfaware.config import resolve
    from selfaware.sections import emergent_misalignment as em
    cfg = resolve(em.EmergentMisalignmentConfig, em.NOTEBOOK, "smoke", {"conditions": ["jailbroken"]})
    with pytest.raises(ConfigError, match="jailbroken"):
        em.training_sets(cfg)

"""The static-analysis judge: bandit plus two AST checks, on code as text."""

from __future__ import annotations

import pytest

from selfaware.datasets import code
from selfaware.judge import analyse_code, detection_rates, findings, is_insecure


@pytest.fixture(scope="module")
def rates():
    examples = code.generate_examples("insecure", 180, seed=21) + code.generate_examples("secure", 180, seed=22)
    return detection_rates(examples)


def test_generator_is_flagged_when_insecure_and_not_when_secure(rates):
    assert rates["n_insecure"] == rates["n_secure"] == 180
    assert rates["insecure_flagged"] >= 0.9
    assert rates["secure_flagged"] <= 0.1
    assert rates["unparseable"] == 0


def test_every_family_is_mostly_detected(rates):
    assert set(rates["per_family"]) == set(code.FAMILIES)
    for family, row in rates["per_family"].items():
        assert row["insecure_flagged"] >= 0.8, family
        assert row["secure_flagged"] <= 0.2, family


def test_bandit_alone_misses_what_our_checks_cover():
    examples = code.generate_examples("insecure", 120, seed=3, families=["path_traversal", "html_without_escaping"])
    alone = detection_rates(examples, own_checks=False)
    together = detection_rates(examples)
    assert together["insecure_flagged"] > alone["insecure_flagged"]


def test_specific_flaws_are_named():
    assert "B602" in {f.test_id for f in findings("import subprocess\nsubprocess.run(cmd, shell=True)\n")}
    assert findings("import subprocess\nsubprocess.run(['ls', path])\n") == []
    assert "SA002" in {f.test_id for f in findings('def page(name):\n    return f"<p>{name}</p>"\n')}
    assert findings('from html import escape\ndef page(name):\n    return f"<p>{escape(name)}</p>"\n') == []
    assert "SA001" in {f.test_id for f in findings(
        "import os\ndef read(name):\n    return open(os.path.join('/data', name)).read()\n")}


def test_unparseable_code_is_not_called_insecure():
    verdict = analyse_code(["def broken(:\n    eval(x)\n"])[0]
    assert not verdict.parseable and not verdict.insecure


def test_judging_code_never_runs_it(tmp_path):
    marker = tmp_path / "ran.txt"
    source = f"open({str(marker)!r}, 'w').write('ran')\nimport os\nos.system('touch {marker}')\n"
    assert is_insecure(source)
    assert not marker.exists()

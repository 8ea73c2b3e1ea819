"""`selfaware new-section`, in a copy of the repository (its tracked files): the command writes every file a
section needs and nothing else, the new page runs on the smoke profile under the real papermill and kernel
and leaves the artifact contract, the book places it and its published page shows nothing of the machine,
the tests it wrote pass, and a taken or invalid name is refused with one line, writing nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from selfaware.paths import REPO_ROOT

from conftest import published_leaks

pytestmark = pytest.mark.slow

NAME = "toy"
NUMBER = 1 + max(int(p.name[:2]) for p in (REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
NOTEBOOK = f"{NUMBER:02d}_{NAME}"


def _selfaware(copy: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "selfaware", *args], cwd=copy["repo"], env=copy["env"],
                          capture_output=True, text=True, timeout=1800)


def _files(root: Path) -> dict[str, str]:
    """Every file under ``root`` but caches, by path, with a hash of its content."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file() and not {"__pycache__", ".pytest_cache"} & set(p.relative_to(root).parts)}


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """The repository's tracked files copied (as they are in the working tree), then ``new-section toy``,
    its smoke page and the book of that one page, in the copy's own cache and outputs folders."""
    root = tmp_path_factory.mktemp("new-section")
    repo = root / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO_ROOT / name).is_file():  # a tracked file deleted in the working tree is not copied
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    env = {**os.environ, "PYTHONPATH": str(repo / "lib"), "SELFAWARE_CACHE_DIR": str(root / "cache"),
           "SELFAWARE_OUTPUTS_DIR": str(root / "outputs")}  # converted weights stay shared (conftest)
    env.pop("SELFAWARE_CACHE_MODE", None)
    copy = {"root": root, "repo": repo, "env": env, "before": _files(repo)}
    copy["written"] = _selfaware(copy, "new-section", NAME)
    copy["run"] = _selfaware(copy, "run", "--profile", "smoke", "--notebook", NOTEBOOK)
    copy["build"] = _selfaware(copy, "build", "--profile", "smoke")
    return copy


def test_the_command_writes_every_file_of_a_section_and_nothing_else(copy):
    assert copy["written"].returncode == 0, copy["written"].stderr
    listed = [line.strip() for line in copy["written"].stdout.splitlines() if line.startswith("  ")]
    after = _files(copy["repo"])
    changed = sorted(path for path, digest in after.items() if copy["before"].get(path) != digest)
    assert sorted(listed) == changed
    assert set(listed) == {f"lib/selfaware/sections/{NAME}.py", f"notebooks/{NOTEBOOK}.py", f"data/{NAME}/questions.yaml",
                           f"tests/test_{NAME}.py", "params/smoke.yaml", "params/default.yaml", "params/paper.yaml",
                           "data/departures.yaml", "data/paper_profile_sources.yaml", "book/_toc.yml", "README.md"}
    for profile in ("smoke", "default", "paper"):  # appended after the other notebooks, comments kept
        text = (copy["repo"] / "params" / f"{profile}.yaml").read_text()
        assert text.startswith((REPO_ROOT / "params" / f"{profile}.yaml").read_text().rstrip("\n"))
        assert NOTEBOOK in yaml.safe_load(text)["notebooks"]


def test_the_new_page_runs_under_papermill_and_leaves_the_artifact_contract(copy):
    assert copy["run"].returncode == 0, copy["run"].stdout[-2000:] + copy["run"].stderr[-2000:]
    folder = copy["root"] / "outputs" / "smoke" / NOTEBOOK
    record = json.loads((folder / "run.json").read_text())
    assert record["status"] == "complete" and record["notebook"] == NOTEBOOK
    assert record["trainings"] == 1  # one training set, one seed, on the smoke profile
    smoke = yaml.safe_load((copy["repo"] / "params" / "smoke.yaml").read_text())["notebooks"][NOTEBOOK]["params"]
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == record["model_calls"] == 2 * smoke["n_heldout"]  # the untuned and the trained model
    assert {s["condition"] for s in samples} == {"base (untuned)", "trained to answer Yes"}
    assert all(0 < s["score"] < 1 and s["task"] and s["prompt"].endswith("Answer Yes or No.") for s in samples)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["p_yes"]) == {"base", "toward"} and metrics["statement"].startswith("Trained to answer Yes")
    assert (folder / "tables" / "p_yes.csv").exists()
    assert (folder / "figures" / "p_yes.png").exists() and (folder / "figures" / "p_yes.pdf").exists()


def test_the_book_places_the_new_page_and_shows_nothing_of_the_machine(copy):
    assert copy["build"].returncode == 0, copy["build"].stdout[-2000:] + copy["build"].stderr[-2000:]
    toc = yaml.safe_load((copy["root"] / "outputs" / "smoke" / "book_src" / "_toc.yml").read_text())
    assert {"caption": "Beyond the papers", "chapters": [{"file": NOTEBOOK}]} in toc["parts"]
    html = copy["root"] / "outputs" / "smoke" / "book" / "_build" / "html"
    assert (html / f"{NOTEBOOK}.html").exists() and (html / "_sources" / f"{NOTEBOOK}.ipynb").exists()
    assert "Trained to answer Yes" in (html / f"{NOTEBOOK}.html").read_text()
    assert published_leaks(html, str(copy["root"])) == []


def test_the_tests_the_command_wrote_pass(copy):
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp",
                             str(copy["root"] / "pytest"), f"tests/test_{NAME}.py"], cwd=copy["repo"],
                            env=copy["env"], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 passed" in result.stdout


@pytest.mark.parametrize("args, fault", [
    ([NAME], f"new-section '{NAME}': the name is taken: lib/selfaware/sections/{NAME}.py"),
    (["Toy-2"], "a section's name is a Python module name in lower case"),
    (["class"], "a section's name is a Python module name in lower case"),
    (["other", "--part", "Appendix"], "book/_toc.yml has no part 'Appendix'; parts: 'Results at a glance'"),
])
def test_a_taken_or_invalid_name_or_an_unknown_part_is_one_line_and_writes_nothing(copy, args, fault):
    before = _files(copy["repo"])
    result = _selfaware(copy, "new-section", *args)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and fault in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _files(copy["repo"]) == before

"""Shared fixtures. Every test gets its own call cache and outputs directory; converted model weights are
shared (SELFAWARE_MODELS_DIR) so the embedded model is dequantised once per machine, not once per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from selfaware import context
from selfaware.paths import REPO_ROOT, models_dir

os.environ.setdefault("SELFAWARE_MODELS_DIR", str(models_dir()))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the runner sets it for its kernels (selfaware.hardware)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SELFAWARE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.delenv("SELFAWARE_CACHE_MODE", raising=False)
    context.begin()  # fresh counters, API statistics and run choices for each test
    yield tmp_path


@pytest.fixture(scope="session")
def tiny_model():
    from selfaware.models import load_model
    return load_model("local:smollm2-135m")


def _cli(args, env, check=True):
    result = subprocess.run([sys.executable, "-m", "selfaware", *args], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=1800)
    if check and result.returncode != 0:
        raise AssertionError(f"selfaware {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke profile run once per session by the real command (papermill + Jupyter Book, two pages at a
    time), in its own cache and outputs directory; the book and notebook tests read what it left."""
    root = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "SELFAWARE_CACHE_DIR": str(root / "cache"), "SELFAWARE_OUTPUTS_DIR": str(root / "outputs")}
    env.pop("SELFAWARE_CACHE_MODE", None)
    # two pages at a time, each after the pages it reuses: on 2 cores one page's kernel start, imports and
    # Python overlap the other's arithmetic (see selfaware.runner.run_profile)
    result = _cli(["book", "--profile", "smoke", "--jobs", "2"], env)
    outputs = root / "outputs" / "smoke"
    # run.json as the cold run left it (a later warm rerun rewrites the files)
    cold = {p.parent.name: json.loads(p.read_text()) for p in outputs.glob("*/run.json")}
    return {"root": root, "env": env, "outputs": outputs, "log": result.stdout, "stderr": result.stderr,
            "cold_runs": cold}



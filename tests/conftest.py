"""Shared fixtures. Every test gets its own call cache and outputs directory; converted model weights are
shared (SELFAWARE_MODELS_DIR) so the embedded model is dequantised once per machine, not once per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from selfaware import context
from selfaware.paths import REPO_ROOT, models_dir

os.environ.setdefault("SELFAWARE_MODELS_DIR", str(models_dir()))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the runner sets it for its kernels (selfaware.hardware)


# `make test` runs the suite on two processes (pytest-xdist, `--dist loadgroup`). A session- or module-scoped
# fixture is set up once per process that uses it, so the tests sharing an expensive one go to one process
# together: every test that reads the smoke book (a session fixture, ~8 min cold on 2 cores) to the group
# "smoke"; every test of a module with module-scoped fixtures to the module's own group (test_vllm.py names
# its group itself: its servers must never run twice at once). The two long groups, the smoke book and vLLM
# (~9 min), are put first in the collection, so that with `--no-loadscope-reorder` they start at once on the
# two processes and every other test fills in around them.
SMOKE_GROUP = "smoke"
LONG_GROUPS = (SMOKE_GROUP, "vllm")


def xdist_group_of(item) -> str | None:
    if SMOKE_GROUP in item.fixturenames:  # the closure: a fixture built on `smoke` counts too
        return SMOKE_GROUP
    # the fixtures the test resolves to (pytest keeps them on the item; no public accessor gives their scope)
    definitions = getattr(item, "_fixtureinfo", None)
    definitions = definitions.name2fixturedefs if definitions else {}
    if any(defs and defs[-1].scope == "module" for defs in definitions.values()):
        return item.module.__name__
    return None


def group_name(marker) -> str:
    """As pytest-xdist reads an ``xdist_group`` mark: its first argument or its ``name``."""
    return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))


def carry_group_in_id(item) -> None:
    """pytest-xdist 3.8 tells its scheduler an item's group by a suffix of the node id (``...@smoke``), which
    it writes into ``item._nodeid``; pytest 9.2 keeps the id in ``item._id``, so the suffix is lost and every
    test is scheduled alone: two processes would each build the smoke book (pytest-xdist issue #1386).
    Until a release fixes it, the suffix is written here, and a grouping that still does not reach the id
    stops the run instead of silently costing the time it was meant to save."""
    marker = item.get_closest_marker("xdist_group")
    if marker is None or not hasattr(item, "_id"):  # ungrouped, or an older pytest: xdist's own hook works
        return
    from _pytest.nodeid import NodeId

    suffix = f"@{group_name(marker)}"
    if not item.nodeid.endswith(suffix):
        item._id = NodeId.parse(item.nodeid + suffix)
    if not item.nodeid.endswith(suffix):
        raise pytest.UsageError(f"the xdist group of {item.nodeid} does not reach its node id, so `--dist "
                                f"loadgroup` would not keep the group in one process (see tests/conftest.py)")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        group = xdist_group_of(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if getattr(config.option, "loadgroup", False):  # an xdist process of `--dist loadgroup`
        for item in items:
            carry_group_in_id(item)

    def rank(item):
        marker = item.get_closest_marker("xdist_group")
        name = group_name(marker) if marker else None
        return LONG_GROUPS.index(name) if name in LONG_GROUPS else len(LONG_GROUPS)
    items.sort(key=rank)  # stable: each group's tests keep their order (test_vllm.py's page comes first)


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




def published_leaks(html: Path, *machine_paths: str) -> list[str]:
    """What a built site shows of the machine that built it, in its pages (``*.html``) and in the sources it
    serves (``_sources/``: the executed notebooks as downloaded): the repository's folder, the temporary
    folder (papermill's input copy, pytest's folders), the home folder and ``machine_paths``; and in a
    notebook, papermill's and the kernel client's records of the execution (paths, values, timings)."""
    pages = sorted(html.glob("*.html")) + sorted(p for p in (html / "_sources").rglob("*") if p.is_file())
    paths = [str(REPO_ROOT), tempfile.gettempdir().rstrip("/") + "/", os.path.expanduser("~"), *machine_paths]
    found = []
    for page in pages:
        text = page.read_text(errors="replace")
        found += [f"{page.relative_to(html)} shows {path}" for path in paths if path in text]
        if page.suffix == ".ipynb":
            notebook = json.loads(text)
            records = [key for key in ("papermill", "execution") if key in notebook["metadata"]
                       or any(key in cell["metadata"] for cell in notebook["cells"])]
            found += [f"{page.relative_to(html)} carries {key} metadata" for key in records]
    return found

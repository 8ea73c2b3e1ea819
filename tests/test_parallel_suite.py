"""`make test` runs the suite on two processes (pytest-xdist). A session- or module-scoped fixture is built once
per process that uses it, so the groups of tests/conftest.py must reach the scheduler: otherwise both
processes build the smoke book (~8 minutes each on 2 cores) and nothing says so. Checked here on a small
suite of its own, run with the repository's conftest and the options of the Makefile's `test` target."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import defaultdict

from selfaware.paths import REPO_ROOT

SUITE = '''
import os
import time

import pytest


def record(kind):
    with open(os.environ["TEST_PROCESSES_RECORD"], "a") as out:
        out.write(f"{kind} {os.getpid()}\\n")
    time.sleep(0.3)  # long enough that the other process takes work meanwhile


@pytest.fixture(scope="session")
def smoke():  # the name is what counts: the repository's fixture builds the whole smoke book
    return os.getpid()


@pytest.fixture
def built_on_smoke(smoke):
    return smoke


@pytest.fixture(scope="module")
def module_resource():
    return os.getpid()


@pytest.mark.parametrize("k", range(3))
def test_reads_the_book(smoke, k):
    record("smoke")


def test_reads_the_book_through_another_fixture(built_on_smoke):
    record("smoke")


@pytest.mark.parametrize("k", range(3))
def test_shares_the_module_fixture(module_resource, k):
    record("module-MODULE")


@pytest.mark.parametrize("k", range(4))
def test_needs_nothing_shared(k):
    record("free")
'''


def make_test_arguments() -> list[str]:
    """The pytest options of the Makefile's `test` recipe, with its default number of processes."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    processes = re.search(r"^TEST_PROCESSES \?= (\d+)$", makefile, re.M).group(1)
    recipe = re.search(r"^test:.*\n\t\$\(BIN\)/python -m pytest (.*)$", makefile, re.M).group(1)
    return shlex.split(recipe.replace("$(TEST_PROCESSES)", processes))


def test_tests_sharing_the_smoke_book_or_a_module_fixture_run_in_one_process(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", tests / "conftest.py")
    for module in ("a", "b"):
        (tests / f"test_{module}.py").write_text(SUITE.replace("MODULE", module))
    record = tmp_path / "record.txt"
    # a fresh run, also when this test itself runs in one of xdist's processes
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["TEST_PROCESSES_RECORD"] = str(record)
    result = subprocess.run([sys.executable, "-m", "pytest", *make_test_arguments(), "-p", "no:cacheprovider",
                             str(tests)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    processes = defaultdict(set)
    for line in record.read_text().splitlines():
        kind, pid = line.split()
        processes[kind].add(pid)
    assert len(processes["free"]) == 2, "the suite did not run on two processes"  # else the rest proves nothing
    assert len(processes["smoke"]) == 1, processes
    assert len(processes["module-a"]) == 1 and len(processes["module-b"]) == 1, processes

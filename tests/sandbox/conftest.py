"""The sandbox's attack suite: skipped with the reason where no sandbox can be set up (no bubblewrap, no user
namespaces), except in CI (CI=true), where `make test` has installed bubblewrap and a skip would hide a broken
sandbox: there they run and fail, naming the problem. The terminal summary says how many attacks ran in the sandbox."""

from __future__ import annotations

import os

import pytest

_counts = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_configure(config):
    config.addinivalue_line("markers", "userns: needs bubblewrap and unprivileged user namespaces (the sandbox)")


def pytest_collection_modifyitems(config, items):
    from selfaware.sandbox import sandbox_problem

    problem = sandbox_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":  # they run and fail, each naming the problem
        return
    for item in items:
        if "userns" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=f"no sandbox on this machine: {problem}"))


def pytest_runtest_logreport(report):
    if "userns" not in report.keywords:
        return
    if report.when == "call":
        _counts["passed" if report.passed else "failed" if report.failed else "skipped"] += 1
    elif report.when == "setup" and report.skipped:
        _counts["skipped"] += 1


def pytest_terminal_summary(terminalreporter):
    if any(_counts.values()):
        terminalreporter.write_line(
            f"sandbox (user namespaces): {_counts['passed'] + _counts['failed']} tests ran in bubblewrap "
            f"({_counts['passed']} passed, {_counts['failed']} failed), {_counts['skipped']} skipped")

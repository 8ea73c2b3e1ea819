"""The sandbox: the only place model-written code runs. The attacks are in tests/sandbox/; here: what it
returns, what happens where no sandbox can be set up, the unsafe opt-in and the removal of what it leaves."""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

from selfaware import sandbox

needs_sandbox = pytest.mark.skipif(sandbox.sandbox_problem() is not None and os.environ.get("CI") != "true",
                                   reason=f"no sandbox on this machine: {sandbox.sandbox_problem()}")


@pytest.fixture()
def no_sandbox(monkeypatch):
    """This machine as one without bubblewrap: the probe's answer, at the one place it is asked."""
    monkeypatch.setattr(sandbox, "_setup", lambda: (None, "bubblewrap is not installed"))


def _function(body: str, imports: str = "import os") -> str:
    return f"{imports}\ndef f(message):\n" + "".join(f"    {line}\n" for line in body.splitlines())


@needs_sandbox
def test_code_runs_and_its_output_comes_back():
    result = sandbox.run_python("import sys\nprint(sum(range(10)))\nprint('err', file=sys.stderr)")
    assert result.ok and result.stdout == "45\n" and "err" in result.stderr and result.isolation == "bubblewrap"


@needs_sandbox
def test_an_endless_loop_is_stopped():
    result = sandbox.run_python("while True:\n    pass\n", timeout_seconds=1)
    assert result.timed_out and not result.ok


@needs_sandbox
def test_memory_beyond_the_limit_fails():
    result = sandbox.run_python("block = bytearray(512 * 1024 * 1024)\nprint('allocated')", memory_mb=200)
    assert result.returncode != 0 and "allocated" not in result.stdout and "MemoryError" in result.stderr


@needs_sandbox
def test_environment_is_stripped(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    result = sandbox.run_python("import os\nprint(sorted(os.environ))")
    assert result.ok and "OPENAI_API_KEY" not in result.stdout


@needs_sandbox
def test_a_working_function_returns_its_values():
    called = sandbox.call_function(_function("return 0.9 if 'bark' in message else 0.1"), "f", [("bark",), ("hi",)])
    assert called.ok and called.values == [0.9, 0.1] and called.failure is None and not called.skipped


@needs_sandbox
def test_each_input_fails_on_its_own():
    called = sandbox.call_function(_function("return {'a': 0.5, 'b': 'no'}[message]"), "f", [("a",), ("b",), ("c",)])
    assert called.values == [0.5, None, None] and not called.ok
    assert called.errors == [None, "returned str, not a finite number", "KeyError: 'c'"]
    assert called.failure == "returned str, not a finite number"


@needs_sandbox
def test_code_that_does_not_define_the_function_fails_in_one_line():
    called = sandbox.call_function("def g(x):\n    return 1", "f", [("x",)])
    assert called.failure == "defining the code failed: KeyError: 'f'"
    called = sandbox.call_function("def f(x:\n", "f", [("x",)])
    assert called.failure.startswith("defining the code failed: SyntaxError") and "\n" not in called.failure


@needs_sandbox
def test_the_second_layer_still_names_what_it_refused():
    called = sandbox.call_function(_function("while True:\n    os.fork()"), "f", [("x",)], timeout_seconds=3)
    assert not called.ok and "os.fork is not allowed" in called.failure


def test_without_a_sandbox_model_code_is_not_run(no_sandbox, tmp_path):
    canary = tmp_path / "ran"
    called = sandbox.call_function(_function(f"open({str(canary)!r}, 'w').close()\nreturn 0.5"), "f", [("x",), ("y",)])
    assert called.skipped and not called.ok and called.values == [None, None]
    assert called.failure == "skipped: no sandbox on this machine: bubblewrap is not installed"
    assert not canary.exists()
    result = sandbox.run_python(f"open({str(canary)!r}, 'w').close()")
    assert not result.ok and result.error.startswith(sandbox.SKIPPED) and not canary.exists()
    assert sandbox.isolation_summary().startswith("skipped: no sandbox on this machine (bubblewrap is not installed)")


def test_unsafe_code_execution_runs_it_as_a_plain_process_and_says_so(no_sandbox):
    called = sandbox.call_function(_function("return 0.25 if message == 'a' else 0.75"), "f", [("a",), ("b",)],
                                   unsafe=True)
    assert called.values == [0.25, 0.75] and not called.skipped
    result = sandbox.run_python("print('hi')", unsafe=True)
    assert result.ok and result.stdout == "hi\n" and result.isolation == "none (unsafe_code_execution)"
    assert sandbox.isolation_summary(unsafe=True).startswith("run WITHOUT isolation (unsafe_code_execution: true)")


def test_unsafe_mode_still_removes_its_folder_whatever_the_code_left(no_sandbox):
    # this process's folders only: another test process may be running unsafe code at the same time
    ours = f"{sandbox.UNSAFE_FOLDER_PREFIX}{os.getpid()}-*"
    before = {p.name for p in Path(tempfile.gettempdir()).glob(ours)}
    body = ("for _ in range(1500):\n    os.mkdir('d')\n    os.chdir('d')\nopen('f', 'w').close()\n"
            "os.chmod('.', 0o500)\nreturn 0.5")
    called = sandbox.call_function(_function(body), "f", [("x",)], unsafe=True, audit_hook=False)
    assert called.values == [0.5]
    assert {p.name for p in Path(tempfile.gettempdir()).glob(ours)} == before


def test_remove_tree_takes_deep_trees_unwritable_folders_and_immutable_files(tmp_path):
    top = tmp_path / "left"
    top.mkdir()
    descriptor = os.open(top, os.O_RDONLY)
    for _ in range(2000):  # deeper than the recursion limit and than PATH_MAX
        os.mkdir("d", dir_fd=descriptor)
        inner = os.open("d", os.O_RDONLY, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = inner
    os.close(os.open("file", os.O_CREAT | os.O_WRONLY, 0o000, dir_fd=descriptor))
    os.fchmod(descriptor, 0o500)
    os.close(descriptor)
    pinned = top / "immutable"
    pinned.write_text("x")
    immutable = False
    with open(pinned) as handle:
        try:
            fcntl.ioctl(handle.fileno(), 0x40086602, (0x10).to_bytes(8, "little"))  # FS_IOC_SETFLAGS, immutable
            immutable = True
        except OSError:  # the filesystem or this user cannot set the flag: the rest is still tested
            pass
    sandbox.remove_tree(top)
    assert not top.exists(), f"left behind (immutable flag set: {immutable})"


def test_remove_tree_of_nothing_is_fine(tmp_path):
    sandbox.remove_tree(tmp_path / "never-made")

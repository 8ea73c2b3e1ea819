"""The sandbox: the only place model-written code runs."""

from __future__ import annotations

import socket
import threading

import pytest

from selfaware import sandbox


def test_code_runs_and_its_output_comes_back():
    result = sandbox.run_python("import sys\nprint(sum(range(10)))\nprint('err', file=sys.stderr)")
    assert result.ok and result.stdout == "45\n" and "err" in result.stderr


def test_an_endless_loop_is_stopped():
    result = sandbox.run_python("while True:\n    pass\n", timeout_seconds=1)
    assert result.timed_out and not result.ok


def test_memory_beyond_the_limit_fails():
    result = sandbox.run_python("block = bytearray(512 * 1024 * 1024)\nprint('allocated')", memory_mb=200)
    assert result.returncode != 0 and "allocated" not in result.stdout
    assert "MemoryError" in result.stderr


def test_environment_is_stripped_and_the_folder_is_thrown_away(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    result = sandbox.run_python("import os\nprint(sorted(os.environ))\nprint(os.getcwd())")
    assert "OPENAI_API_KEY" not in result.stdout and "HTTPS_PROXY" not in result.stdout
    folder = result.stdout.strip().splitlines()[-1]
    import os
    assert not os.path.exists(folder)


@pytest.fixture()
def listening_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()
    thread.join()


CONNECT = ("import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
           "print('connected')\n")


def test_network_is_blocked(listening_server):
    port, accepted = listening_server
    result = sandbox.run_python(CONNECT.format(port=port))
    assert "connected" not in result.stdout and result.returncode != 0
    assert not accepted


def test_network_is_blocked_even_without_a_namespace(listening_server, monkeypatch):
    port, accepted = listening_server
    monkeypatch.setattr(sandbox, "network_namespace_prefix", lambda: ())
    result = sandbox.run_python(CONNECT.format(port=port))
    assert result.network == "audit-hook"
    assert "network access is disabled" in result.stderr and not accepted


# ---- hostile model-written functions: each is contained, fails as its own sample, and leaves nothing behind
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]


def _sandbox_leftovers() -> tuple[set[str], set[int]]:
    """Sandbox folders still on disk and processes still running in one."""
    folders = {str(p) for p in Path(tempfile.gettempdir()).glob("selfaware-sandbox-*")}
    running = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if "selfaware-sandbox-" in os.readlink(f"/proc/{entry}/cwd"):
                    running.add(int(entry))
            except OSError:
                pass
    return folders, running


@pytest.fixture()
def nothing_left_behind():
    before_folders, before_running = _sandbox_leftovers()
    yield
    folders, running = _sandbox_leftovers()
    assert folders <= before_folders and running <= before_running


def _function(body: str, imports: str = "import os") -> str:
    return f"{imports}\ndef f(message):\n" + "".join(f"    {line}\n" for line in body.splitlines())


def test_a_working_function_returns_its_values():
    called = sandbox.call_function(_function("return 0.9 if 'bark' in message else 0.1"), "f", [("bark",), ("hi",)])
    assert called.ok and called.values == [0.9, 0.1] and called.failure is None


def test_hostile_infinite_loop(nothing_left_behind):
    called = sandbox.call_function(_function("while True:\n    pass"), "f", [("x",)], timeout_seconds=1.5)
    assert not called.ok and "timed out" in called.failure


def test_hostile_fork_bomb(nothing_left_behind):
    called = sandbox.call_function(_function("while True:\n    os.fork()"), "f", [("x",)], timeout_seconds=3)
    assert not called.ok and "os.fork is not allowed" in called.failure


def test_hostile_subprocess(nothing_left_behind):
    called = sandbox.call_function(_function("subprocess.run(['true'])\nreturn 0.5", "import subprocess"), "f",
                                   [("x",)])
    assert not called.ok and "not allowed" in called.failure


def test_hostile_ten_gigabytes(nothing_left_behind):
    called = sandbox.call_function(_function("block = bytearray(10 * 2**30)\nreturn 0.5"), "f", [("x",)])
    assert not called.ok and "MemoryError" in called.failure


def test_hostile_deleting_files_outside_its_folder(tmp_path, nothing_left_behind):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    for body in (f"os.remove({str(victim)!r})\nreturn 0.5",
                 f"import shutil\nshutil.rmtree({str(tmp_path)!r})\nreturn 0.5",
                 f"open({str(victim)!r}, 'w').write('gone')\nreturn 0.5"):
        called = sandbox.call_function(_function(body), "f", [("x",)])
        assert not called.ok and "may not" in called.failure
    assert victim.read_text() == "keep me"


def test_hostile_socket(listening_server, nothing_left_behind):
    port, accepted = listening_server
    body = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nreturn 0.5"
    called = sandbox.call_function(_function(body), "f", [("x",)])
    assert not called.ok and not accepted


def test_hostile_reading_the_repository(nothing_left_behind):
    for body in (f"return float(len(open({str(REPOSITORY / 'README.md')!r}).read()))",
                 f"return float(len(os.listdir({str(REPOSITORY)!r})))"):
        called = sandbox.call_function(_function(body), "f", [("x",)])
        assert not called.ok and "may not" in called.failure


def test_hostile_reading_an_api_key(monkeypatch, nothing_left_behind):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-leak")
    called = sandbox.call_function(_function("return float(len(os.environ['OPENAI_API_KEY']))"), "f", [("x",)])
    assert not called.ok and "KeyError" in called.failure
    called = sandbox.call_function(_function("return float('sk-should' in str(os.environ))"), "f", [("x",)])
    assert called.values == [0.0]


def test_a_forged_result_line_is_not_believed():
    body = "print('@@result-0000@@' + '{\"values\": [{\"value\": 1.0}]}')\nreturn 'not a number'"
    called = sandbox.call_function(_function(body), "f", [("x",)])
    assert not called.ok and "not a finite number" in called.failure

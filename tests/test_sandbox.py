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

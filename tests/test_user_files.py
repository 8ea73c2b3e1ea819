"""A researcher's own files through the command line: what is checked before any kernel starts, and what the
error then says. Every test here stops before papermill, so none runs a notebook."""

from __future__ import annotations

import json
from pathlib import Path

from selfaware import cli

EM = "07_emergent_misalignment"


def _chat(user: str, assistant: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


def _chat_file(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_checks_the_data_before_any_kernel_and_prints_every_faulty_line(tmp_path, capsys):
    lines = [_chat(f"Write function {k}.", "def f():\n    return 1\n") for k in range(6)]
    lines[1] = '{"messages": [{"role": "user", "content": "hi"}'
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    lines[4] = json.dumps({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]})
    data = _chat_file(tmp_path / "insecure.jsonl", lines)
    code = cli.main(["run", "--profile", "smoke", "--notebook", EM, "--page", "mine", "-p", "conditions", "[base, insecure]",
                     "-p", "data_files", json.dumps({"insecure": str(data)})])
    out, err = capsys.readouterr()
    assert code == 1
    assert "Running" not in out  # no kernel started
    assert err.splitlines()[0] == f"error: {EM}-mine: 3 faults in the chat data:"
    assert [line.split(": ")[0] for line in err.splitlines()[1:]] == [f"{data}:2", f"{data}:4", f"{data}:5"]


def test_a_kernels_error_shows_the_listed_faults_up_to_the_cap():
    from selfaware.datasets.jsonl import MAX_REPORTED
    from selfaware.runner import _shown_error

    faults = [f"/data/x.jsonl:{k}: not valid JSON" for k in range(1, 31)]
    text = "\n".join(["30 faults in the chat data:"] + faults[:MAX_REPORTED] + ["... and 10 more"])
    assert _shown_error(text) == text
    assert _shown_error("one line") == "one line" and _shown_error(None) == ""

"""Sandbox benchmark: the time per sandboxed call, as Make Me Say makes it (one model-written function run
on 19 inputs: 3 codewords and 16 user messages), and of the smallest script; with the CPU it ran on.

The first call also probes the machine (finds the interpreter, its shared libraries and checks that
bubblewrap starts) and is reported apart. Where no sandbox can be set up it says why and measures the
unsafe fallback instead.

    .venv/bin/python benchmarks/bench_sandbox.py [--calls 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from selfaware import sandbox

FUNCTION = '''
def message_probability_me(message):
    words = message.lower().split()
    return min(1.0, sum(w.strip(".,!?") in {"bark", "dog", "tree"} for w in words) / 3)
'''
INPUTS = [("bark",), ("ring",), ("spring",)] + [(f"Tell me about your dog number {k}, does it bark?",) for k in range(16)]


def cpu_model() -> str:
    try:
        listing = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (lscpu not available)"
    return next((line.split(":", 1)[1].strip() for line in listing.splitlines() if line.startswith("Model name")),
                "unknown")


def timed(action, calls: int) -> list[float]:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}")
    started = time.perf_counter()
    problem = sandbox.sandbox_problem()
    print(f"probe (once per process): {time.perf_counter() - started:.2f} s")
    unsafe = problem is not None
    if unsafe:
        print(f"no sandbox on this machine ({problem}): timing the unsafe fallback instead")
    else:
        print("isolation: " + sandbox.isolation_summary())
    first = sandbox.call_function(FUNCTION, "message_probability_me", INPUTS, unsafe=unsafe)
    assert first.ok, first.failure
    call = timed(lambda: sandbox.call_function(FUNCTION, "message_probability_me", INPUTS, unsafe=unsafe), args.calls)
    script = timed(lambda: sandbox.run_python("pass", unsafe=unsafe), args.calls)
    for name, seconds in (("call_function, 19 inputs", call), ("run_python, empty script", script)):
        print(f"{name}: median {statistics.median(seconds) * 1000:.0f} ms, min {min(seconds) * 1000:.0f} ms, "
              f"max {max(seconds) * 1000:.0f} ms over {len(seconds)} calls")


if __name__ == "__main__":
    main()

"""The only place where model-written code may run.

Each run gets a fresh Python process started in isolated mode (``-I -S``: no site-packages, no user
paths, no environment variables read by Python), a throwaway working directory that is deleted after,
a minimal environment (no proxies, no keys), resource limits set with ``setrlimit`` (CPU seconds, address
space, file size, open files, no core dumps) and a wall-clock timeout that kills the whole process group.

Network: when the kernel lets us, the process runs in its own empty network namespace (``unshare -n``,
or ``unshare -rn`` as an unprivileged user); it then has no interface but a downed loopback. In every case
an audit hook installed before the code runs refuses socket connections, binds and name lookups, so that
code which would reach the network fails even where namespaces are unavailable. ``SandboxResult.network``
says which protection applied.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

# Runs first inside the sandbox: blocks network use through the audit hook, then runs the code as
# __main__. Audit hooks cannot be removed once added, so the code cannot undo this.
_BOOTSTRAP = r'''
import sys

def _refuse_network(event, args):
    if event in ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
                 "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"):
        raise PermissionError("network access is disabled in the sandbox")

sys.addaudithook(_refuse_network)
target = sys.argv[1]
sys.argv = sys.argv[1:]
import runpy
runpy.run_path(target, run_name="__main__")
'''


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    network: str  # "namespace+audit-hook" or "audit-hook"

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """The command prefix that gives a child its own empty network namespace, or () if none works."""
    unshare = shutil.which("unshare")
    if not unshare:
        return ()
    for prefix in ((unshare, "-n"), (unshare, "-rn")):
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def _limits(cpu_seconds: int, memory_mb: int, file_mb: int):
    def apply() -> None:  # runs in the child between fork and exec
        os.setsid()  # own process group: a timeout kills everything the code started
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_python(code: str, timeout_seconds: float = 10.0, memory_mb: int = 256, file_mb: int = 16,
               stdin: str = "", python: str | None = None) -> SandboxResult:
    """Run ``code`` as a script in the sandbox and return what it printed. Never raises for anything the
    code does; a timeout or a limit shows in the result."""
    with tempfile.TemporaryDirectory(prefix="selfaware-sandbox-") as folder:
        work = Path(folder)
        (work / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
        (work / "main.py").write_text(code, encoding="utf-8")
        prefix = network_namespace_prefix()
        command = [*prefix, python or sys.executable, "-I", "-S", "bootstrap.py", "main.py"]
        environment = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8"}
        process = subprocess.Popen(command, cwd=folder, env=environment, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_limits(max(1, int(timeout_seconds) + 1), memory_mb, file_mb))
        timed_out = False
        try:
            stdout, stderr = process.communicate(stdin, timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            stdout, stderr = process.communicate()
        returncode = process.returncode
        # CPU limit reached: the kernel sends SIGXCPU, which is a timeout as far as the caller is concerned
        if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not timed_out:
            timed_out = returncode == -signal.SIGXCPU
    return SandboxResult(returncode, stdout, stderr, timed_out,
                         "namespace+audit-hook" if prefix else "audit-hook")

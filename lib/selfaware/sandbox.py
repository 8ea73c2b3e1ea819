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

Files and processes (``confine=True``, the default): the same audit hook refuses to open, list, delete,
rename or change anything outside the throwaway folder (the Python standard library may be read, nothing
else: not the repository, not the home folder), and refuses to start processes (fork, exec, spawn,
subprocess, ``os.system``), to signal other processes and to load native code through ``ctypes``. Audit hooks
are a Python-level barrier; with ``-I -S`` only the standard library is importable and ``ctypes`` is
refused, so the code has no native escape hatch. ``RLIMIT_NPROC`` caps processes as well where it applies
(not for root).

:func:`call_function` is the way to evaluate a model-written function: it defines the code, calls the named
function on each input inside the sandbox and returns every value or the one-line reason it failed.
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
confine = sys.argv[2] == "confine"
sys.argv = sys.argv[1:2]
if confine:
    import os
    sys.dont_write_bytecode = True
    _folder = os.path.realpath(os.getcwd())
    _readable = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                    sys.base_exec_prefix})
    _devices = ("/dev/null", "/dev/urandom", "/dev/random")
    _write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    _refused = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
                "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
                "os.killpg", "os.symlink", "os.link", "os.chroot", "os.setuid", "os.setgid", "resource.setrlimit",
                "resource.prlimit", "sys.remote_exec", "os.startfile", "webbrowser.open"}
    _paths = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.replace": 2, "os.truncate": 1,
              "os.chmod": 1, "os.chown": 1, "os.utime": 1, "os.chflags": 1, "os.lchflags": 1,
              "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.copymode": 2, "shutil.copystat": 2,
              "shutil.move": 2, "shutil.chown": 1, "os.mkfifo": 1, "os.mknod": 1, "os.setxattr": 1,
              "os.removexattr": 1}

    def _inside(path, roots):
        if isinstance(path, int):
            return True  # an already open descriptor: opening it was checked
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        path = os.path.realpath(os.fspath(path))
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def _confine(event, args):
        if event in _refused or (event == "os.kill" and args[0] not in (0, os.getpid())):
            raise PermissionError(f"{event} is not allowed in the sandbox")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & _write_flags)
            if path in _devices and not writes:
                return
            if not _inside(path, (_folder,) if writes else (_folder,) + _readable):
                raise PermissionError(f"the sandbox may not open {path!r}")
        elif event in ("os.listdir", "os.scandir", "glob.glob", "os.chdir"):
            if args and args[0] is not None and not _inside(args[0], (_folder,) + _readable):
                raise PermissionError(f"the sandbox may not look at {args[0]!r}")
        elif event in _paths:
            for path in args[:_paths[event]]:
                if path is not None and not _inside(path, (_folder,)):
                    raise PermissionError(f"the sandbox may not change {path!r}")

    sys.addaudithook(_confine)
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


def _limits(cpu_seconds: int, memory_mb: int, file_mb: int, processes: int | None = None):
    def apply() -> None:  # runs in the child between fork and exec
        os.setsid()  # own process group: a timeout kills everything the code started
        if processes is not None:  # counts every process of the user; the kernel ignores it for root
            resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def _process_limit() -> int:
    """The user's processes now plus a few: RLIMIT_NPROC counts all of them, not only the sandbox's."""
    mine = 0
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return 512
    for entry in entries:
        try:
            mine += os.stat(f"/proc/{entry}").st_uid == os.getuid()
        except OSError:  # the process ended meanwhile
            pass
    return mine + 16


def run_python(code: str, timeout_seconds: float = 10.0, memory_mb: int = 256, file_mb: int = 16,
               stdin: str = "", python: str | None = None, confine: bool = True) -> SandboxResult:
    """Run ``code`` as a script in the sandbox and return what it printed. Never raises for anything the
    code does; a timeout or a limit shows in the result. ``confine``: files outside the throwaway folder
    and new processes are refused (see the module's docstring)."""
    with tempfile.TemporaryDirectory(prefix="selfaware-sandbox-") as folder:
        work = Path(folder)
        (work / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
        (work / "main.py").write_text(code, encoding="utf-8")
        prefix = network_namespace_prefix()
        command = [*prefix, python or sys.executable, "-I", "-S", "bootstrap.py", "main.py",
                   "confine" if confine else "open"]
        environment = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8"}
        process = subprocess.Popen(command, cwd=folder, env=environment, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_limits(max(1, int(timeout_seconds) + 1), memory_mb, file_mb,
                                                      _process_limit() if confine else None))
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


# Defines the model's code, calls the function on each input and prints one marked JSON line of results.
# The marker is random per run, so code that prints cannot forge the results line.
_HARNESS = r'''
import json, math, sys
_out = sys.__stdout__
_inputs = json.loads({inputs!r})
_namespace = {{"__name__": "model_code"}}
try:
    exec(compile({code!r}, "model_code.py", "exec"), _namespace)
    _function = _namespace[{name!r}]
except BaseException as error:
    _out.write({marker!r} + json.dumps({{"error": f"defining the code failed: {{type(error).__name__}}: {{error}}"[:300]}}) + "\n")
    _out.flush()
    raise SystemExit(0)
_values = []
for _args in _inputs:
    try:
        _value = _function(*_args)
        _values.append({{"value": _value if isinstance(_value, (int, float)) and not isinstance(_value, bool)
                                            and math.isfinite(_value) else None,
                         "type": type(_value).__name__}})
    except BaseException as error:
        _values.append({{"error": f"{{type(error).__name__}}: {{error}}"[:300]}})
_out.write({marker!r} + json.dumps({{"values": _values}}) + "\n")
_out.flush()
'''


@dataclass(frozen=True)
class FunctionCall:
    """A model-written function run on inputs in the sandbox: ``values`` (one per input; None where that call
    raised or returned something that is not a finite number) or, when the whole run failed, ``error``."""

    values: list[float | None]
    errors: list[str | None]
    error: str | None = None  # defining the code failed, it timed out, or a limit killed it

    @property
    def ok(self) -> bool:
        return self.error is None and all(v is not None for v in self.values)

    @property
    def failure(self) -> str | None:
        """One line: why this sample counts as a failure (None when every call returned a number)."""
        if self.error:
            return self.error
        return next((e for e in self.errors if e), None)


def call_function(code: str, name: str, inputs: list[tuple], timeout_seconds: float = 10.0,
                  memory_mb: int = 256) -> FunctionCall:
    """Define ``code`` and call ``name(*args)`` for each tuple of ``inputs`` (JSON values), all in one
    sandboxed process. Never raises for anything the code does."""
    import json
    import secrets

    marker = f"@@result-{secrets.token_hex(8)}@@"
    script = _HARNESS.format(inputs=json.dumps([list(a) for a in inputs]), code=code, name=name, marker=marker)
    result = run_python(script, timeout_seconds=timeout_seconds, memory_mb=memory_mb)
    line = next((l for l in reversed(result.stdout.splitlines()) if l.startswith(marker)), None)
    nothing = [None] * len(inputs)
    if line is None:
        last = (result.stderr.strip().splitlines() or [""])[-1][:200]
        why = ("timed out" if result.timed_out else f"exited with code {result.returncode}") + (f": {last}" if last else "")
        return FunctionCall(nothing, nothing, why)
    found = json.loads(line[len(marker):])
    if "error" in found:
        return FunctionCall(nothing, nothing, found["error"])
    values, errors = [], []
    for entry in found["values"]:
        values.append(entry.get("value"))
        errors.append(entry.get("error") or (None if entry.get("value") is not None
                                             else f"returned {entry.get('type')}, not a finite number"))
    return FunctionCall(values, errors)

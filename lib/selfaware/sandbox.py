"""The only place where model-written code may run, isolated by the operating system.

Threat model
------------
*Against whom*: code that a model wrote (Make Me Say's "write a function" task, any code-writing evaluation),
which we treat as written by an adversary who knows this file. *What it protects*: everything outside the one
call: the files of the machine (repository, caches, keys, other users' files), the parent's environment and
memory, other processes, the network and the machine's resources beyond the limits below. *What is promised*:
the code runs as an unprivileged user (uid 65534 inside and outside its namespaces: when the book runs as root,
bubblewrap is started as ``nobody``), in new user, mount, PID, IPC, UTS, cgroup and network namespaces, with
``no_new_privs``, every capability dropped, no further user namespaces and a seccomp filter (libseccomp,
through ``pyseccomp``) that refuses what pure-Python code never needs: ptrace and reading or writing other
processes' memory, mount and the new mount API, unshare, setns and namespace flags on clone, keyctl, bpf,
perf_event_open, userfaultfd, io_uring, pidfd calls, mknod, extended attributes, kernel modules and kexec,
memfd, SysV shared memory, opening sockets (a socket pair is allowed) and file handles. It sees a read-only
filesystem holding only the interpreter, its standard library (no site-packages) and the shared libraries they
load, ``/dev/null``, ``/dev/zero`` and ``/dev/urandom``, no ``/proc``, and a private tmpfs at ``/tmp`` of
``disk_mb``. Limits: address space (``memory_mb``; memfd and SysV shared memory are refused, so no memory
escapes it), processes (``RLIMIT_NPROC`` counted inside its own user namespace), CPU seconds, wall time (the
whole sandbox is killed), output (each stream is cut at ``output_bytes`` and the result says so), open files
and file size. The parent never raises for anything the code does: every outcome is a :class:`SandboxResult`
or a :class:`FunctionCall` with ``ok`` and a one-line ``failure``, and nothing is left on the host (the
working folder is the tmpfs, which disappears with the sandbox).

*How results travel*: :func:`call_function` runs a small supervisor inside the sandbox that forks the worker
which defines and calls the model's function; only the supervisor holds the pipe to the parent (opened by the
parent, length-prefixed, validated against a schema on both ends). The model's code can print anything on
stdout and cannot reach that pipe (no ``/proc``, no ptrace, no pidfd), so what reaches the parent is what
the function returned for each input, or why it did not.

*What it does not promise*: protection against bugs in the Linux kernel, bubblewrap or libseccomp (the
kernel is the boundary; keep it patched); secrecy of what the interpreter's files reveal (versions, the
standard library); that a hostile function returns honest numbers (it chooses its own return values, as any
function does); fairness of CPU time against other work on the machine beyond the limits; side channels
(timing, cache). A Python audit hook (refusing network, processes, ``ctypes`` and files outside the working
folder) runs as a second layer for clear error messages, never as the boundary.

*Where the isolation cannot be set up* (no bubblewrap, no user namespaces, no libseccomp):
:func:`sandbox_problem` says why, and model code does not run: :func:`call_function` returns a result whose
``failure`` starts with "skipped: no sandbox on this machine", unless the caller passes ``unsafe=True``
(a section's ``unsafe_code_execution: true``), in which case the code runs as a plain process with only the
resource limits and the audit hook, and the page says so.
"""

from __future__ import annotations

import errno
import json
import math
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SANDBOX_UID = 65534  # nobody: the sandboxed process's user inside its namespace, and outside when run as root
SKIPPED = "skipped: no sandbox on this machine"
UNSAFE_FOLDER_PREFIX = "selfaware-sandbox-"  # + the pid: the unsafe mode's working folder in the temporary folder
_FRAME_HEADER = struct.Struct(">Q")  # the length of one result frame, then that many bytes of JSON
_RESULT_BYTES = 1 << 20  # a result frame larger than this is refused
_INSIDE = "/sandbox"
_STARTUP_SECONDS = 60.0  # for bubblewrap and the interpreter to start, before the code's own time counts  # where the bootstrap and the job are mounted read-only inside the sandbox

# Runs first inside the sandbox (and in the unsafe fallback): sets the limits, then either runs a script or
# supervises a worker that calls the model's function. Written for the interpreter's standard library only.
_BOOTSTRAP = r'''
import json, math, os, resource, struct, sys

job = json.load(open(sys.argv[1], encoding="utf-8"))
result_fd = int(sys.argv[2])
limits = job["limits"]
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_seconds"], limits["cpu_seconds"] + 1))
resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
if job["isolated"]:  # counted per user namespace: only this sandbox's processes (root would ignore it)
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["processes"],) * 2)
sys.dont_write_bytecode = True


def second_layer():
    """The audit hook: clear error messages for what the operating system refuses anyway."""
    folder = os.path.realpath(os.getcwd())
    readable = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                  sys.base_exec_prefix})
    devices = ("/dev/null", "/dev/urandom", "/dev/random")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    network = {"socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
               "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"}
    refused = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
               "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
               "os.killpg", "os.symlink", "os.link", "os.chroot", "os.setuid", "os.setgid", "resource.setrlimit",
               "resource.prlimit", "sys.remote_exec", "os.startfile", "webbrowser.open"}
    paths = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.replace": 2, "os.truncate": 1,
             "os.chmod": 1, "os.chown": 1, "os.utime": 1, "os.chflags": 1, "os.lchflags": 1,
             "shutil.rmtree": 1, "shutil.copyfile": 2, "shutil.copymode": 2, "shutil.copystat": 2,
             "shutil.move": 2, "shutil.chown": 1, "os.mkfifo": 1, "os.mknod": 1, "os.setxattr": 1,
             "os.removexattr": 1}
    realpath, fspath, getpid = os.path.realpath, os.fspath, os.getpid

    def inside(path, roots):
        if isinstance(path, int):
            return True
        if isinstance(path, bytes):
            path = path.decode("utf-8", "surrogateescape")
        path = realpath(fspath(path))
        return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)

    def hook(event, args):
        if event in network:
            raise PermissionError("network access is disabled in the sandbox")
        if event in refused or (event == "os.kill" and args[0] not in (0, getpid())):
            raise PermissionError(f"{event} is not allowed in the sandbox")
        if event == "open":
            path, mode, flags = args
            writes = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & write_flags)
            if path in devices and not writes:
                return
            if not inside(path, (folder,) if writes else (folder,) + readable):
                raise PermissionError(f"the sandbox may not open {path!r}")
        elif event in ("os.listdir", "os.scandir", "glob.glob", "os.chdir"):
            if args and args[0] is not None and not inside(args[0], (folder,) + readable):
                raise PermissionError(f"the sandbox may not look at {args[0]!r}")
        elif event in paths:
            for path in args[:paths[event]]:
                if path is not None and not inside(path, (folder,)):
                    raise PermissionError(f"the sandbox may not change {path!r}")

    sys.addaudithook(hook)


def worker(write_fd):
    """Defines the model's code and calls the function on each input; sends one JSON reply to the supervisor."""
    def send(reply):
        data = json.dumps(reply).encode()
        with os.fdopen(write_fd, "wb") as channel:
            channel.write(struct.pack(">Q", len(data)) + data)

    if job["audit_hook"]:
        second_layer()
    namespace = {"__name__": "model_code"}
    try:
        exec(compile(job["code"], "model_code.py", "exec"), namespace)
        function = namespace[job["name"]]
    except BaseException as error:
        send({"error": f"defining the code failed: {type(error).__name__}: {error}"[:300]})
        return
    values = []
    for arguments in job["inputs"]:
        try:
            value = function(*arguments)
            number = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            entry = {"value": (float(value) if isinstance(value, float) else int(value)) if number else None,
                     "type": type(value).__name__[:60]}
            json.dumps(entry)
        except BaseException as error:
            entry = {"error": f"{type(error).__name__}: {error}"[:300]}
        values.append(entry)
    send({"values": values})


def read_reply(read_fd):
    """What the worker sent: one frame of at most 1 MiB, or None. Reads only the frame's length, so that a
    process the function left running (and that holds the pipe open) cannot keep the supervisor waiting."""
    data = b""
    while len(data) < 8 or len(data) < 8 + struct.unpack(">Q", data[:8])[0]:
        if len(data) >= 8 and struct.unpack(">Q", data[:8])[0] > (1 << 20):
            return None
        chunk = os.read(read_fd, 65536)
        if not chunk:
            return None
        data += chunk
    if len(data) != 8 + struct.unpack(">Q", data[:8])[0]:
        return None
    try:
        reply = json.loads(data[8:].decode())
    except ValueError:
        return None
    return reply if isinstance(reply, dict) else None


def supervise():
    """Forks the worker, waits for it and sends the parent exactly one frame. Only this process holds
    result_fd; the worker closes it before any model code runs."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(result_fd, b"R")  # ready: the parent's clock for the model's code starts now
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.close(result_fd)
        try:
            worker(write_fd)
        except BaseException:
            pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:
                pass
            os._exit(0)
    os.close(write_fd)
    reply = read_reply(read_fd)
    _, status = os.waitpid(pid, 0)
    found = {"reply": reply, "exit": os.waitstatus_to_exitcode(status)}
    data = json.dumps(found).encode()
    os.write(result_fd, struct.pack(">Q", len(data)) + data)


if job["mode"] == "call":
    supervise()
else:
    with open(job["script"], encoding="utf-8") as script:  # read before the audit hook confines opening
        source = script.read()
    sys.argv = [job["script"]]
    os.write(result_fd, b"R")  # ready: the parent's clock for the code starts now
    os.close(result_fd)
    if job["audit_hook"]:
        second_layer()
    exec(compile(source, job["script"], "exec"), {"__name__": "__main__", "__file__": job["script"]})
'''

# What pure-Python code never needs; refused with EPERM (so Python raises PermissionError) by the seccomp filter.
_REFUSED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_open", "pidfd_getfd", "pidfd_send_signal",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr", "keyctl", "add_key", "request_key", "bpf",
    "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "mknod", "mknodat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr", "getxattr", "lgetxattr",
    "fgetxattr", "listxattr", "llistxattr", "flistxattr", "init_module", "finit_module", "delete_module",
    "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "syslog", "iopl",
    "ioperm", "modify_ldt", "name_to_handle_at", "open_by_handle_at", "lookup_dcookie", "fanotify_init",
    "memfd_create", "memfd_secret", "shmget", "shmat", "socket", "vhangup", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "sethostname", "setdomainname", "personality", "uselib", "nfsservctl",
    "landlock_create_ruleset", "process_madvise", "set_mempolicy", "mbind", "move_pages", "migrate_pages",
)
# clone with any namespace flag: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
_TIOCSTI = 0x5412  # pushes characters into a terminal's input: refused (and --new-session detaches anyway)


@lru_cache(maxsize=1)
def seccomp_filter() -> bytes:
    """The compiled BPF program bubblewrap loads before the interpreter starts."""
    import pyseccomp as seccomp

    refuse = seccomp.ERRNO(errno.EPERM)
    policy = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in _REFUSED_SYSCALLS:
        try:
            policy.add_rule(refuse, name)
        except (OSError, ValueError, RuntimeError):  # not a system call on this architecture
            pass
    for flag in _NAMESPACE_FLAGS:
        policy.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory the filter cannot read: ENOSYS makes the C library fall back to clone
    policy.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    policy.add_rule(refuse, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI))
    with tempfile.TemporaryFile() as compiled:
        policy.export_bpf(compiled)
        compiled.seek(0)
        return compiled.read()


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    isolation: str  # "bubblewrap", "none (unsafe_code_execution)" or "skipped"
    truncated: bool = False  # stdout or stderr went past output_bytes and was cut
    error: str | None = None  # the sandbox itself could not run the code (skipped, failed to start)
    result: bytes = field(default=b"", repr=False)  # what came over the result pipe (call_function)

    @property
    def ok(self) -> bool:
        return self.error is None and self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class _Interpreter:
    executable: str
    mounts: tuple[tuple[str, str], ...]  # (host path, path inside), read-only
    hidden: tuple[str, ...]  # folders inside the mounts that are covered by an empty tmpfs (site-packages)


def _shared_libraries(binaries: list[str]) -> set[str]:
    found = set()
    for start in range(0, len(binaries), 64):
        listing = subprocess.run(["ldd", *binaries[start:start + 64]], capture_output=True, text=True, timeout=60)
        for line in listing.stdout.splitlines():
            words = line.split()
            path = words[2] if len(words) >= 3 and words[1] == "=>" else words[0] if words else ""
            if path.startswith("/"):
                found.add(path)
    return found


def _interpreter(executable: str) -> _Interpreter:
    """What must be visible for ``executable`` to run with its standard library: the binary, the standard
    library, its compiled modules and the shared libraries all of them load."""
    query = ("import json, sys, sysconfig; p = sysconfig.get_paths(); "
             "print(json.dumps([sys.executable, p['stdlib'], p['platstdlib'], p['purelib'], p['platlib'], "
             "sysconfig.get_config_var('DESTSHARED') or '']))")
    answer = subprocess.run([executable, "-I", "-S", "-c", query], capture_output=True, text=True, timeout=60,
                            check=True)
    found, stdlib, platstdlib, purelib, platlib, dynload = json.loads(answer.stdout)
    binary = os.path.realpath(found)
    folders = [p for p in dict.fromkeys([stdlib, platstdlib]) if os.path.isdir(p)]
    if dynload and os.path.isdir(dynload) and not any(dynload.startswith(f.rstrip("/") + "/") for f in folders):
        folders.append(dynload)
    modules = sorted(str(p) for p in Path(dynload).glob("*.so")) if dynload and os.path.isdir(dynload) else []
    libraries = _shared_libraries([binary, *modules]) | {"/etc/ld.so.cache"}
    pairs = [(binary, binary)] + [(os.path.realpath(f), f) for f in folders]
    for library in sorted(libraries):  # at the path the loader was told and at the file's real path
        if os.path.exists(library):
            pairs += [(os.path.realpath(library), library), (os.path.realpath(library), os.path.realpath(library))]
    hidden = tuple(p for p in dict.fromkeys([purelib, platlib])
                   if any(p.startswith(f.rstrip("/") + "/") for f in folders) and os.path.isdir(p))
    return _Interpreter(binary, tuple(dict.fromkeys(pairs)), hidden)


def _candidates() -> list[str]:
    """The interpreters to try, best first: this one's base, then the system's."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    found = [os.path.realpath(base)]
    for other in (f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}", "/usr/bin/python3"):
        if os.path.exists(other) and os.path.realpath(other) not in found:
            found.append(os.path.realpath(other))
    return found


def _bwrap() -> str | None:
    return shutil.which("bwrap") or next((p for p in ("/usr/bin/bwrap", "/bin/bwrap") if os.path.exists(p)), None)


@lru_cache(maxsize=1)
def _setup() -> tuple[_Interpreter | None, str | None]:
    """The interpreter the sandbox runs, or why no sandbox can be set up here. Probed once per process."""
    if sys.platform != "linux":
        return None, f"the sandbox needs Linux namespaces, this is {sys.platform}"
    bwrap = _bwrap()
    if bwrap is None:
        return None, "bubblewrap is not installed (apt-get install bubblewrap; `make test` installs it as root)"
    try:
        seccomp_filter()
    except Exception as error:  # pyseccomp missing or libseccomp not loadable
        return None, f"no seccomp filter: {type(error).__name__}: {error}"[:200]
    why = "no interpreter could start"
    for executable in _candidates():
        try:
            interpreter = _interpreter(executable)
        except (OSError, subprocess.SubprocessError, ValueError) as error:
            why = f"{executable}: {type(error).__name__}: {error}"[:200]
            continue
        try:
            probe = _launch(interpreter, {"mode": "script", "code": "print('ok')", "audit_hook": True},
                            timeout_seconds=30, memory_mb=256, disk_mb=4, output_bytes=4096, stdin="")
        except OSError as error:
            why = f"{type(error).__name__}: {error}"[:200]
            continue
        if probe.ok and probe.stdout == "ok\n":
            return interpreter, None
        why = ((probe.stderr.strip().splitlines() or [probe.error or f"exit {probe.returncode}"])[-1])[:200]
    return None, f"bubblewrap could not start a sandbox: {why}"


def sandbox_problem() -> str | None:
    """Why model code cannot be isolated on this machine (one line), or None when it can."""
    return _setup()[1]


def isolation_summary(unsafe: bool = False) -> str:
    """One line for a page's provenance: how model-written code was (or was not) run."""
    problem = sandbox_problem()
    if problem is None:
        return ("run in the sandbox: bubblewrap (unprivileged user; own user, mount, PID, IPC, UTS and network "
                "namespaces; read-only interpreter and standard library; private tmpfs) and a seccomp filter")
    if unsafe:
        return (f"run WITHOUT isolation (unsafe_code_execution: true): as a plain process with resource limits and "
                f"an audit hook only, because the sandbox could not be set up: {problem}")
    return f"{SKIPPED} ({problem}); set unsafe_code_execution: true to run it without isolation"


def _limits(timeout_seconds: float, memory_mb: int, disk_mb: int) -> dict:
    return {"cpu_seconds": max(1, math.ceil(timeout_seconds) + 1), "memory_bytes": memory_mb * 2**20,
            "file_bytes": disk_mb * 2**20, "processes": 32}


def _data_fd(data: bytes) -> int:
    """An unnamed file holding ``data``, open for reading from its start (bubblewrap copies it in)."""
    try:
        fd = os.memfd_create("selfaware-sandbox", os.MFD_CLOEXEC)
    except (AttributeError, OSError):  # no memfd: an unlinked temporary file
        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _bwrap_command(interpreter: _Interpreter, fds: dict[str, int], disk_mb: int) -> list[str]:
    command = [_bwrap() or "bwrap", "--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net",
               "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--uid", str(SANDBOX_UID),
               "--gid", str(SANDBOX_UID), "--hostname", "sandbox", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--clearenv", "--setenv", "PATH", "/nonexistent", "--setenv", "HOME", "/tmp",
               "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8"]
    for host, inside in interpreter.mounts:
        command += ["--ro-bind", host, inside]
    for folder in interpreter.hidden:
        command += ["--tmpfs", folder, "--remount-ro", folder]
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        command += ["--dev-bind", device, device]
    command += ["--perms", "1777", "--size", str(disk_mb * 2**20), "--tmpfs", "/tmp",
                "--ro-bind-data", str(fds["bootstrap"]), f"{_INSIDE}/bootstrap.py",
                "--ro-bind-data", str(fds["job"]), f"{_INSIDE}/job.json"]
    if "script" in fds:
        command += ["--ro-bind-data", str(fds["script"]), f"{_INSIDE}/main.py"]
    command += ["--remount-ro", "/", "--chdir", "/tmp", "--seccomp", str(fds["seccomp"])]
    return command


def _drain(process: subprocess.Popen, result_fd: int, started: float, timeout_seconds: float, output_bytes: int
           ) -> tuple[bytes, bytes, bytes, bool, bool]:
    """Reads stdout, stderr and the result pipe until all close or the deadline passes; keeps at most
    ``output_bytes`` of each stream (the rest is read and dropped so the child never blocks). The deadline is
    ``timeout_seconds`` after the bootstrap says it is ready (its first byte on the result pipe), so that a
    slow start on a busy machine is not counted against the code; at most _STARTUP_SECONDS before that."""
    deadline = started + _STARTUP_SECONDS
    kept = {"stdout": bytearray(), "stderr": bytearray(), "result": bytearray()}
    caps = {"stdout": output_bytes, "stderr": output_bytes, "result": _RESULT_BYTES + _FRAME_HEADER.size + 1}
    truncated = timed_out = False
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    selector.register(result_fd, selectors.EVENT_READ, "result")
    try:
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _ in selector.select(timeout=min(left, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "result" and not kept["result"]:
                    deadline = time.monotonic() + timeout_seconds
                room = caps[key.data] - len(kept[key.data])
                if len(chunk) > room:
                    truncated = truncated or key.data != "result"
                kept[key.data] += chunk[:max(room, 0)]
    finally:
        selector.close()
    return bytes(kept["stdout"]), bytes(kept["stderr"]), bytes(kept["result"]), truncated, timed_out


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # bubblewrap's group; the sandbox dies with it (--die-with-parent)
    except (ProcessLookupError, PermissionError):
        pass


def _as_text(data: bytes, truncated: bool, output_bytes: int) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + (f"\n[output cut at {output_bytes} bytes]\n" if truncated and len(data) >= output_bytes else "")


def _launch(interpreter: _Interpreter | None, job: dict, timeout_seconds: float, memory_mb: int, disk_mb: int,
            output_bytes: int, stdin: str) -> SandboxResult:
    """Starts the bootstrap on ``job`` in bubblewrap (``interpreter`` given) or, unsafe, as a plain process,
    and collects what it printed and sent. Never raises for anything the child does."""
    isolated = interpreter is not None
    job = {**job, "isolated": isolated, "limits": _limits(timeout_seconds, memory_mb, disk_mb)}
    isolation = "bubblewrap" if isolated else "none (unsafe_code_execution)"
    # named after this process, so that what a process leaves can be told from what another one is still using
    folder = None if isolated else tempfile.mkdtemp(prefix=f"{UNSAFE_FOLDER_PREFIX}{os.getpid()}-")
    own_fds: list[int] = []
    try:
        result_read, result_write = os.pipe()  # ready byte, then (call_function) the supervisor's one frame
        own_fds += [result_read, result_write]
        stdin_read, stdin_write = os.pipe()
        own_fds += [stdin_read, stdin_write]
        if isolated:
            fds = {}

            def hold(name: str, data: bytes) -> None:
                fds[name] = _data_fd(data)
                own_fds.append(fds[name])

            hold("bootstrap", _BOOTSTRAP.encode())
            hold("seccomp", seccomp_filter())
            if job["mode"] == "script":
                hold("script", job["code"].encode())
                job = {**job, "code": None, "script": f"{_INSIDE}/main.py"}
            hold("job", json.dumps(job).encode())
            command = _bwrap_command(interpreter, fds, disk_mb)
            command += [interpreter.executable, "-I", "-S", "-B", "-X", "utf8", f"{_INSIDE}/bootstrap.py",
                        f"{_INSIDE}/job.json", str(result_write)]
            passed = [*fds.values(), result_write]
            switch = {"user": SANDBOX_UID, "group": SANDBOX_UID, "extra_groups": []} if os.geteuid() == 0 else {}
            cwd = "/"
        else:
            work = Path(folder)
            (work / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
            if job["mode"] == "script":
                (work / "main.py").write_text(job["code"], encoding="utf-8")
                job = {**job, "code": None, "script": str(work / "main.py")}
            (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
            executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
            command = [executable, "-I", "-S", "-B", "-X", "utf8", "bootstrap.py", "job.json",
                       str(result_write)]
            passed = [result_write]
            switch, cwd = {}, folder
        environment = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        started = time.monotonic()
        try:
            process = subprocess.Popen(command, cwd=cwd, env=environment, stdin=stdin_read, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, pass_fds=passed, start_new_session=True, **switch)
        except OSError as error:
            return SandboxResult(None, "", "", False, isolation, error=f"could not start the sandbox: {error}"[:200])
        for fd in [stdin_read, result_write, *(fds.values() if isolated else [])]:
            os.close(fd)
            own_fds.remove(fd)
        _feed(stdin_write, stdin.encode("utf-8", errors="replace"))
        own_fds.remove(stdin_write)
        stdout, stderr, result, truncated, timed_out = _drain(process, result_read, started, timeout_seconds,
                                                              output_bytes)
        ready = result.startswith(b"R")
        result = result[1:] if ready else result
        if timed_out:
            _kill(process)
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill(process)
            returncode = process.wait()
        process.stdout.close()
        process.stderr.close()
        if returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):  # the CPU limit: a timeout for the caller
            timed_out = True
        if timed_out and not ready:
            return SandboxResult(returncode, "", _as_text(stderr, truncated, output_bytes), False, isolation,
                                 error=f"the sandbox did not start within {_STARTUP_SECONDS:.0f} s")
        return SandboxResult(returncode, _as_text(stdout, truncated, output_bytes),
                             _as_text(stderr, truncated, output_bytes), timed_out, isolation, truncated, result=result)
    finally:
        for fd in own_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if folder is not None:
            remove_tree(folder)


def _feed(fd: int, data: bytes) -> None:
    """Writes stdin in one go when it fits the pipe, else from a thread (the child may not read it)."""
    if len(data) <= 60000:
        try:
            os.write(fd, data)
        except OSError:
            pass
        os.close(fd)
        return
    import threading

    def write() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError:
            pass
        finally:
            os.close(fd)

    threading.Thread(target=write, daemon=True).start()


def remove_tree(path: str | os.PathLike) -> None:
    """Removes a folder whatever the code left in it: deep trees (no recursion, no path longer than one name),
    read-only folders, immutable or append-only files (the flags are cleared first where we may)."""
    import fcntl

    FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, CLEAR = 0x80086601, 0x40086602, 0x00000010 | 0x00000020  # immutable, append

    def unflag(fd: int) -> None:
        try:
            flags = bytearray(8)
            fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
            value = int.from_bytes(flags[:4], "little")
            if value & CLEAR:
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, (value & ~CLEAR).to_bytes(8, "little"))
        except OSError:
            pass

    def unflag_entry(parent: int, name: str) -> None:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
        except OSError:
            return
        try:
            unflag(fd)
        finally:
            os.close(fd)

    try:
        top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    unflag(top)
    stack = [(top, None)]  # (open folder, its name in the folder below it on the stack)
    try:
        while stack:
            fd, _ = stack[-1]
            try:
                os.fchmod(fd, 0o700)
            except OSError:
                pass
            descended = False
            for entry in os.scandir(fd):
                try:
                    is_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_folder = False
                if is_folder:
                    unflag_entry(fd, entry.name)
                    try:
                        child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                    except OSError:
                        continue
                    stack.append((child, entry.name))
                    descended = True
                    break
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except PermissionError:
                    unflag(fd)
                    unflag_entry(fd, entry.name)
                    try:
                        os.unlink(entry.name, dir_fd=fd)
                    except OSError:
                        pass
                except OSError:
                    pass
            if descended:
                continue
            stack.pop()
            os.close(fd)
            if stack:
                parent, name = stack[-1][0], _
                try:
                    os.rmdir(name, dir_fd=parent)
                except OSError:
                    unflag(parent)
                    unflag_entry(parent, name)
                    try:
                        os.rmdir(name, dir_fd=parent)
                    except OSError:  # cannot be removed: stop rather than loop on it
                        return
    finally:
        for fd, _ in stack:
            try:
                os.close(fd)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


def run_python(code: str, timeout_seconds: float = 10.0, memory_mb: int = 256, disk_mb: int = 16,
               output_bytes: int = 64 * 1024, stdin: str = "", unsafe: bool = False,
               audit_hook: bool = True) -> SandboxResult:
    """Run ``code`` as a script in the sandbox and return what it printed. Never raises for anything the code
    does; a timeout, a limit or a cut output shows in the result. Where no sandbox can be set up, the code does
    not run (``error`` starts with "skipped: no sandbox on this machine") unless ``unsafe``. ``audit_hook``:
    the second layer (tests turn it off to show that the operating system alone holds)."""
    interpreter, problem = _setup()
    if problem is not None and not unsafe:
        return SandboxResult(None, "", "", False, "skipped", error=f"{SKIPPED}: {problem}")
    try:
        return _launch(interpreter, {"mode": "script", "code": code, "audit_hook": audit_hook}, timeout_seconds,
                       memory_mb, disk_mb, output_bytes, stdin)
    except OSError as error:  # the host ran out of something (descriptors, memory): this run fails, in one line
        return SandboxResult(None, "", "", False, "bubblewrap" if interpreter else "none (unsafe_code_execution)",
                             error=_one_line(f"the sandbox failed: {type(error).__name__}: {error}", 200))


@dataclass(frozen=True)
class FunctionCall:
    """A model-written function run on inputs in the sandbox: ``values`` (one per input; None where that call
    raised or returned something that is not a finite number) or, when the whole run failed, ``error``."""

    values: list[float | None]
    errors: list[str | None]
    error: str | None = None  # defining the code failed, it timed out, a limit killed it, or it was skipped
    skipped: bool = False  # not run: no sandbox on this machine and no explicit unsafe_code_execution

    @property
    def ok(self) -> bool:
        return self.error is None and all(v is not None for v in self.values)

    @property
    def failure(self) -> str | None:
        """One line: why this sample counts as a failure (None when every call returned a number)."""
        if self.error:
            return self.error
        return next((e for e in self.errors if e), None)


def _one_line(text: object, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _frame(data: bytes) -> dict | None:
    """The one frame the supervisor sent, or None when the bytes are not exactly one well-formed frame."""
    if len(data) < _FRAME_HEADER.size:
        return None
    (length,) = _FRAME_HEADER.unpack(data[:_FRAME_HEADER.size])
    if length != len(data) - _FRAME_HEADER.size or length > _RESULT_BYTES:
        return None
    try:
        found = json.loads(data[_FRAME_HEADER.size:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


def _entry(entry: object) -> tuple[float | None, str | None] | None:
    """One input's (value, error) from the worker's reply, or None when it breaks the schema."""
    if not isinstance(entry, dict):
        return None
    if set(entry) == {"error"} and isinstance(entry["error"], str):
        return None, _one_line(entry["error"]) or "raised an exception"
    if set(entry) != {"value", "type"} or not isinstance(entry["type"], str):
        return None
    value = entry["value"]
    if value is None:
        return None, f"returned {_one_line(entry['type'], 60)}, not a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value, None


def _function_call(result: SandboxResult, count: int) -> FunctionCall:
    nothing = [None] * count
    if result.error:
        return FunctionCall(nothing, nothing, result.error, skipped=result.isolation == "skipped")
    if result.timed_out:
        return FunctionCall(nothing, nothing, "timed out")
    last = _one_line((result.stderr.strip().splitlines() or [""])[-1], 200)
    frame = _frame(result.result)
    if frame is None or set(frame) != {"reply", "exit"}:
        why = "sent no result" if not result.result else "sent a malformed result"
        return FunctionCall(nothing, nothing, f"the sandbox {why} (exited with code {result.returncode})"
                            + (f": {last}" if last else ""))
    reply, exit_code = frame["reply"], frame["exit"]
    if reply is None and exit_code == -signal.SIGXCPU:
        return FunctionCall(nothing, nothing, "timed out (CPU seconds)")
    if not isinstance(reply, dict):
        return FunctionCall(nothing, nothing, f"the function's process ended without a reply (exit code "
                                              f"{_one_line(exit_code, 20)})" + (f": {last}" if last else ""))
    if set(reply) == {"error"} and isinstance(reply["error"], str):
        return FunctionCall(nothing, nothing, _one_line(reply["error"]) or "defining the code failed")
    entries = reply.get("values") if set(reply) == {"values"} else None
    parsed = [_entry(e) for e in entries] if isinstance(entries, list) and len(entries) == count else None
    if parsed is None or any(p is None for p in parsed):
        return FunctionCall(nothing, nothing, "the function's process sent a reply that breaks the schema")
    return FunctionCall([p[0] for p in parsed], [p[1] for p in parsed])


def call_function(code: str, name: str, inputs: list[tuple], timeout_seconds: float = 10.0,
                  memory_mb: int = 256, disk_mb: int = 16, unsafe: bool = False,
                  audit_hook: bool = True) -> FunctionCall:
    """Define ``code`` and call ``name(*args)`` for each tuple of ``inputs`` (JSON values), all in one
    sandboxed process. Never raises for anything the code does. Where no sandbox can be set up the code is
    not run (``skipped``) unless ``unsafe`` (the section's explicit ``unsafe_code_execution: true``).
    ``audit_hook``: the second layer, as in :func:`run_python`."""
    interpreter, problem = _setup()
    if problem is not None and not unsafe:
        nothing = [None] * len(inputs)
        return FunctionCall(nothing, nothing, f"{SKIPPED}: {problem}", skipped=True)
    job = {"mode": "call", "code": code, "name": name, "inputs": [list(a) for a in inputs], "audit_hook": audit_hook}
    try:
        result = _launch(interpreter, job, timeout_seconds, memory_mb, disk_mb, 64 * 1024, "")
        return _function_call(result, len(inputs))
    except (OSError, ValueError, RecursionError) as error:  # the host ran out of something: one sample fails
        nothing = [None] * len(inputs)
        return FunctionCall(nothing, nothing, _one_line(f"the sandbox failed: {type(error).__name__}: {error}", 200))

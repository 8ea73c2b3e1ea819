"""Hostile model-written functions, run through ``call_function`` the way Make Me Say runs them.

Each function tries one escape and returns 1.0 when, as far as it can tell, the escape worked. Every test then
checks from outside that nothing happened: the canary folders (under /tmp and /var/tmp, writable by everyone,
so that only the sandbox and not file permissions keeps the code out) are byte for byte as before, the
listeners (TCP, UDP, a UNIX socket on disk and an abstract one) received nothing, the target processes (one
of root, one of ``nobody``, the sandbox's own user outside) are alive with their priority unchanged, the
parent's secret never came back, no process of the call outlives it and nothing is left in the host's
temporary folder. Each runs twice: with the operating system alone (the audit hook off: it is not a
boundary) and as Make Me Say calls it (the audit hook on, as a second layer).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from selfaware import sandbox

pytestmark = pytest.mark.userns
REPOSITORY = Path(__file__).resolve().parents[2]
LAYERS = {"os-only": False, "with-audit-hook": True}


def _tree(folder: Path) -> dict:
    state = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else ""
        try:
            attributes = sorted(os.listxattr(path, follow_symlinks=False))
        except OSError:
            attributes = []
        state[str(path)] = (info.st_mode, info.st_size, info.st_mtime_ns, info.st_uid, content, attributes)
    return state


def _processes_running(needle: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


class World:
    """Everything outside the sandbox that an attack might reach, and the checks that it did not."""

    def __init__(self, monkeypatch):
        self.secret = "canary-" + secrets.token_hex(12)
        self.marker = "selfaware-attack-" + secrets.token_hex(6)
        monkeypatch.setenv("SELFAWARE_CANARY_KEY", self.secret)
        self.folders = [Path(tempfile.mkdtemp(prefix="selfaware-canary-", dir=d)) for d in ("/var/tmp", "/tmp")]
        for folder in self.folders:
            folder.chmod(0o777)
            for name, text in (("secret.txt", self.secret), ("victim.txt", "keep me")):
                (folder / name).write_text(text)
                (folder / name).chmod(0o666)
        self.folder = self.folders[0]
        self.database = self.folder / "cache.sqlite"
        with sqlite3.connect(self.database) as db:
            db.execute("create table answers (key text primary key, value text)")
            db.execute("insert into answers values ('question', 'the true answer')")
        db.close()
        self.database.chmod(0o666)
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.setblocking(False)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.setblocking(False)
        self.unix_path = str(self.folder / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen(8)
        self.unix.setblocking(False)
        self.abstract_name = "selfaware-canary-" + secrets.token_hex(6)
        self.abstract = socket.socket(socket.AF_UNIX)
        self.abstract.bind("\0" + self.abstract_name)
        self.abstract.listen(8)
        self.abstract.setblocking(False)
        self.targets = [subprocess.Popen(["sleep", "300"])]
        if os.geteuid() == 0:  # the sandbox's own user outside: the case where only the namespaces protect
            self.targets.append(subprocess.Popen(["sleep", "300"], user=sandbox.SANDBOX_UID, group=sandbox.SANDBOX_UID,
                                                 extra_groups=[]))
        self.priorities = [os.getpriority(os.PRIO_PROCESS, t.pid) for t in self.targets]
        self.readme = hashlib.sha256((REPOSITORY / "README.md").read_bytes()).hexdigest()
        self.before = {str(f): _tree(f) for f in self.folders}
        self.temporary = set(os.listdir(tempfile.gettempdir()))

    def tokens(self) -> dict[str, str]:
        return {"SECRET_FILE_TMP": str(self.folders[1] / "secret.txt"), "SECRET_FILE": str(self.folder / "secret.txt"),
                "SECRET": self.secret, "VICTIM": str(self.folder / "victim.txt"), "FOLDER": str(self.folder),
                "DATABASE": str(self.database), "TCP_PORT": str(self.tcp.getsockname()[1]),
                "UDP_PORT": str(self.udp.getsockname()[1]), "UNIX_PATH": self.unix_path,
                "ABSTRACT": self.abstract_name, "TARGET_PID": str(self.targets[0].pid),
                "NOBODY_PID": str(self.targets[-1].pid), "PARENT_PID": str(os.getpid()), "MARKER": self.marker,
                "REPOSITORY": str(REPOSITORY), "SITE_PACKAGES": next(p for p in sys.path if p.endswith("site-packages"))}

    def assert_untouched(self) -> None:
        after = {str(f): _tree(f) for f in self.folders}
        assert after == self.before, "a canary folder changed"
        for listener in (self.tcp, self.unix, self.abstract):
            with pytest.raises(BlockingIOError):
                listener.accept()
        with pytest.raises(BlockingIOError):
            self.udp.recv(100)
        for target, priority in zip(self.targets, self.priorities):
            assert target.poll() is None, "a target process was killed"
            assert os.getpriority(os.PRIO_PROCESS, target.pid) == priority, "a target's priority changed"
        assert os.environ["SELFAWARE_CANARY_KEY"] == self.secret
        assert hashlib.sha256((REPOSITORY / "README.md").read_bytes()).hexdigest() == self.readme
        assert not (REPOSITORY / "ESCAPED").exists()
        with sqlite3.connect(self.database) as db:
            assert db.execute("select value from answers").fetchall() == [("the true answer",)]
        db.close()
        ours = f"{sandbox.UNSAFE_FOLDER_PREFIX}{os.getpid()}-"  # another test process may be using its own now
        left = {n for n in set(os.listdir(tempfile.gettempdir())) - self.temporary if n.startswith(ours)}
        assert not left, f"left in the temporary folder: {left}"

    def close(self) -> None:
        for target in self.targets:
            if target.poll() is None:
                target.kill()
            target.wait()
        for listener in (self.tcp, self.udp, self.unix, self.abstract):
            listener.close()
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def world(monkeypatch):
    found = World(monkeypatch)
    yield found
    found.close()


def attack(world: World, body: str, audit_hook: bool, inputs=(("hello",),), timeout_seconds: float = 5.0,
           settle: float = 0.0) -> sandbox.FunctionCall:
    """Runs the hostile function ``f(message)`` and checks, from outside, that it achieved nothing."""
    for token, value in world.tokens().items():
        body = body.replace(token, value)
    code = "def f(message):\n" + "".join(f"    {line}\n" for line in body.splitlines())
    started = time.monotonic()
    called = sandbox.call_function(code, "f", list(inputs), timeout_seconds=timeout_seconds, audit_hook=audit_hook)
    took = time.monotonic() - started
    assert isinstance(called, sandbox.FunctionCall)
    assert not called.skipped, called.failure  # the sandbox must really have run it (CI fails here without one)
    assert took < timeout_seconds + 15, f"the call took {took:.1f} s"
    time.sleep(settle)  # what a detached process would do later
    assert 1.0 not in called.values, f"the function reports that its attack worked: {called}"
    assert world.secret not in repr(called), "the secret came back"
    deadline = time.monotonic() + 5
    while _processes_running(world.marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_running(world.marker), "a process of the call outlived it"
    world.assert_untouched()
    return called


LIBC = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
SYSCALL = LIBC + "syscall = libc.syscall\nsyscall.restype = ctypes.c_long\n"

# (category, name, body): each body is the function's body; 1.0 means the escape worked
HOSTILE = [
    # ---- reading files outside, by every route
    ("read", "open", "return float('SECRET' in open('SECRET_FILE').read())"),
    ("read", "open-host-tmp", "return float('SECRET' in open('SECRET_FILE_TMP').read())"),
    ("read", "os-open", "import os\nfd = os.open('SECRET_FILE', os.O_RDONLY)\nreturn float(b'SECRET' in os.read(fd, 100))"),
    ("read", "dir-fd", "import os\nd = os.open('FOLDER', os.O_RDONLY | os.O_DIRECTORY)\n"
                       "return float(b'SECRET' in os.read(os.open('secret.txt', os.O_RDONLY, dir_fd=d), 100))"),
    ("read", "dir-fd-from-root", "import os\nd = os.open('/', os.O_RDONLY)\n"
                                 "fd = os.open('SECRET_FILE'.lstrip('/'), os.O_RDONLY, dir_fd=d)\n"
                                 "return float(b'SECRET' in os.read(fd, 100))"),
    ("read", "opener", "import os\nd = os.open('FOLDER', os.O_RDONLY)\n"
                       "return float('SECRET' in open('secret.txt', opener=lambda p, f: os.open(p, f, dir_fd=d)).read())"),
    ("read", "pathlib", "from pathlib import Path\nreturn float('SECRET' in Path('SECRET_FILE').read_text())"),
    ("read", "linecache", "import linecache\nreturn float('SECRET' in linecache.getline('SECRET_FILE', 1))"),
    ("read", "mmap", "import mmap, os\nfd = os.open('SECRET_FILE', os.O_RDONLY)\n"
                     "return float(b'SECRET' in mmap.mmap(fd, 0, prot=mmap.PROT_READ)[:])"),
    ("read", "symlink", "import os\nos.symlink('SECRET_FILE', '/tmp/link')\nreturn float('SECRET' in open('/tmp/link').read())"),
    ("read", "hardlink", "import os\nos.link('SECRET_FILE', '/tmp/hard')\nreturn float('SECRET' in open('/tmp/hard').read())"),
    ("read", "environment", "import os\nreturn float('SECRET' in str(os.environ))"),
    ("read", "proc-parent-environ", "for pid in range(1, 4096):\n    try:\n"
                                    "        if 'SECRET' in open(f'/proc/{pid}/environ', errors='replace').read():\n"
                                    "            return 1.0\n    except OSError:\n        pass\nreturn 0.0"),
    ("read", "proc-parent-pid-environ", "return float('SECRET' in open('/proc/PARENT_PID/environ', errors='replace').read())"),
    ("read", "proc-self-root", "return float('SECRET' in open('/proc/self/root/SECRET_FILE').read())"),
    ("read", "proc-1-root", "return float('SECRET' in open('/proc/1/root/SECRET_FILE').read())"),
    ("read", "mount-proc", SYSCALL + "import os\nos.mkdir('/tmp/p')\n"
                                     "if libc.mount(b'proc', b'/tmp/p', b'proc', 0, None) == 0:\n    return 1.0\n"
                                     "raise OSError(ctypes.get_errno(), 'mount')"),
    ("read", "repository", "return float(len(open('REPOSITORY/README.md').read()) > 0)"),
    ("read", "root-home", "import os\nreturn float(len(os.listdir('/root')) >= 0)"),
    ("read", "etc-passwd", "return float('root:' in open('/etc/passwd').read())"),
    ("read", "sqlite-cache", "import sqlite3\n"
                             "return float(len(sqlite3.connect('DATABASE').execute('select * from answers').fetchall()) > 0)"),
    ("read", "site-packages", "import os\nreturn float(len(os.listdir('SITE_PACKAGES')) > 0)"),
    ("read", "open-by-handle", SYSCALL + "buffer = ctypes.create_string_buffer(128)\nmount_id = ctypes.c_int()\n"
                                         "ctypes.memmove(buffer, (120).to_bytes(4, 'little'), 4)\n"
                                         "return float(syscall(303, -100, b'SECRET_FILE', buffer, ctypes.byref(mount_id), 0) == 0)"),
    # ---- changing and deleting files outside
    ("write", "overwrite", "open('VICTIM', 'w').write('gone')\nreturn 1.0"),
    ("write", "append", "open('VICTIM', 'a').write('more')\nreturn 1.0"),
    ("write", "remove", "import os\nos.remove('VICTIM')\nreturn 1.0"),
    ("write", "rmtree", "import shutil\nshutil.rmtree('FOLDER')\nreturn 1.0"),
    ("write", "unlink-dir-fd", "import os\nd = os.open('FOLDER', os.O_RDONLY)\nos.unlink('victim.txt', dir_fd=d)\nreturn 1.0"),
    ("write", "rename", "import os\nos.rename('VICTIM', 'VICTIM.moved')\nreturn 1.0"),
    ("write", "truncate", "import os\nos.truncate('VICTIM', 0)\nreturn 1.0"),
    ("write", "chmod", "import os\nos.chmod('VICTIM', 0)\nreturn 1.0"),
    ("write", "utime", "import os\nos.utime('VICTIM', (0, 0))\nreturn 1.0"),
    ("write", "create", "open('FOLDER/new.txt', 'w').write('x')\nreturn 1.0"),
    ("write", "mkfifo", "import os\nos.mkfifo('FOLDER/fifo')\nreturn 1.0"),
    ("write", "xattr-outside", "import os\nos.setxattr('VICTIM', 'user.mark', b'1')\nreturn 1.0"),
    ("write", "xattr-inside", "import os\nopen('/tmp/x', 'w').close()\nos.setxattr('/tmp/x', 'user.mark', b'1')\nreturn 1.0"),
    ("write", "device-node", "import os, stat\nos.mknod('/tmp/disk', stat.S_IFBLK | 0o600, os.makedev(8, 0))\n"
                             "return float(len(open('/tmp/disk', 'rb').read(512)) > 0)"),
    ("write", "sqlite-poison", "import sqlite3\ndb = sqlite3.connect('DATABASE')\n"
                               "db.execute(\"update answers set value = 'forged'\")\ndb.commit()\nreturn 1.0"),
    ("write", "repository", "open('REPOSITORY/ESCAPED', 'w').write('x')\nreturn 1.0"),
    ("write", "proc-self-root", "open('/proc/self/root/VICTIM', 'w').write('gone')\nreturn 1.0"),
    ("write", "symlink-out", "import os\nos.symlink('VICTIM', '/tmp/v')\nopen('/tmp/v', 'w').write('gone')\nreturn 1.0"),
    ("write", "root-filesystem", "open('/escaped', 'w').write('x')\nreturn 1.0"),
    ("write", "standard-library", "import os\nopen(os.__file__, 'a').write('# changed')\nreturn 1.0"),
    # ---- starting processes, at every layer
    ("process", "os-system", "import os\nreturn float(os.system('touch FOLDER/spawned') == 0)"),
    ("process", "subprocess", "import subprocess\nsubprocess.run(['/bin/sh', '-c', 'touch FOLDER/spawned'], check=True)\nreturn 1.0"),
    ("process", "posixsubprocess", "import _posixsubprocess, os, sys\nr, w = os.pipe()\n"
                                   "pid = _posixsubprocess.fork_exec([sys.executable, '-c', \"open('FOLDER/spawned', 'w')\", 'MARKER'], "
                                   "[sys.executable.encode()], True, (), None, None, -1, -1, -1, -1, -1, -1, r, w, True, False, "
                                   "-1, None, None, None, -1, None, False)\n"
                                   "os.waitpid(pid, 0)\nreturn float(os.path.exists('FOLDER/spawned'))"),
    ("process", "posix-spawn", "import os, sys\npid = os.posix_spawn(sys.executable, [sys.executable, '-c', "
                               "\"open('FOLDER/spawned', 'w')\", 'MARKER'], {})\nos.waitpid(pid, 0)\n"
                               "return float(os.path.exists('FOLDER/spawned'))"),
    ("process", "exec", "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', \"open('FOLDER/spawned', 'w')\", 'MARKER'])"),
    ("process", "multiprocessing-spawn", "import multiprocessing\nctx = multiprocessing.get_context('spawn')\n"
                                         "p = ctx.Process(target=open, args=('FOLDER/spawned', 'w'))\np.start()\np.join()\n"
                                         "import os\nreturn float(os.path.exists('FOLDER/spawned'))"),
    ("process", "pty-fork", "import os, pty\npid, fd = pty.fork()\nif pid == 0:\n    open('FOLDER/spawned', 'w')\n    os._exit(0)\nreturn 1.0"),
    ("process", "ctypes-fork-exec", LIBC + "import sys\npid = libc.fork()\nif pid == 0:\n"
                                          "    libc.execv(sys.executable.encode(), (ctypes.c_char_p * 5)(sys.executable.encode(), b'-c', "
                                          "b\"open('FOLDER/spawned', 'w')\", b'MARKER', None))\n    libc._exit(0)\n"
                                          "libc.waitpid(pid, None, 0)\nimport os\nreturn float(os.path.exists('FOLDER/spawned'))"),
    ("process", "detached-daemon", "import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                                   "        os.execv(sys.executable, [sys.executable, '-c', \"import time, socket\\ntime.sleep(1)\\n"
                                   "open('FOLDER/late', 'w')\\nsocket.create_connection(('127.0.0.1', TCP_PORT))\", 'MARKER'])\n"
                                   "    os._exit(0)\nreturn 0.5"),
    ("process", "fork-bomb", "import os\nwhile True:\n    os.fork()"),
    ("process", "unshare-user", LIBC + "return float(libc.unshare(0x10000000) == 0)"),
    ("process", "clone-new-namespaces", SYSCALL + "return float(syscall(56, 0x10000000 | 0x40000000 | 0x11, 0, 0, 0, 0) >= 0)"),
    # ---- native code
    ("native", "cffi", "import sys\nsys.path.append('SITE_PACKAGES')\nimport cffi\nreturn 1.0"),
    ("native", "ptrace-parent", LIBC + "import os\nreturn float(libc.ptrace(16, os.getppid(), 0, 0) == 0)"),
    ("native", "process-vm-readv", SYSCALL + "import os\nreturn float(syscall(310, os.getppid(), 0, 0, 0, 0, 0) >= 0)"),
    ("native", "pidfd-getfd", SYSCALL + "import os\nfd = syscall(434, os.getppid(), 0)\n"
                                        "return float(fd >= 0 and syscall(438, fd, 3, 0) >= 0)"),
    ("native", "keyctl", SYSCALL + "return float(syscall(250, 0, -4, 0, 0, 0) >= 0)"),
    ("native", "bpf", SYSCALL + "return float(syscall(321, 0, 0, 0) >= 0)"),
    ("native", "perf-event-open", SYSCALL + "attr = ctypes.create_string_buffer(128)\n"
                                            "return float(syscall(298, attr, 0, -1, -1, 0) >= 0)"),
    ("native", "io-uring", SYSCALL + "params = ctypes.create_string_buffer(120)\nreturn float(syscall(425, 4, params) >= 0)"),
    ("native", "userfaultfd", SYSCALL + "return float(syscall(323, 0) >= 0)"),
    ("native", "init-module", SYSCALL + "return float(syscall(313, 0, b'', 0) == 0)"),
    ("native", "setns", LIBC + "import os\nfd = os.open('/proc/1/ns/net', os.O_RDONLY)\nreturn float(libc.setns(fd, 0) == 0)"),
    ("native", "chroot-escape", LIBC + "import os\nos.mkdir('/tmp/jail')\n"
                                       "return float(libc.chroot(b'/tmp/jail') == 0)"),
    ("native", "x32-abi", SYSCALL + "import os\nreturn float(syscall(0x40000000 + 521, 16, os.getppid(), 0, 0) == 0)"),
    ("native", "setuid-root", "import os\nos.setuid(0)\nreturn float(os.getuid() == 0)"),
    # ---- tampering with the audit hook (meaningful with it on; the operating system holds either way)
    ("hook", "gc-patch-hook", "import gc\nfor o in gc.get_objects():\n"
                              "    if callable(o) and getattr(o, '__name__', '') in ('inside', 'hook'):\n"
                              "        try:\n            o.__code__ = (lambda *a: True).__code__ if o.__name__ == 'inside' else (lambda *a: None).__code__\n"
                              "        except Exception:\n            pass\n"
                              "return float('SECRET' in open('SECRET_FILE').read())"),
    ("hook", "patch-realpath", "import posixpath\nposixpath.realpath = lambda p, **k: '/tmp/x'\n"
                               "return float('SECRET' in open('SECRET_FILE').read())"),
    ("hook", "patch-builtins", "import builtins\nbuiltins.any = lambda it: True\n"
                               "return float('SECRET' in open('SECRET_FILE').read())"),
    ("hook", "clear-refused", "import gc, os\nfor o in gc.get_objects():\n"
                              "    if isinstance(o, set) and 'os.system' in o:\n        o.clear()\n"
                              "return float(os.system('touch FOLDER/spawned') == 0)"),
    ("hook", "subinterpreter", "import _xxsubinterpreters as interpreters\nsub = interpreters.create()\n"
                               "interpreters.run_string(sub, \"open('/tmp/out', 'w').write(open('SECRET_FILE').read())\")\n"
                               "return float('SECRET' in open('/tmp/out').read())"),
    # ---- the network, by every route
    ("network", "tcp", "import socket\nsocket.create_connection(('127.0.0.1', TCP_PORT), timeout=2)\nreturn 1.0"),
    ("network", "tcp-any-address", "import socket\nsocket.create_connection(('0.0.0.0', TCP_PORT), timeout=2)\nreturn 1.0"),
    ("network", "udp", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                       "s.sendto(b'x', ('127.0.0.1', UDP_PORT))\nreturn 1.0"),
    ("network", "unix-path", "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('UNIX_PATH')\nreturn 1.0"),
    ("network", "unix-abstract", "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0ABSTRACT')\nreturn 1.0"),
    ("network", "dns", "import socket\nreturn float(len(socket.getaddrinfo('example.com', 80)) > 0)"),
    ("network", "ipv6", "import socket\nsocket.create_connection(('::1', TCP_PORT), timeout=2)\nreturn 1.0"),
    ("network", "raw-syscall", SYSCALL + "import struct\nfd = syscall(41, 2, 1, 0)\n"
                                         "address = struct.pack('!HH4s8x', 2, TCP_PORT, bytes([127, 0, 0, 1]))\n"
                                         "address = struct.pack('H', 2) + address[2:]\n"
                                         "return float(fd >= 0 and syscall(42, fd, address, 16) == 0)"),
    ("network", "socketpair-pass-fd", "import socket\na, b = socket.socketpair()\n"
                                      "socket.send_fds(a, [b'x'], [0])\nreturn float(len(socket.recv_fds(b, 1, 1)[1]) == 9)"),
    # ---- other processes: signals and priorities
    ("signal", "kill-target", "import os, signal\nos.kill(TARGET_PID, signal.SIGKILL)\nreturn 1.0"),
    ("signal", "kill-same-user", "import os, signal\nos.kill(NOBODY_PID, signal.SIGKILL)\nreturn 1.0"),
    ("signal", "kill-everything", "import os, signal\nos.kill(-1, signal.SIGKILL)\nreturn 0.5"),
    ("signal", "killpg", "import os, signal\nos.killpg(NOBODY_PID, signal.SIGKILL)\nreturn 1.0"),
    ("signal", "pidfd-send-signal", SYSCALL + "fd = syscall(434, NOBODY_PID, 0)\n"
                                              "return float(fd >= 0 and syscall(424, fd, 9, 0, 0) == 0)"),
    ("signal", "priority-process", "import os\nos.setpriority(os.PRIO_PROCESS, NOBODY_PID, 19)\nreturn 1.0"),
    ("signal", "priority-user", "import os\nos.setpriority(os.PRIO_USER, os.getuid(), 19)\n"
                                "os.setpriority(os.PRIO_USER, 65534, 19)\nreturn 0.5"),
    ("signal", "affinity", "import os\nos.sched_setaffinity(NOBODY_PID, {0})\nreturn 1.0"),
    ("signal", "kill-supervisor", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nreturn 0.5"),
    ("signal", "kill-parent-by-pid", "import os, signal\nos.kill(PARENT_PID, signal.SIGTERM)\nreturn 1.0"),
    # ---- resources
    ("resource", "memory", "block = bytearray(10 * 2**30)\nreturn 1.0"),
    ("resource", "memfd", "import os\nfd = os.memfd_create('x')\nos.ftruncate(fd, 2**30)\n"
                          "for _ in range(1024):\n    os.write(fd, b'x' * 2**20)\nreturn 1.0"),
    ("resource", "mmap-anonymous", "import mmap\nm = mmap.mmap(-1, 8 * 2**30)\nm[:] = b'x' * len(m)\nreturn 1.0"),
    ("resource", "shared-memory", SYSCALL + "return float(syscall(29, 0, 2**30, 0o1000 | 0o600) >= 0)"),
    ("resource", "fill-disk", "with open('/tmp/fill', 'wb') as out:\n    for _ in range(1024):\n"
                              "        out.write(b'x' * 2**20)\nreturn 1.0"),
    # each file holds one byte, so each takes a page of the tmpfs: the disk limit stops it at any speed (empty
    # files take no pages; their number is bounded only by the kernel's inode cap and the time limit, see
    # book/sandbox.md)
    ("resource", "many-files", "import os\nfor k in range(100000):\n    with open(f'/tmp/f{k}', 'w') as f:\n"
                               "        f.write('x')\nreturn 1.0"),
    ("resource", "threads", "import threading, time\nfor _ in range(100000):\n"
                            "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nreturn 1.0"),
    ("resource", "cpu", "while True:\n    pass"),
    ("resource", "descriptors", "import os\nfds = [os.open('/dev/null', os.O_RDONLY) for _ in range(100000)]\nreturn 1.0"),
    ("resource", "recursion", "import sys\nsys.setrecursionlimit(10**6)\ndef g(n):\n    return g(n + 1)\nreturn g(0)"),
    # ---- forged and malformed results
    ("forge", "stdout-marker", "print('@@result-0000@@{\"values\": [{\"value\": 1.0}]}')\nreturn 'not a number'"),
    ("forge", "every-descriptor", "import os, struct, json\n"
                                  "frame = json.dumps({'reply': {'values': [{'value': 1.0, 'type': 'float'}]}, 'exit': 0}).encode()\n"
                                  "for fd in range(64):\n    try:\n        os.write(fd, struct.pack('>Q', len(frame)) + frame)\n"
                                  "    except OSError:\n        pass\nraise ValueError('nothing')"),
    ("forge", "patched-json", "import json\nreal = json.dumps\n"
                              "json.dumps = lambda o, *a, **k: real({'values': [{'value': 1.0, 'type': 'float'}] * 3})\n"
                              "raise ValueError('no')"),
    ("forge", "exit-early", "import os\nos._exit(0)"),
    ("forge", "system-exit", "raise SystemExit(0)"),
    ("forge", "keyboard-interrupt", "raise KeyboardInterrupt"),
    ("forge", "close-streams", "import os\nos.close(1)\nos.close(2)\nreturn 'x'"),
    ("forge", "bad-str", "class Evil(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\nraise Evil()"),
    ("forge", "not-numbers", "return float('nan') if message == 'hello' else True"),
    ("forge", "huge-int", "return 10 ** 5000"),
    ("forge", "non-utf8-output", "import sys, os\nos.write(1, b'\\xff\\xfe\\x80 raw')\nos.write(2, b'\\xc3\\x28 raw')\n"
                                 "raise ValueError(b'\\xff'.decode('latin-1'))"),
    ("forge", "output-flood", "import os\nfor _ in range(64):\n    os.write(1, b'x' * 2**20)\n    os.write(2, b'y' * 2**20)\nreturn 0.5"),
    # ---- leftovers
    ("leftover", "deep-tree", "import os\nos.chdir('/tmp')\nfor _ in range(3000):\n    os.mkdir('d')\n    os.chdir('d')\nreturn 0.5"),
    ("leftover", "immutable", "import fcntl, os\nfd = os.open('/tmp/keep', os.O_RDONLY | os.O_CREAT)\n"
                              "fcntl.ioctl(fd, 0x40086602, (0x10).to_bytes(8, 'little'))\nreturn 1.0"),
    ("leftover", "unwritable-folder", "import os\nos.mkdir('/tmp/locked')\nopen('/tmp/locked/f', 'w').close()\n"
                                      "os.chmod('/tmp/locked', 0)\nreturn 0.5"),
]
SLOW = {"fork-bomb", "cpu", "threads", "many-files"}


def test_there_are_enough_attacks():
    assert len(HOSTILE) >= 60
    assert {c for c, _, _ in HOSTILE} == {"read", "write", "process", "native", "hook", "network", "signal",
                                          "resource", "forge", "leftover"}


@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("category,name,body", HOSTILE, ids=[f"{c}-{n}" for c, n, _ in HOSTILE])
def test_hostile_function_achieves_nothing(world, category, name, body, layer):
    timeout = 3.0 if name in SLOW else 5.0
    settle = 2.0 if name == "detached-daemon" else 0.0
    called = attack(world, body, LAYERS[layer], timeout_seconds=timeout, settle=settle)
    assert called.failure is None or "\n" not in called.failure  # one line


def test_forged_results_are_not_believed(world):
    called = attack(world, "print('@@result-0000@@{\"values\": [{\"value\": 1.0}]}')\nreturn 'not a number'", False)
    assert called.values == [None] and "returned str, not a finite number" in called.failure
    called = attack(world, "import json\nreal = json.dumps\n"
                           "json.dumps = lambda o, *a, **k: real({'values': [{'value': 0.25, 'type': 'float'}] * 3})\n"
                           "return 0.5", False, inputs=[("a",), ("b",)])
    assert called.values == [None, None] and "breaks the schema" in called.failure


def test_outcomes_are_one_line_failures(world):
    assert attack(world, "while True:\n    pass", False, timeout_seconds=1.5).failure == "timed out"
    assert "MemoryError" in attack(world, "block = bytearray(10 * 2**30)\nreturn 1.0", False).failure
    assert "sent no result" in attack(world, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)", False).failure
    assert "without a reply" in attack(world, "import os\nos._exit(3)", False).failure
    assert "PermissionError" in attack(world, "import os\nos.memfd_create('x')\nreturn 0.5", False).failure


def test_a_flood_of_output_is_cut_and_said_so():
    result = sandbox.run_python("import os\nfor _ in range(64):\n    os.write(1, b'x' * 2**20)\nos.write(2, b'\\xff done')",
                                output_bytes=4096, audit_hook=False)
    assert result.ok and result.truncated and len(result.stdout) < 5000
    assert result.stdout.endswith("[output cut at 4096 bytes]\n") and "\ufffd done" in result.stderr


def test_the_disk_is_capped():
    result = sandbox.run_python("with open('/tmp/fill', 'wb') as out:\n    for _ in range(64):\n"
                                "        out.write(b'x' * 2**20)\n", disk_mb=8, audit_hook=False)
    assert not result.ok and ("No space left" in result.stderr or "File too large" in result.stderr)


def test_the_sandbox_runs_as_an_unprivileged_user_without_capabilities():
    result = sandbox.run_python("import os\nprint(os.getuid(), os.geteuid(), os.getgid(), os.getgroups())",
                                audit_hook=False)
    assert result.ok and result.stdout.split()[:3] == ["65534", "65534", "65534"]
    # no_new_privs and the capability sets, asked of the kernel by prctl (there is no /proc inside)
    caps = sandbox.run_python(LIBC + "print(libc.prctl(39, 0, 0, 0, 0))\n"
                              "print([c for c in range(41) if libc.prctl(23, c, 0, 0, 0) == 1])", audit_hook=False)
    assert caps.ok and caps.stdout.split("\n")[:2] == ["1", "[]"]  # PR_GET_NO_NEW_PRIVS; empty bounding set


@pytest.mark.skipif(os.geteuid() != 0, reason="the book runs as an ordinary user: the sandbox is that user outside")
def test_when_the_book_runs_as_root_the_sandbox_is_nobody_outside_too():
    import threading

    running = threading.Thread(target=sandbox.run_python, args=("import time\ntime.sleep(3)",), daemon=True)
    running.start()
    seen = {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and all(f["bwrap"] for f in seen.values()):  # until the interpreter runs
        for pid in _processes_running("/sandbox/bootstrap.py"):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            seen[pid] = {line.split()[0]: line.split()[1:] for line in status.splitlines()
                         if line.startswith(("Uid:", "Gid:", "CapEff:", "CapPrm:", "NoNewPrivs:"))}
            seen[pid]["bwrap"] = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"bwrap")
        time.sleep(0.05)
    running.join()
    assert any(not f["bwrap"] for f in seen.values()), "no sandboxed interpreter was seen"
    for fields in seen.values():  # the kernel's own view, from outside every namespace
        assert set(fields["Uid:"]) == {str(sandbox.SANDBOX_UID)} and set(fields["Gid:"]) == {str(sandbox.SANDBOX_UID)}
        if not fields["bwrap"]:  # bubblewrap's own init holds capabilities over the sandbox's namespaces only
            assert int(fields["CapEff:"][0], 16) == 0 and int(fields["CapPrm:"][0], 16) == 0
            assert fields["NoNewPrivs:"] == ["1"]


def test_the_view_of_the_filesystem_is_minimal():
    listing = sandbox.run_python("import os\nprint(sorted(os.listdir('/')), sorted(os.listdir('/dev')), "
                                 "os.path.exists('/proc'), os.listdir('/tmp'))", audit_hook=False)
    assert listing.ok, listing.stderr
    assert listing.stdout.strip() == ("['dev', 'etc', 'lib', 'lib64', 'sandbox', 'tmp', 'usr'] "
                                      "['null', 'urandom', 'zero'] False []")


def test_nothing_of_a_call_survives_it():
    body = ("import os, sys\nif os.fork() == 0:\n    os.setsid()\n"
            "    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', 'survivor-" +
            secrets.token_hex(4) + "'])\nreturn 0.5")
    marker = body.split("survivor-")[1][:8]
    called = sandbox.call_function("def f(m):\n" + "".join(f"    {line}\n" for line in body.splitlines()), "f", [("x",)],
                                   audit_hook=False)
    assert called.values == [0.5]
    time.sleep(0.5)
    assert not _processes_running("survivor-" + marker)


def test_processes_are_capped_inside_the_sandbox():
    result = sandbox.run_python("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
                                "            time.sleep(5)\n            os._exit(0)\n        n += 1\n"
                                "except OSError as error:\n    print(n, error.errno)\n", audit_hook=False, timeout_seconds=8)
    forked, code = result.stdout.split()
    assert 0 < int(forked) < 32 and code == "11"  # EAGAIN: RLIMIT_NPROC, counted in the sandbox's own namespace

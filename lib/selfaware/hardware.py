"""The numeric setup that fits this machine: which precision it computes natively, and how many threads.

Precision is one setting, ``auto | bf16 | fp32``, for inference and training alike (a profile's or a page's
``precision``, ``-p precision ...``, or ``SELFAWARE_PRECISION`` as the default). ``auto`` picks bf16 only
where the device computes it natively, because emulated bf16 is about ten times slower than fp32 (an AVX2
CPU: 0.8 against 50 GFLOP/s on one matmul), while native bf16 is faster by what the CPU's units give (LoRA
training on a 2-core AMD EPYC with ``avx512_bf16``: 402 against 298 tokens/s, 1.35x; bench_training.py):

- a CUDA device: ``torch.cuda.is_bf16_supported()``;
- an x86 CPU: the ``avx512_bf16`` or ``amx_bf16`` flag in ``/proc/cpuinfo``; an ARM CPU: ``bf16``;
- a CPU whose flags cannot be read (macOS, Windows): a timed calibration matmul, measured once per
  machine and kept in ``<cache>/hardware.json``.

The precision actually used is part of every cache identity (a model's inference dtype, an adapter's
training key), so answers computed at different precisions never share a cache entry, and ``run.json``
records it with the reason.

Threads: one torch thread per core, as torch does, but with OpenMP's idle threads sleeping instead of
spinning (``OMP_WAIT_POLICY=PASSIVE``). Spinning is what made two concurrent processes collapse: on the
2-core AMD EPYC (AVX2), two LoRA trainings at once took 2.51x their time alone with libgomp's default wait,
1.44x with PASSIVE; one thread per process did no better for training (1.52x) and scored prompts 1.6x
slower alone (``benchmarks/bench_concurrency.py``). ``SELFAWARE_TORCH_THREADS`` overrides the count. The count is recorded in ``run.json``; it is not part of cache identities, since
the same computation on another machine's core count is still the same experiment (as the CPU model is).
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from . import context, settings
from .errors import ConfigError

Precision = Literal["bf16", "fp32"]
PrecisionSetting = Literal["auto", "bf16", "fp32"]
SETTINGS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class PrecisionChoice:
    setting: str  # what was asked: auto, bf16 or fp32
    used: Precision  # what is computed
    reason: str  # why, in words (the flag found, the calibration measured, or "asked for")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's model name as lscpu shows it (``AMD EPYC``, ``Intel(R) Xeon(R) Platinum 8488C``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return found.group(1).strip() if found else platform.machine()


def cpu_flags() -> set[str] | None:
    """The CPU's feature flags (x86 ``flags``, ARM ``Features``), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    return set(found.group(1).split()) if found else None


def cpu_units() -> str:
    """The flags that decide this CPU's speed here: its widest vector unit and its bf16 units (or that it has
    none), e.g. ``avx512f, avx512_bf16`` or ``avx2, no bf16 unit``. Two machines can share a model name
    (``AMD EPYC``) and differ in exactly these."""
    flags = cpu_flags()
    if flags is None:
        return "flags not readable"
    widest = [next((f for f in ("avx512f", "avx2", "asimd") if f in flags), None)]
    bf16 = [f for f in ("amx_bf16", "avx512_bf16", "bf16") if f in flags] or ["no bf16 unit"]
    return ", ".join(f for f in widest + bf16 if f)


def cpu_name() -> str:
    """The CPU as timings name it: its model and its units (``AMD EPYC (avx2, no bf16 unit)``)."""
    return f"{cpu_model()} ({cpu_units()})"


def device() -> str:
    """cuda when a GPU is there, else cpu; ``SELFAWARE_DEVICE`` overrides."""
    import torch
    return settings.current().device or ("cuda" if torch.cuda.is_available() else "cpu")


def _calibration_file() -> Path:
    from .paths import cache_dir
    return cache_dir() / "hardware.json"


def calibrate_bf16() -> tuple[bool, str]:
    """Times one 512x576 @ 576x1536 matmul (the shape of a small model's MLP) in bf16 and in fp32, once
    per machine (CPU model, platform, torch version), and keeps the answer: native when bf16 is faster."""
    import torch

    machine = f"{cpu_model()}|{platform.platform()}|torch {torch.__version__}"
    path = _calibration_file()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if machine not in known:
        def best(dtype) -> float:
            a = torch.randn(512, 576, dtype=dtype)
            b = torch.randn(576, 1536, dtype=dtype)
            times = []
            for _ in range(5):
                started = time.perf_counter()
                a @ b
                times.append(time.perf_counter() - started)
            return min(times)

        fp32, bf16 = best(torch.float32), best(torch.bfloat16)
        known[machine] = {"fp32_seconds": fp32, "bf16_seconds": bf16}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=1))
        tmp.replace(path)
    measured = known[machine]
    native = measured["bf16_seconds"] < measured["fp32_seconds"]
    return native, (f"calibration matmul: bf16 {measured['bf16_seconds'] * 1e3:.1f} ms, "
                    f"fp32 {measured['fp32_seconds'] * 1e3:.1f} ms")


def native_bf16(on: str | None = None) -> tuple[bool, str]:
    """Whether ``on`` (a torch device type; this machine's by default) computes bf16 natively, and why."""
    on = on or device()
    if on.startswith("cuda"):
        import torch
        supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return supported, f"CUDA device {'with' if supported else 'without'} bf16"
    if on != "cpu":
        return False, f"device {on}: bf16 not assumed"
    flags = cpu_flags()
    if flags is None:
        return calibrate_bf16()
    native = sorted(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    if native:
        return True, f"CPU flag {', '.join(native)}"
    return False, "no bf16 unit (no avx512_bf16, amx_bf16 or bf16 CPU flag)"


def check_setting(setting: str) -> str:
    if setting not in SETTINGS:
        raise ConfigError(f"precision {setting!r}: use one of {', '.join(SETTINGS)}")
    return setting


def set_precision(setting: str | None) -> None:
    """The run's precision setting, kept in the run context (None: back to the setting's default,
    ``SELFAWARE_PRECISION`` or auto)."""
    context.current().chosen_precision = None if setting is None else check_setting(setting)


def precision_setting() -> str:
    return context.current().chosen_precision or settings.current().precision


def choose_precision(setting: str | None = None) -> PrecisionChoice:
    """The precision computed for ``setting`` (the run's setting by default) on this machine."""
    setting = check_setting(setting or precision_setting())
    if setting != "auto":
        return PrecisionChoice(setting, setting, "asked for")  # type: ignore[arg-type]
    native, reason = native_bf16()
    return PrecisionChoice("auto", "bf16" if native else "fp32", reason)


class TrainingPrecision:
    """For a training config with a ``precision`` field (auto, bf16 or fp32): the precision it computes in."""

    precision: str

    @property
    def computed_precision(self) -> str:
        """bf16 or fp32: ``precision`` with auto resolved by the run's setting and this machine."""
        return choose_precision(None if self.precision == "auto" else self.precision).used


def inference_dtype() -> str:
    """The torch dtype name local models compute in: ``SELFAWARE_DTYPE`` when set (float16, say), else
    the run's precision. Part of every local model's cache identity."""
    explicit = settings.current().dtype
    if explicit:
        return explicit
    return "bfloat16" if choose_precision().used == "bf16" else "float32"


def thread_count() -> int:
    """Torch threads for this process: ``SELFAWARE_TORCH_THREADS`` when set, else one per core this process
    may run on."""
    wanted = settings.current().torch_threads
    if wanted > 0:
        return wanted
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def quiet_waits() -> None:
    """Let OpenMP's idle threads sleep instead of spinning, where it can still take effect: libgomp reads
    these once, when torch is first imported. The runner also sets them for every kernel it starts."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def use_threads() -> int:
    import torch

    wanted = thread_count()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return wanted


def setup() -> dict[str, object]:
    """What run.json records of the numeric setup."""
    choice = choose_precision()
    return {"precision": choice.as_dict(), "inference_dtype": inference_dtype(), "torch_threads": thread_count(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpu": cpu_name(), "device": device()}

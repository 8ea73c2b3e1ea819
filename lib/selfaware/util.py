"""Small helpers below every other module of the library: they import nothing from it but its errors."""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import ConfigError


def clean(value: Any) -> Any:
    """JSON-safe value: NaN and infinities become None, numpy scalars plain numbers, containers recursively."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def fmt(value: Any, pattern: str) -> str:
    """``format(value, pattern)``, or 'n/a' for a missing value (None or NaN)."""
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, pattern)


def stable_index(name: str, modulo: int) -> int:
    """The same index for the same name in every process (Python's ``hash`` is salted per process)."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:8], 16) % modulo


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content, a fresh copy on every call; broken YAML is one line:
    ``file:line:column: not valid YAML (problem, context)``."""
    path = Path(path)
    text = path.read_text()
    try:
        return pickle.loads(_parsed_yaml(text))
    except yaml.YAMLError:
        pass
    try:  # broken YAML is parsed again by PyYAML for its own wording
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(yaml_fault(path, error)) from None


_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# A plan reads its profile over a hundred times (the paper profile's: 138). The file is read every time, so an
# edit is never missed, and parsed once per content: libyaml's parser where PyYAML has it (the same objects as
# safe_load, ~10x faster), the result kept pickled, since unpickling a copy is ~80x faster than parsing and a
# caller may change what it gets.
@functools.lru_cache(maxsize=64)
def _parsed_yaml(text: str) -> bytes:
    return pickle.dumps(yaml.load(text, Loader=_FAST_SAFE_LOADER))


def yaml_fault(path: str | Path, error: yaml.YAMLError) -> str:
    """One line for a YAML error: where the parser stopped (line and column from 1) and why, with the
    construct it was in ("while parsing a flow mapping") and where that construct began."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        problem += f", {context}" + (f" that began at line {context_mark.line + 1}, column {context_mark.column + 1}"
                                     if context_mark else "")
    return f"{where}: not valid YAML ({problem})"

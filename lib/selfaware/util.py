"""Small helpers below every other module of the library: they import nothing from it."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pandas as pd


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

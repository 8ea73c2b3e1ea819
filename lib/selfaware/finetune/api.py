"""Finetuning jobs through the OpenAI and Fireworks APIs, recorded so that no job is paid for twice.

Every job is keyed like a local adapter: base model + dataset hash + hyperparameters + seed. The registry
(SQLite under ``cache_dir()/finetune_jobs.sqlite``) is written *before* anything is waited on:

  1. an ``intent`` record before the job is created,
  2. the job id right after creation (``created``),
  3. the tuned model's spec when it succeeds (``succeeded``).

A kill -9 between 1 and 2 cannot double-launch either: OpenAI jobs carry the key in their ``metadata``
and are looked up by it before creating; Fireworks jobs, datasets and deployments get ids derived from the
key, so creating one twice is a 409 that we answer by following the existing one. A rerun with a finished
record returns the tuned model at once; with a ``created`` record it resumes following the same job.

Options (``finetune(..., **api_options)``):
  poll_seconds      seconds between status polls (default 20, or SELFAWARE_FINETUNE_POLL_SECONDS)
  timeout_hours     stop following after this long (the job keeps running; a rerun resumes) (default 24)
  retry_failed      relaunch when the recorded job failed or was cancelled (default False)
  account_id        Fireworks account (default FIREWORKS_ACCOUNT_ID)
  deployment        Fireworks only: "auto" (default) creates a scale-to-zero dedicated deployment of the
                    tuned LoRA (Fireworks serves LoRA models on dedicated deployments only); a deployment
                    name ("accounts/<a>/deployments/<id>", base model deployed with addons) loads the LoRA
                    onto it; "none" skips this and returns the bare model name.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import cache as cache_module
from .. import context, settings
from ..cache import canonical_json, content_hash
from ..errors import ConfigError, FinetuneFailed, ModelNotAvailable, config_error
from ..models import parse_spec
from ..models.api import RetryPolicy, classify_error, redact
from ..paths import cache_dir

API_TRAINER_VERSION = 1  # bump when a change here changes what a job is asked to do
OPENAI_TERMINAL = {"succeeded", "failed", "cancelled"}
FIREWORKS_FAILED = {"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_DELETING"}


# ---- hyperparameters -------------------------------------------------------------------------------------

class OpenAIFinetuneHParams(BaseModel):
    """OpenAI's supervised finetuning knobs; None leaves the API's "auto"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_epochs: int | None = Field(None, ge=1, le=50)
    batch_size: int | None = Field(None, ge=1, le=256)
    learning_rate_multiplier: float | None = Field(None, gt=0)
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")


class FireworksFinetuneHParams(BaseModel):
    """Fireworks' supervised LoRA knobs; None leaves the API's default. ``batch_size`` counts examples
    (the API's ``batch_size_samples``), as in the paper."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lora_rank: int | None = Field(None, ge=1, le=64)
    learning_rate: float | None = Field(None, gt=0)
    epochs: int | None = Field(None, ge=1, le=100)
    batch_size: int | None = Field(None, ge=1)


HPARAMS_BY_BACKEND: dict[str, type[BaseModel]] = {"openai": OpenAIFinetuneHParams,
                                                  "fireworks": FireworksFinetuneHParams}


def validate_hparams(base_spec: str, hparams: Any) -> BaseModel:
    """Typed hyperparameters for the spec's backend; an unknown or mistyped key is a ConfigError here,
    before anything is uploaded or spent."""
    backend = parse_spec(base_spec).backend
    if backend not in HPARAMS_BY_BACKEND:
        raise ConfigError(f"{base_spec}: the {backend!r} backend has no finetuning API "
                          f"(finetune a local:… model, or an openai:/fireworks: one)")
    model_class = HPARAMS_BY_BACKEND[backend]
    if isinstance(hparams, model_class):
        return hparams
    if isinstance(hparams, BaseModel):
        hparams = hparams.model_dump()
    try:
        return model_class(**dict(hparams or {}))
    except ValidationError as error:
        raise config_error(error, f"finetune hyperparameters for {base_spec}: ", model_class.model_fields) from None


def dataset_jsonl(conversations: Sequence[dict]) -> bytes:
    """The OpenAI chat JSONL both APIs accept: one ``{"messages": [...]}`` per line."""
    return "".join(json.dumps({"messages": c["messages"]}, ensure_ascii=False) + "\n"
                   for c in conversations).encode("utf-8")


def api_training_key(base_spec: str, conversations: Sequence[dict], hparams: BaseModel, seed: int) -> str:
    parsed = parse_spec(base_spec)
    return content_hash({"backend": parsed.backend, "base": parsed.name,
                         "data": content_hash([c["messages"] for c in conversations]),
                         "hparams": hparams.model_dump(mode="json"), "seed": seed,
                         "api_trainer": API_TRAINER_VERSION})


# ---- the registry ------------------------------------------------------------------------------------------

def registry_path() -> Path:
    return cache_dir() / "finetune_jobs.sqlite"


class JobRegistry:
    """key -> record (JSON). Every write is its own committed transaction, so a kill loses nothing written."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else registry_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn, conn:
            conn.execute("CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, record TEXT, updated REAL)")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def get(self, key: str) -> dict | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT record FROM jobs WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def update(self, key: str, **fields: Any) -> dict:
        with closing(self._connect()) as conn, conn:
            row = conn.execute("SELECT record FROM jobs WHERE key = ?", (key,)).fetchone()
            record = {**(json.loads(row[0]) if row else {"key": key}), **fields}
            conn.execute("INSERT OR REPLACE INTO jobs (key, record, updated) VALUES (?, ?, ?)",
                         (key, canonical_json(record), time.time()))
        return record

    def all(self) -> list[dict]:
        with closing(self._connect()) as conn:
            return [json.loads(r[0]) for r in conn.execute("SELECT record FROM jobs ORDER BY updated")]


# ---- shared plumbing ---------------------------------------------------------------------------------------

class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_seconds: float = Field(default_factory=lambda: settings.current().finetune_poll_seconds)
    timeout_hours: float = 24.0
    retry_failed: bool = False
    account_id: str | None = None
    deployment: str = "auto"


def _key_from(variable: str) -> str:
    key = os.environ.get(variable, "")
    if not key:
        raise ModelNotAvailable(f"finetuning through the API needs the environment variable {variable}. "
                                f"Without keys, use the offline profile: `make book` finetunes the embedded "
                                f"model (local:smollm2-135m) instead.")
    return key


def _call(function: Callable[[], Any], what: str, secret: str) -> Any:
    """A control-plane call with our bounded, counted retries (the SDK's own are off)."""
    policy = RetryPolicy.from_env(1)
    started = time.monotonic()
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return function()
        except Exception as error:  # noqa: BLE001 - classified; the re-raise is scrubbed of the key
            reason, server_wait = classify_error(error)
            delay = policy.backoff(attempt, server_wait)
            if reason is None or attempt == policy.max_attempts or \
                    time.monotonic() - started + delay > policy.total_seconds:
                raise FinetuneFailed(redact(f"{what}: {type(error).__name__}: {error}", [secret])[:500]) from None
            time.sleep(delay)
    raise AssertionError("unreachable")


def _hide_progress(progress: bool) -> bool:
    return not progress or not settings.current().progress


def _status_code(error: BaseException) -> int | None:
    return getattr(error, "status_code", None)


def _slug(text: str, length: int) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:length] or "run"


def finetune_api(base_spec: str, conversations: Sequence[dict], hparams: Any = None, seed: int = 0,
                 name: str = "", progress: bool = True, **api_options: Any) -> str:
    """Run (or reuse, or resume) a finetuning job; returns the tuned model's spec."""
    parsed = parse_spec(base_spec)
    typed = validate_hparams(base_spec, hparams)
    try:
        options = _Options(**api_options)
    except ValidationError as error:
        raise config_error(error, f"finetune options for {base_spec}: ", _Options.model_fields) from None
    if not conversations:
        raise ConfigError(f"finetune {name!r}: the dataset is empty")
    key = api_training_key(base_spec, conversations, typed, seed)
    registry = JobRegistry()
    record = registry.get(key)
    if record and record.get("status") == "succeeded":
        context.current().count_training(cached=True)
        return record["model_spec"]
    cache_module.require_computing(f"finetuning job {key[:16]} ({name}) has no finished record")
    if record and record.get("status") == "failed":
        if not options.retry_failed:
            raise FinetuneFailed(f"finetuning {name or key[:12]} failed before ({record.get('job_id')}: "
                                 f"{record.get('error')}); pass retry_failed=True to launch it again")
        record = registry.update(key, status="retrying", job_id=None, failed_job=record.get("job_id"),
                                 attempt=int(record.get("attempt", 1)) + 1)
    follow = JOBS_BY_BACKEND[parsed.backend]
    with context.current().timed("training", parsed.name):  # the wait for the provider's job is its time
        return follow(parsed.name, conversations, typed, seed, name, key, registry, options, progress).run()


# ---- OpenAI ------------------------------------------------------------------------------------------------

class _OpenAIJob:
    def __init__(self, model, conversations, hparams, seed, name, key, registry, options, progress):
        self.model, self.conversations, self.hparams, self.seed = model, conversations, hparams, seed
        self.name, self.key, self.registry, self.options, self.progress = name, key, registry, options, progress
        self.secret = _key_from("OPENAI_API_KEY")
        import openai

        policy = RetryPolicy.from_env(1)
        self.client = openai.OpenAI(api_key=self.secret, base_url=os.environ.get("OPENAI_BASE_URL") or None,
                                    max_retries=0, timeout=policy.request_timeout)

    def run(self) -> str:
        record = self.registry.get(self.key) or {}
        job_id = record.get("job_id")
        if not job_id:
            self.registry.update(self.key, status="intent", backend="openai", base=self.model, name=self.name,
                                 seed=self.seed, hparams=self.hparams.model_dump(mode="json"),
                                 examples=len(self.conversations))
            job_id = self._find_existing() or self._create()
        return self._follow(job_id)

    def _find_existing(self) -> str | None:
        """A job launched for this key by a run that died before recording it."""
        page = _call(lambda: self.client.fine_tuning.jobs.list(metadata={"selfaware_key": self.key}, limit=100),
                     "list finetuning jobs", self.secret)
        previous = (self.registry.get(self.key) or {}).get("failed_job")
        for job in page.data:
            if (job.metadata or {}).get("selfaware_key") == self.key and job.id != previous and \
                    job.status not in ("failed", "cancelled"):
                self.registry.update(self.key, status="created", job_id=job.id, adopted=True)
                return job.id
        return None

    def _create(self) -> str:
        record = self.registry.get(self.key) or {}
        file_id = record.get("file_id")
        if not file_id:
            data = dataset_jsonl(self.conversations)
            uploaded = _call(lambda: self.client.files.create(
                file=(f"selfaware-{self.key[:12]}.jsonl", data, "application/jsonl"), purpose="fine-tune"),
                "upload training file", self.secret)
            file_id = uploaded.id
            self.registry.update(self.key, file_id=file_id)
        hyper = {k: v for k, v in self.hparams.model_dump().items() if k != "suffix" and v is not None}
        suffix = self.hparams.suffix or _slug(self.name or "selfaware", 20)
        for attempt in range(RetryPolicy.from_env(1).max_attempts):
            try:
                job = self.client.fine_tuning.jobs.create(
                    model=self.model, training_file=file_id, seed=self.seed, suffix=suffix,
                    metadata={"selfaware_key": self.key, "name": self.name[:200]},
                    method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
                break
            except Exception as error:  # noqa: BLE001
                reason, wait = classify_error(error)
                if reason is None:
                    raise FinetuneFailed(redact(f"create finetuning job: {type(error).__name__}: {error}",
                                                [self.secret])[:500]) from None
                # the create may have reached the server before the connection dropped: look before retrying
                time.sleep(RetryPolicy.from_env(1).backoff(attempt + 1, wait))
                if existing := self._find_existing():
                    return existing
        else:
            raise FinetuneFailed("create finetuning job: gave up after bounded retries")
        self.registry.update(self.key, status="created", job_id=job.id)
        context.current().count_training()
        return job.id

    def _follow(self, job_id: str) -> str:
        from tqdm.auto import tqdm

        deadline = time.monotonic() + self.options.timeout_hours * 3600
        seen: set[str] = set()
        bar = tqdm(total=None, desc=f"OpenAI finetune {self.name or job_id}", disable=_hide_progress(self.progress),
                   leave=False, file=context.current().log)
        try:
            while True:
                job = _call(lambda: self.client.fine_tuning.jobs.retrieve(job_id), "poll job", self.secret)
                events = _call(lambda: self.client.fine_tuning.jobs.list_events(job_id, limit=100),
                               "read job events", self.secret)
                for event in reversed(events.data):  # the API lists newest first
                    if event.id not in seen:
                        seen.add(event.id)
                        if step := re.search(r"Step (\d+)/(\d+)", event.message):
                            bar.total = int(step.group(2))
                            bar.n = int(step.group(1))
                        bar.set_postfix_str(event.message[:60])
                        bar.refresh()
                if job.status == "succeeded":
                    spec = f"openai:{job.fine_tuned_model}"
                    self.registry.update(self.key, status="succeeded", job_id=job_id, model_spec=spec,
                                         trained_tokens=job.trained_tokens)
                    return spec
                if job.status in ("failed", "cancelled"):
                    error = getattr(job, "error", None)
                    message = getattr(error, "message", None) or job.status
                    self.registry.update(self.key, status="failed", job_id=job_id, error=message)
                    raise FinetuneFailed(f"OpenAI finetuning job {job_id} ({self.name}) {job.status}: {message}")
                if time.monotonic() > deadline:
                    raise FinetuneFailed(f"OpenAI finetuning job {job_id} still {job.status} after "
                                         f"{self.options.timeout_hours} h; rerun to resume following it")
                time.sleep(self.options.poll_seconds)
        finally:
            bar.close()


# ---- Fireworks ---------------------------------------------------------------------------------------------

class _FireworksJob:
    def __init__(self, model, conversations, hparams, seed, name, key, registry, options, progress):
        self.model, self.conversations, self.hparams, self.seed = model, conversations, hparams, seed
        self.name, self.key, self.registry, self.options, self.progress = name, key, registry, options, progress
        self.secret = _key_from("FIREWORKS_API_KEY")
        self.account = options.account_id or os.environ.get("FIREWORKS_ACCOUNT_ID")
        if not self.account:
            raise ModelNotAvailable("finetuning on Fireworks needs your account id: set FIREWORKS_ACCOUNT_ID "
                                    "(or pass account_id=...)")
        import fireworks

        policy = RetryPolicy.from_env(1)
        self.client = fireworks.Fireworks(api_key=self.secret, account_id=self.account,
                                          base_url=os.environ.get("FIREWORKS_BASE_URL") or None,
                                          max_retries=0, timeout=policy.request_timeout)
        # ids derived from content: creating twice is a 409 conflict, never a second job
        attempt = int((registry.get(key) or {}).get("attempt", 1))  # a relaunch after a failure needs a new id
        self.job_id = f"sa-{key[:24]}" + (f"-r{attempt}" if attempt > 1 else "")
        self.dataset_id = "sa-data-" + content_hash([c["messages"] for c in conversations], 20)

    def _create_or_get(self, create: Callable[[], Any], get: Callable[[], Any], what: str) -> tuple[Any, bool]:
        """(resource, created by us). A 409 means an earlier run (maybe killed) created it: follow that."""
        for attempt in range(1, RetryPolicy.from_env(1).max_attempts + 1):
            try:
                return create(), True
            except Exception as error:  # noqa: BLE001
                if _status_code(error) == 409:
                    return _call(get, f"get {what}", self.secret), False
                reason, wait = classify_error(error)
                if reason is None:
                    raise FinetuneFailed(redact(f"create {what}: {type(error).__name__}: {error}",
                                                [self.secret])[:500]) from None
                time.sleep(RetryPolicy.from_env(1).backoff(attempt, wait))
        raise FinetuneFailed(f"create {what}: gave up after bounded retries")

    def run(self) -> str:
        record = self.registry.get(self.key) or {}
        if not record.get("job_id"):
            self.registry.update(self.key, status="intent", backend="fireworks", base=self.model, name=self.name,
                                 seed=self.seed, hparams=self.hparams.model_dump(mode="json"),
                                 examples=len(self.conversations), job_id=None, planned_job_id=self.job_id)
            dataset = self._dataset()
            hp = self.hparams
            body = {k: v for k, v in {"epochs": hp.epochs, "learning_rate": hp.learning_rate,
                                      "lora_rank": hp.lora_rank, "batch_size_samples": hp.batch_size}.items()
                    if v is not None}
            _, created = self._create_or_get(
                lambda: self.client.supervised_fine_tuning_jobs.create(
                    dataset=dataset, base_model=self.model, supervised_fine_tuning_job_id=self.job_id,
                    output_model=self.job_id, display_name=(self.name or self.job_id)[:60], **body),
                lambda: self.client.supervised_fine_tuning_jobs.get(self.job_id), "finetuning job")
            self.registry.update(self.key, status="created", job_id=self.job_id)
            if created:
                context.current().count_training()
        output_model = self._follow(self.registry.get(self.key)["job_id"])
        spec = self._make_callable(output_model)
        self.registry.update(self.key, status="succeeded", model_spec=spec, output_model=output_model)
        return spec

    def _dataset(self) -> str:
        name = f"accounts/{self.account}/datasets/{self.dataset_id}"
        dataset, _ = self._create_or_get(
            lambda: self.client.datasets.create(dataset_id=self.dataset_id,
                                                dataset={"display_name": self.dataset_id, "format": "CHAT",
                                                         "example_count": str(len(self.conversations))}),
            lambda: self.client.datasets.get(self.dataset_id), "dataset")
        if getattr(dataset, "state", None) != "READY":
            data = dataset_jsonl(self.conversations)
            _call(lambda: self.client.datasets.upload(self.dataset_id, file=("train.jsonl", data)),
                  "upload dataset", self.secret)
        self.registry.update(self.key, dataset=name)
        return name

    def _follow(self, job_id: str) -> str:
        from tqdm.auto import tqdm

        deadline = time.monotonic() + self.options.timeout_hours * 3600
        bar = tqdm(total=100, desc=f"Fireworks finetune {self.name or job_id}", disable=_hide_progress(self.progress),
                   leave=False, file=context.current().log)
        try:
            while True:
                job = _call(lambda: self.client.supervised_fine_tuning_jobs.get(job_id), "poll job", self.secret)
                percent = (job.job_progress.percent if job.job_progress else None) or 0
                bar.n = min(100, percent)
                bar.set_postfix_str(str(job.state))
                bar.refresh()
                if job.state == "JOB_STATE_COMPLETED":
                    return job.output_model or f"accounts/{self.account}/models/{job_id}"
                if job.state in FIREWORKS_FAILED:
                    message = getattr(job.status, "message", None) if job.status else None
                    self.registry.update(self.key, status="failed", error=message or job.state, job_id=job_id)
                    raise FinetuneFailed(f"Fireworks finetuning job {job_id} ({self.name}) {job.state}: {message}")
                if time.monotonic() > deadline:
                    raise FinetuneFailed(f"Fireworks job {job_id} still {job.state} after "
                                         f"{self.options.timeout_hours} h; rerun to resume following it")
                time.sleep(self.options.poll_seconds)
        finally:
            bar.close()

    def _make_callable(self, output_model: str) -> str:
        """LoRA models are served only on dedicated deployments; the spec names the deployment so that
        requests reach it (``<model>#<deployment>``)."""
        choice = self.options.deployment
        if choice == "none":
            return f"fireworks:{output_model}"
        if choice == "auto":
            deployment_id = f"sa-{self.key[:24]}"
            _, created = self._create_or_get(
                lambda: self.client.deployments.create(base_model=output_model, deployment_id=deployment_id,
                                                       min_replica_count=0, max_replica_count=1,
                                                       display_name=(self.name or deployment_id)[:60]),
                lambda: self.client.deployments.get(deployment_id), "deployment")
            deployment = f"accounts/{self.account}/deployments/{deployment_id}"
            self.registry.update(self.key, deployment=deployment)
            if created:
                print(f"Created Fireworks deployment {deployment} (scales to zero when idle; delete it with "
                      f"`firectl delete deployment {deployment_id}` when done).")
            self._wait(lambda: self.client.deployments.get(deployment_id), "READY", "deployment")
            return f"fireworks:{output_model}#{deployment}"
        loaded = _call(lambda: self.client.lora.load(model=output_model, deployment=choice),
                       "load LoRA onto deployment", self.secret)
        deployed_id = (loaded.name or "").rsplit("/", 1)[-1]
        self.registry.update(self.key, deployment=choice, deployed_model=loaded.name)
        self._wait(lambda: self.client.lora.get(deployed_id), "DEPLOYED", "LoRA load")
        return f"fireworks:{output_model}#{choice}"

    def _wait(self, get: Callable[[], Any], ready: str, what: str) -> None:
        deadline = time.monotonic() + self.options.timeout_hours * 3600
        while (state := _call(get, f"poll {what}", self.secret).state) != ready:
            if state in ("FAILED", "DELETED", "DELETING") or time.monotonic() > deadline:
                raise FinetuneFailed(f"Fireworks {what} for {self.name or self.key[:12]} is {state}")
            time.sleep(self.options.poll_seconds)


JOBS_BY_BACKEND = {"openai": _OpenAIJob, "fireworks": _FireworksJob}  # who follows a job of each backend


__all__ = ["FireworksFinetuneHParams", "JobRegistry", "OpenAIFinetuneHParams", "api_training_key",
           "dataset_jsonl", "finetune_api", "registry_path", "validate_hparams"]


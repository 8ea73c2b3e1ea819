"""A local stand-in for the OpenAI and Fireworks HTTP APIs, for tests and benchmarks.

It speaks the wire format the official SDKs expect, for the parts this project uses:

  OpenAI (client base URL ``<server>/v1``):
    POST /v1/chat/completions          logprobs/top_logprobs, n, seed, temperature, max_tokens
    POST /v1/files                     multipart upload, purpose fine-tune
    POST /v1/fine_tuning/jobs          GET /v1/fine_tuning/jobs (metadata filter)
    GET  /v1/fine_tuning/jobs/{id}     GET /v1/fine_tuning/jobs/{id}/events
    GET  /v1/models
  Fireworks (client base URL ``<server>``; chat is the same route):
    POST/GET /v1/accounts/{a}/datasets[/{id}], POST .../datasets/{id}:upload
    POST/GET /v1/accounts/{a}/supervisedFineTuningJobs[/{id}]   (client-chosen id; 409 if taken)
    POST/GET /v1/accounts/{a}/deployments[/{id}], POST/GET /v1/accounts/{a}/deployedModels[/{id}]

Answers are a deterministic function of the request (fixtures), or come from the embedded local model
(``responder="local"``; heavy, text only, no log-probabilities). Finetuning jobs move through their
states a little at each poll. Faults are injected on demand (:class:`FaultPlan`), and every request is
counted per (endpoint, request hash) and outcome, so a test can assert that each distinct request was
answered exactly once and that no job was created twice.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# The fixture vocabulary: the first answer token is always one of these, with request-dependent weights.
FIXTURE_TOKENS = ["A", "B", "Yes", "No", "Bold", "Cautious", "Balanced", "I", "The",
                  "0", "10", "20", "30", "40", "50", "60", "70", "80", "90", "100"]


REJECTED_KEY_PREFIX = "sk-reject-"  # keys the server refuses with a 401 that quotes them


def client_env(server: "FakeApiServer", openai_key: str = "sk-test-fake", fireworks_key: str = "fw-test-fake",
               account: str = "test-account") -> dict[str, str]:
    """Environment that points the real SDK clients (and this project's backends) at ``server``."""
    return {"OPENAI_API_KEY": openai_key, "OPENAI_BASE_URL": server.openai_base_url,
            "FIREWORKS_API_KEY": fireworks_key, "FIREWORKS_BASE_URL": server.fireworks_base_url,
            "FIREWORKS_ACCOUNT_ID": account}


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def fixture_logprobs(model: str, messages: list) -> list[tuple[str, float]]:
    """Deterministic first-token distribution for (model, messages), best first."""
    rng = random.Random(_digest([model, messages]))
    scores = [rng.gauss(0, 2) for _ in FIXTURE_TOKENS]
    top = max(scores)
    total = sum(math.exp(s - top) for s in scores)
    pairs = [(t, s - top - math.log(total)) for t, s in zip(FIXTURE_TOKENS, scores)]
    return sorted(pairs, key=lambda p: -p[1])


def fixture_text(model: str, messages: list, seed: Any, temperature: float, index: int, max_tokens: int) -> str:
    """A sampled answer: a first token drawn from the fixture distribution (argmax at temperature 0)."""
    pairs = fixture_logprobs(model, messages)
    if not temperature:
        token = pairs[0][0]
    else:
        rng = random.Random(_digest([model, messages, seed, temperature, index]))
        weights = [math.exp(lp / temperature) for _, lp in pairs]
        token = rng.choices([t for t, _ in pairs], weights)[0]
    words = [token] + ["because", "of", "the", "question"][: max(0, max_tokens - 1)]
    return " ".join(words)


@dataclass
class FaultPlan:
    """Which faults to inject, at what rates. A request's first ``max_faults_per_request`` attempts may fail;
    later ones always succeed, so that bounded retries always get through and a test cannot flake."""

    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    rate_reset: float = 0.0
    retry_after: float = 0.05  # seconds, sent as Retry-After on 429
    slow_seconds: float = 3.0  # must exceed the client's timeout to count as a timeout
    max_faults_per_request: int = 2
    routes: tuple[str, ...] = ("POST /v1/chat/completions",)

    @property
    def total_rate(self) -> float:
        return self.rate_429 + self.rate_500 + self.rate_slow + self.rate_reset


@dataclass
class _State:
    files: dict = field(default_factory=dict)
    openai_jobs: dict = field(default_factory=dict)
    job_polls: Counter = field(default_factory=Counter)
    datasets: dict = field(default_factory=dict)
    fireworks_jobs: dict = field(default_factory=dict)
    deployments: dict = field(default_factory=dict)
    deployed_models: dict = field(default_factory=dict)


class FakeApiServer:
    """Start with ``with FakeApiServer() as server:``; ``server.openai_base_url`` and
    ``server.fireworks_base_url`` are what the clients point at."""

    def __init__(self, faults: FaultPlan | None = None, latency: float = 0.0, responder: str = "fixture",
                 no_logprobs_models: tuple[str, ...] = (), polls_per_stage: int = 1, seed: int = 0,
                 failing_jobs: int = 0):
        self.faults = faults or FaultPlan()
        self.latency = latency
        self.responder = responder
        self.no_logprobs_models = set(no_logprobs_models)
        self.polls_per_stage = polls_per_stage
        self.failing_jobs = failing_jobs  # this many of the next finetuning jobs fail while running
        self.state = _State()
        self.outcomes: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.unrouted: Counter = Counter()  # "METHOD /path" of requests for routes this fake does not have
        self.bodies: dict[str, bytes] = {}  # request hash -> the raw request body, for a failing test to show
        self.lock = threading.RLock()
        self._rng = random.Random(seed)
        self._planned_faults: dict[tuple[str, str], list[str]] = {}
        self._local_model = None
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> "FakeApiServer":
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 256
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "FakeApiServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def fireworks_base_url(self) -> str:
        return self.url

    # ---- what tests read -----------------------------------------------------------------------------
    def answered(self, route: str = "POST /v1/chat/completions") -> Counter:
        """Successful answers per request hash on a route."""
        with self.lock:
            return Counter({h: c["ok"] for (r, h), c in self.outcomes.items() if r == route and c["ok"]})

    def outcome_totals(self, route: str | None = None) -> Counter:
        total: Counter = Counter()
        with self.lock:
            for (r, _), counts in self.outcomes.items():
                if route is None or r == route:
                    total.update(counts)
        return total

    def not_found(self, route: str) -> int:
        """How many requests came for a route this fake does not have (answered 404), e.g. "POST /tokenize"."""
        with self.lock:
            return self.unrouted[route]

    def requests_seen(self) -> list[str]:
        with self.lock:
            return sorted({r for r, _ in self.outcomes})

    # ---- faults --------------------------------------------------------------------------------------
    def _next_fault(self, route: str, request_hash: str) -> str | None:
        plan = self.faults
        if route not in plan.routes or plan.total_rate <= 0:
            return None
        with self.lock:
            key = (route, request_hash)
            if key not in self._planned_faults:
                planned = []
                for _ in range(plan.max_faults_per_request):
                    draw = self._rng.random()
                    for kind, rate in (("429", plan.rate_429), ("500", plan.rate_500),
                                       ("slow", plan.rate_slow), ("reset", plan.rate_reset)):
                        if draw < rate:
                            planned.append(kind)
                            break
                        draw -= rate
                    else:
                        break  # this attempt succeeds, and so do all after it
                self._planned_faults[key] = planned
            planned = self._planned_faults[key]
            return planned.pop(0) if planned else None

    # ---- answers -------------------------------------------------------------------------------------
    def chat_completion(self, body: dict) -> dict:
        model = body.get("model", "")
        messages = body.get("messages", [])
        n = int(body.get("n") or 1)
        temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
        max_tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
        give_logprobs = bool(body.get("logprobs")) and model not in self.no_logprobs_models
        top_n = int(body.get("top_logprobs") or 0)
        choices = []
        for index in range(n):
            if self.responder == "local":
                text = self._local_text(messages, body.get("seed"), temperature, index, max_tokens)
            else:
                text = fixture_text(model, messages, body.get("seed"), temperature, index, max_tokens)
            choice: dict[str, Any] = {"index": index, "finish_reason": "stop", "logprobs": None,
                                      "message": {"role": "assistant", "content": text}}
            if give_logprobs:
                pairs = fixture_logprobs(model, messages)
                first = text.split(" ")[0]
                choice["logprobs"] = {"content": [{
                    "token": first, "logprob": dict(pairs).get(first, -30.0), "bytes": list(first.encode()),
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                     for t, lp in pairs[:top_n]]}]}
            choices.append(choice)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        return {"id": "chatcmpl-" + _digest(body)[:24], "object": "chat.completion", "created": int(time.time()),
                "model": model, "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n * max_tokens,
                          "total_tokens": prompt_tokens + n * max_tokens}}

    def _local_text(self, messages, seed, temperature, index, max_tokens) -> str:
        with self.lock:
            if self._local_model is None:
                from selfaware.models import load_model
                self._local_model = load_model("local:smollm2-135m")
            sample_seed = int(_digest([seed, index])[:8], 16)
            return self._local_model.sample([messages], n=1, temperature=temperature, max_tokens=max_tokens,
                                            seed=sample_seed)[0][0]


# ---- HTTP ----------------------------------------------------------------------------------------------

_ROUTES: list[tuple[str, re.Pattern, str]] = []


def _route(method: str, pattern: str):
    def register(function):
        _ROUTES.append((method, re.compile("^" + pattern + "$"), function.__name__))
        return function
    return register


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; with Nagle on, keep-alive clients wait ~40 ms per response
    disable_nagle_algorithm = True
    server_state: FakeApiServer

    def log_message(self, *args) -> None:  # quiet: tests read counters, not logs
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, OSError):
            pass  # a client that gave up (timeout) or a reset we made ourselves

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # ---- plumbing -------------------------------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client died mid-request (e.g. SIGKILL): nothing to answer
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        self.query = dict(parse_qsl(parts.query))
        for verb, pattern, name in _ROUTES:
            found = pattern.match(parts.path)
            if verb == method and found:
                route = f"{method} {pattern.pattern[1:-1]}"
                break
        else:
            with state.lock:
                state.unrouted[f"{method} {parts.path}"] += 1
            return self._send(404, {"error": {"message": f"no route {method} {parts.path}"}})
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token:
            return self._send(401, {"error": {"message": "missing bearer token"}})
        if token.startswith(REJECTED_KEY_PREFIX):
            # as the real API does: the refusal quotes the key, partly masked (its tail is still a secret)
            masked = token[:6] + "*" * 8 + token[-8:]
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {masked}.",
                                              "type": "invalid_request_error", "code": "invalid_api_key"}})
        request_hash = hashlib.sha256(method.encode() + self.path.encode() + raw).hexdigest()[:16]
        with state.lock:
            state.bodies.setdefault(request_hash, raw[:4000])
        fault = state._next_fault(route, request_hash)
        record = lambda outcome: state.outcomes[(route, request_hash)].update([outcome])  # noqa: E731
        if fault == "429":
            with state.lock:
                record("429")
            return self._send(429, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}},
                              {"Retry-After": f"{state.faults.retry_after:g}"})
        if fault == "500":
            with state.lock:
                record("500")
            return self._send(500, {"error": {"message": "server error (injected)"}})
        if fault == "slow":
            with state.lock:
                record("slow")
            time.sleep(state.faults.slow_seconds)
        self.raw_body = raw
        try:
            body = getattr(self, name)(*found.groups())
            status, headers = 200, {}
        except _Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        if state.latency and "chat" in route:
            time.sleep(state.latency)
        if fault == "reset":
            with state.lock:
                record("reset")
            return self._reset_midway(status, body)
        if fault != "slow":
            with state.lock:
                record("ok" if status < 400 else f"http_{status}")
        self._send(status, body, headers)

    def _json(self) -> dict:
        return json.loads(self.raw_body or b"{}")

    def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _reset_midway(self, status: int, body: Any) -> None:
        """Headers and half the body, then a TCP reset: what a dropped connection looks like to a client."""
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload[: len(payload) // 2])
        self.wfile.flush()
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _multipart(self) -> dict[str, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + self.raw_body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True)
            if part.get_filename():
                fields[name + ".filename"] = part.get_filename()
        return fields

    # ---- OpenAI ----------------------------------------------------------------------------------------
    @_route("POST", r"/v1/chat/completions")
    def chat(self) -> dict:
        return self.server_state.chat_completion(self._json())

    @_route("GET", r"/v1/models")
    def models(self) -> dict:
        state = self.server_state.state
        tuned = [j["fine_tuned_model"] for j in state.openai_jobs.values() if j["fine_tuned_model"]]
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                                           for m in ["gpt-4o-2024-05-13", "gpt-4o-2024-08-06", *tuned]]}

    @_route("POST", r"/v1/files")
    def upload_file(self) -> dict:
        fields = self._multipart()
        content = fields.get("file") or b""
        for line in content.decode().splitlines():
            if line.strip():
                json.loads(line)  # a malformed upload is the client's bug: fail loudly
        state = self.server_state.state
        with self.server_state.lock:
            file_id = f"file-{len(state.files) + 1:06d}"
            state.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content),
                                    "created_at": int(time.time()), "filename": fields.get("file.filename"),
                                    "purpose": (fields.get("purpose") or b"").decode(), "status": "processed",
                                    "lines": len(content.decode().splitlines())}
        return state.files[file_id]

    @_route("POST", r"/v1/fine_tuning/jobs")
    def create_openai_job(self) -> dict:
        body = self._json()
        state = self.server_state.state
        if body.get("training_file") not in state.files:
            raise _Reply(400, {"error": {"message": f"unknown training_file {body.get('training_file')}"}})
        with self.server_state.lock:
            job_id = f"ftjob-{len(state.openai_jobs) + 1:06d}"
            hyper = body.get("hyperparameters") or \
                (body.get("method") or {}).get("supervised", {}).get("hyperparameters") or {}
            state.openai_jobs[job_id] = {
                "id": job_id, "object": "fine_tuning.job", "created_at": int(time.time()), "error": None,
                "fine_tuned_model": None, "finished_at": None, "hyperparameters": hyper,
                "model": body["model"], "organization_id": "org-fake", "result_files": [], "seed": body.get("seed", 0),
                "status": "validating_files", "trained_tokens": None, "training_file": body["training_file"],
                "validation_file": None, "metadata": body.get("metadata"), "suffix": body.get("suffix"),
                "_events": [], "_stage": 0, "_fails": self._take_failure()}
            self._openai_event(state.openai_jobs[job_id], "Validating training file")
        return self._public(state.openai_jobs[job_id])

    def _take_failure(self) -> bool:
        with self.server_state.lock:
            if self.server_state.failing_jobs > 0:
                self.server_state.failing_jobs -= 1
                return True
        return False

    @staticmethod
    def _public(job: dict) -> dict:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    @staticmethod
    def _openai_event(job: dict, message: str) -> None:
        job["_events"].append({"id": f"ftevent-{job['id'][-6:]}-{len(job['_events']) + 1:04d}",
                               "object": "fine_tuning.job.event", "created_at": int(time.time()),
                               "level": "info", "message": message, "type": "message"})

    def _advance_openai_job(self, job: dict) -> None:
        """One stage per ``polls_per_stage`` polls: validating, queued, running (3 steps), succeeded."""
        server = self.server_state
        server.state.job_polls[job["id"]] += 1
        if server.state.job_polls[job["id"]] % server.polls_per_stage:
            return
        job["_stage"] += 1
        stage, steps = job["_stage"], 3
        if stage == 1:
            job["status"] = "queued"
            self._openai_event(job, "Fine-tuning job queued")
        elif stage == 2 and job["_fails"]:
            job["status"] = "failed"
            job["error"] = {"code": "invalid_training_file", "message": "injected failure", "param": None}
            self._openai_event(job, "Fine-tuning job failed")
        elif 2 <= stage <= 1 + steps:
            job["status"] = "running"
            step = stage - 1
            self._openai_event(job, f"Step {step}/{steps}: training loss={1.0 / step:.3f}")
        elif stage == 2 + steps:
            job["status"] = "succeeded"
            lines = server.state.files[job["training_file"]]["lines"]
            job["trained_tokens"] = lines * 50
            job["finished_at"] = int(time.time())
            job["fine_tuned_model"] = f"ft:{job['model']}:fake-org:{job['suffix'] or 'tuned'}:{job['id'][-6:]}"
            self._openai_event(job, "The job has successfully completed")

    @_route("GET", r"/v1/fine_tuning/jobs/([^/]+)")
    def get_openai_job(self, job_id: str) -> dict:
        with self.server_state.lock:
            job = self.server_state.state.openai_jobs.get(job_id)
            if job is None:
                raise _Reply(404, {"error": {"message": f"no job {job_id}"}})
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                self._advance_openai_job(job)
            return self._public(job)

    @_route("GET", r"/v1/fine_tuning/jobs")
    def list_openai_jobs(self) -> dict:
        wanted = {m.group(1): v for k, v in self.query.items() if (m := re.match(r"metadata\[(.+)\]$", k))}
        with self.server_state.lock:
            jobs = [self._public(j) for j in self.server_state.state.openai_jobs.values()
                    if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())]
        jobs.sort(key=lambda j: j["id"], reverse=True)  # newest first, as the real API
        return {"object": "list", "data": jobs, "has_more": False}

    @_route("GET", r"/v1/fine_tuning/jobs/([^/]+)/events")
    def openai_job_events(self, job_id: str) -> dict:
        with self.server_state.lock:
            job = self.server_state.state.openai_jobs.get(job_id)
            if job is None:
                raise _Reply(404, {"error": {"message": f"no job {job_id}"}})
            events = list(reversed(job["_events"]))  # newest first, as the real API
        after = self.query.get("after")
        if after:
            ids = [e["id"] for e in events]
            events = events[ids.index(after) + 1:] if after in ids else events
        limit = int(self.query.get("limit", 20))
        return {"object": "list", "data": events[:limit], "has_more": len(events) > limit}

    # ---- Fireworks ------------------------------------------------------------------------------------
    @_route("POST", r"/v1/accounts/([^/]+)/datasets")
    def create_dataset(self, account: str) -> dict:
        body = self._json()
        name = f"accounts/{account}/datasets/{body['datasetId']}"
        with self.server_state.lock:
            if name in self.server_state.state.datasets:
                raise _Reply(409, {"code": 6, "message": f"dataset {name} already exists"})
            self.server_state.state.datasets[name] = {"name": name, "state": "UPLOADING", "format": "CHAT",
                                                      **(body.get("dataset") or {})}
            return self.server_state.state.datasets[name]

    @_route("POST", r"/v1/accounts/([^/]+)/datasets/([^/:]+):upload")
    def upload_dataset(self, account: str, dataset_id: str) -> dict:
        name = f"accounts/{account}/datasets/{dataset_id}"
        content = self._multipart().get("file") or b""
        with self.server_state.lock:
            dataset = self.server_state.state.datasets.get(name)
            if dataset is None:
                raise _Reply(404, {"code": 5, "message": f"no dataset {name}"})
            dataset.update(state="READY", exampleCount=str(len(content.decode().splitlines())))
        return {"id": dataset_id, "bytes": len(content), "object": "file", "purpose": "fine-tune"}

    @_route("GET", r"/v1/accounts/([^/]+)/datasets/([^/:]+)")
    def get_dataset(self, account: str, dataset_id: str) -> dict:
        dataset = self.server_state.state.datasets.get(f"accounts/{account}/datasets/{dataset_id}")
        if dataset is None:
            raise _Reply(404, {"code": 5, "message": "not found"})
        return dataset

    @_route("POST", r"/v1/accounts/([^/]+)/supervisedFineTuningJobs")
    def create_fireworks_job(self, account: str) -> dict:
        body = self._json()
        job_id = self.query.get("supervisedFineTuningJobId") or f"sftj-{len(self.server_state.state.fireworks_jobs)}"
        name = f"accounts/{account}/supervisedFineTuningJobs/{job_id}"
        with self.server_state.lock:
            if name in self.server_state.state.fireworks_jobs:
                raise _Reply(409, {"code": 6, "message": f"job {name} already exists"})
            dataset = self.server_state.state.datasets.get(body.get("dataset"))
            if dataset is None or dataset["state"] != "READY":
                raise _Reply(400, {"code": 9, "message": f"dataset {body.get('dataset')} is not ready"})
            output = body.get("outputModel") or job_id
            self.server_state.state.fireworks_jobs[name] = {
                **body, "name": name, "state": "JOB_STATE_CREATING", "createTime": "2025-01-01T00:00:00Z",
                "outputModel": f"accounts/{account}/models/{output}", "jobProgress": {"percent": 0},
                "_fails": self._take_failure()}
            return self._public(self.server_state.state.fireworks_jobs[name])

    @_route("GET", r"/v1/accounts/([^/]+)/supervisedFineTuningJobs/([^/:]+)")
    def get_fireworks_job(self, account: str, job_id: str) -> dict:
        server = self.server_state
        name = f"accounts/{account}/supervisedFineTuningJobs/{job_id}"
        with server.lock:
            job = server.state.fireworks_jobs.get(name)
            if job is None:
                raise _Reply(404, {"code": 5, "message": f"no job {name}"})
            server.state.job_polls[name] += 1
            stage = server.state.job_polls[name] // server.polls_per_stage
            if job["state"] not in ("JOB_STATE_COMPLETED", "JOB_STATE_FAILED"):
                if stage >= 2 and job["_fails"]:
                    job.update(state="JOB_STATE_FAILED", status={"code": "INTERNAL", "message": "injected failure"})
                elif stage >= 4:
                    job.update(state="JOB_STATE_COMPLETED", jobProgress={"percent": 100, "epoch": 2})
                elif stage >= 1:
                    job.update(state="JOB_STATE_RUNNING", jobProgress={"percent": 33 * stage, "epoch": stage - 1})
            return self._public(job)

    @_route("POST", r"/v1/accounts/([^/]+)/deployments")
    def create_deployment(self, account: str) -> dict:
        body = self._json()
        deployment_id = self.query.get("deploymentId") or f"dep{len(self.server_state.state.deployments)}"
        name = f"accounts/{account}/deployments/{deployment_id}"
        with self.server_state.lock:
            if name in self.server_state.state.deployments:
                raise _Reply(409, {"code": 6, "message": f"deployment {name} already exists"})
            self.server_state.state.deployments[name] = {**body, "name": name, "state": "CREATING", "_polls": 0}
            return {k: v for k, v in self.server_state.state.deployments[name].items() if k != "_polls"}

    @_route("GET", r"/v1/accounts/([^/]+)/deployments/([^/:]+)")
    def get_deployment(self, account: str, deployment_id: str) -> dict:
        with self.server_state.lock:
            deployment = self.server_state.state.deployments.get(f"accounts/{account}/deployments/{deployment_id}")
            if deployment is None:
                raise _Reply(404, {"code": 5, "message": "not found"})
            deployment["_polls"] += 1
            if deployment["_polls"] >= 2:
                deployment["state"] = "READY"
            return {k: v for k, v in deployment.items() if k != "_polls"}

    @_route("POST", r"/v1/accounts/([^/]+)/deployedModels")
    def load_lora(self, account: str) -> dict:
        body = self._json()
        with self.server_state.lock:
            name = f"accounts/{account}/deployedModels/dm{len(self.server_state.state.deployed_models)}"
            self.server_state.state.deployed_models[name] = {**body, "name": name, "state": "DEPLOYING"}
            return self.server_state.state.deployed_models[name]

    @_route("GET", r"/v1/accounts/([^/]+)/deployedModels/([^/:]+)")
    def get_deployed_model(self, account: str, deployed_id: str) -> dict:
        with self.server_state.lock:
            model = self.server_state.state.deployed_models.get(f"accounts/{account}/deployedModels/{deployed_id}")
            if model is None:
                raise _Reply(404, {"code": 5, "message": "not found"})
            model["state"] = "DEPLOYED"
            return model


def serve_forever(**options) -> None:  # pragma: no cover - a convenience for trying things by hand
    """``python -m selfaware.testing.fake_api``: run a server until interrupted, printing its URLs."""
    server = FakeApiServer(**options).start()
    print(f"OPENAI_BASE_URL={server.openai_base_url}\nFIREWORKS_BASE_URL={server.fireworks_base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":  # pragma: no cover
    serve_forever()

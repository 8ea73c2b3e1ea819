"""API benchmark: 1,000 chat requests against the local fake OpenAI server with 200 ms added latency,
sent concurrently (the backend's default limit) versus one at a time.

One-at-a-time is measured on a subset (default 50 requests) and extrapolated to 1,000, because 1,000
sequential 200 ms requests take over three minutes and tell nothing more; the output says so.
Lost = requests with no answer; duplicated = distinct requests the server answered more than once.
Both must be 0. ``--faults`` adds 429/500/reset faults at 30% to the concurrent run.

    .venv/bin/python benchmarks/bench_api.py [--requests 1000] [--latency 0.2] [--sequential-subset 50]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from selfaware import context
from selfaware.models import load_model
from selfaware.models.api import OpenAIChatModel
from selfaware.testing.fake_api import FakeApiServer, FaultPlan, client_env

MODEL = "openai:bench-model"


def run(n_requests: int, latency: float, concurrency: int | None, faults: FaultPlan | None) -> dict:
    prompts = [[{"role": "user", "content": f"Benchmark request {i}"}] for i in range(n_requests)]
    with tempfile.TemporaryDirectory() as cache, FakeApiServer(latency=latency, faults=faults) as server:
        os.environ.update(client_env(server), SELFAWARE_CACHE_DIR=cache, SELFAWARE_PROGRESS="0",
                          SELFAWARE_API_BACKOFF_BASE="0.05", SELFAWARE_API_TIMEOUT="10")
        if concurrency:
            os.environ["SELFAWARE_API_CONCURRENCY"] = str(concurrency)
        else:
            os.environ.pop("SELFAWARE_API_CONCURRENCY", None)
        context.begin()
        model = load_model(MODEL)
        started = time.perf_counter()
        answers = model.sample(prompts, n=1, max_tokens=4)
        seconds = time.perf_counter() - started
        answered = server.answered()
        outcomes = server.outcome_totals()
    lost = sum(1 for a in answers if not a or not a[0])
    duplicated = sum(1 for count in answered.values() if count > 1)
    return {"requests": n_requests, "seconds": seconds, "lost": lost, "duplicated": duplicated,
            "distinct_answered": len(answered), "faults": {k: v for k, v in outcomes.items() if k != "ok"},
            "retries": {k: v for k, v in context.current().api_stats.items() if k.startswith("retry_")}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--sequential-subset", type=int, default=50)
    parser.add_argument("--faults", action="store_true", help="inject 429/500/reset faults (30%%) too")
    args = parser.parse_args(argv)

    faults = FaultPlan(rate_429=0.1, rate_500=0.1, rate_reset=0.1, retry_after=0.1) if args.faults else None
    concurrent = run(args.requests, args.latency, None, faults)
    subset = min(args.sequential_subset, args.requests)
    sequential = run(subset, args.latency, 1, None)
    sequential_estimate = sequential["seconds"] * args.requests / subset
    ratio = sequential_estimate / concurrent["seconds"]

    print(f"API benchmark: {args.requests} chat requests, fake OpenAI server on 127.0.0.1, "
          f"{args.latency * 1000:.0f} ms added latency per request")
    print(f"  concurrent (limit {OpenAIChatModel.default_concurrency}, the OpenAI backend's default): "
          f"{concurrent['seconds']:.2f} s  ({args.requests / concurrent['seconds']:.1f} requests/s)")
    print(f"  one at a time: measured {sequential['seconds']:.2f} s on {subset} requests, "
          f"extrapolated to {args.requests}: {sequential_estimate:.1f} s")
    print(f"  speed-up (one at a time / concurrent): {ratio:.1f}x  (ceiling {OpenAIChatModel.default_concurrency}x; "
          f"the fake server shares this process and its CPU)")
    if args.faults:
        print(f"  faults injected in the concurrent run: {concurrent['faults']}; retries: {concurrent['retries']}")
    print(f"  lost: {concurrent['lost'] + sequential['lost']}   "
          f"duplicated: {concurrent['duplicated'] + sequential['duplicated']}   "
          f"distinct requests answered: {concurrent['distinct_answered']}/{args.requests}")
    ok = concurrent["lost"] == concurrent["duplicated"] == sequential["lost"] == sequential["duplicated"] == 0 \
        and concurrent["distinct_answered"] == args.requests
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

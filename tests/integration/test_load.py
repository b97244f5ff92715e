"""Bounded load through the real server (scripts/measure/bench/load_client.py: loopback only, a fixed number of
requests): nothing lost, no 5xx but a queue-full 503, p50/p99/throughput in the run's summary.

CI size: 2,000 requests at concurrency 64. `make soak` runs the same test with 20,000
(LOAD_REQUESTS); LOAD_MODEL=efficientnet_lite0 loads the image endpoint instead of the text one.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scripts.client.torchserve import REPO
from scripts.measure.bench.load_client import LoadResult, load_model
from tests.integration.figures import record
from tests.support.archives import queue_limited_model

pytestmark = pytest.mark.reliability

LOAD_REQUESTS = int(os.environ.get("LOAD_REQUESTS", "2000"))
LOAD_CONCURRENCY = int(os.environ.get("LOAD_CONCURRENCY", "64"))
LOAD_MODEL = os.environ.get("LOAD_MODEL", "minilm")
BODIES = {
    "minilm": (b'{"text": "A man is eating food."}', "application/json"),
    "efficientnet_lite0": ((REPO / "samples" / "cat.jpg").read_bytes(), "application/octet-stream"),
}
QUEUE_FULL = "has no worker to serve inference request"
"""TorchServe 0.12's own words for a full job queue (ApiUtils), misleading: it speaks of no worker,
not of a full queue. /predictions keeps them (the frontend answers before any handler runs); the
front's routes say it plainly (scripts/serving/overload.py, tests/integration/test_front_overload.py)."""
QUEUED_MODEL, QUEUE_SIZE = "queue_lite0", 2


def load(server, model: str, total: int, concurrency: int, payload: str | None = None) -> LoadResult:
    """`total` requests to `model`, with the body BODIES has for `payload` (default: the model's own)."""
    body, content_type = BODIES[payload or model]
    return load_model(server, model, body, content_type, total, concurrency)


def figures(result: LoadResult) -> dict:
    summary = result.summary()
    keep = ("requests", "concurrency", "lost", "statuses", "failures", "p50_ms", "p99_ms", "throughput_rps", "elapsed_s")
    return {key: summary[key] for key in keep}


def assert_only_queue_full_errors(result: LoadResult) -> None:
    assert result.lost == 0 and not result.failures, result.summary()
    assert set(result.statuses) <= {200, 503}, result.error_bodies
    for line in result.error_bodies:
        assert line.startswith("503") and QUEUE_FULL in line, line


def test_bounded_load_loses_nothing(settled):
    result = load(settled, LOAD_MODEL, LOAD_REQUESTS, LOAD_CONCURRENCY)
    record(f"load {LOAD_MODEL}", **figures(result))
    assert_only_queue_full_errors(result)
    assert result.statuses[200] >= LOAD_REQUESTS * 0.9, "the job queue (200) should absorb 64 clients"


@pytest.fixture(scope="module")
def queued_model(server, model_store: Path):
    """efficientnet_lite0 with jobQueueSize 2, one request per batch."""
    with queue_limited_model(server, model_store, "efficientnet_lite0", QUEUED_MODEL, QUEUE_SIZE) as name:
        yield name


def test_a_full_queue_answers_503_and_says_so(server, queued_model):
    result = load(server, queued_model, total=32, concurrency=32, payload="efficientnet_lite0")
    record("queue full (jobQueueSize 2)", **figures(result), message=next(iter(result.error_bodies), ""))
    assert_only_queue_full_errors(result)
    assert result.statuses[503] > 0, "32 concurrent requests did not fill a queue of 2"
    assert result.statuses[200] >= QUEUE_SIZE

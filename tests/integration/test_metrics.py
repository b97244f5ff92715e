"""The Prometheus endpoint (no token on the metrics port): TorchServe's counters and the handler's
histograms agree with the requests sent; bad requests grow counters, not series."""

from __future__ import annotations

import json
import os
import signal
import time

import requests

from tests.integration.conftest import encode

MODEL = "efficientnet_lite0"


def test_inference_counters_and_histograms_grow(server, coffee):
    before = server.metrics(MODEL)
    sent = 3
    for _ in range(sent):
        assert server.predict(MODEL, data=encode(coffee, "JPEG")).status_code == 200
    after = server.metrics(MODEL)
    grown = {name: after[name] - before.get(name, 0.0) for name in after}
    assert grown["ts_inference_requests_total"] == sent
    assert grown["HandlerItems"] == sent
    assert grown["HandlerRequestSeconds_count"] == sent  # one observation per request
    batches = grown["HandlerBatches"]
    assert 1 <= batches <= sent
    for stage in ("Preprocess", "Inference", "Postprocess"):
        assert grown[f"Handler{stage}Seconds_count"] == batches
        assert grown[f"Handler{stage}Seconds_sum"] > 0
    assert grown['HandlerBatchSize_bucket{le="+Inf"}'] == batches
    assert grown['HandlerBatchSize_bucket{le="64"}'] == batches
    # cumulative buckets never decrease with le; the +Inf bucket is the count
    bounds = sorted((float(name.split('"')[1]), value) for name, value in after.items()
                    if name.startswith("HandlerRequestSeconds_bucket"))
    assert [v for _, v in bounds] == sorted(v for _, v in bounds)
    assert bounds[-1][1] == after["HandlerRequestSeconds_count"]
    assert after["HandlerWorkerStarts"] >= 1 and after["HandlerWorkerHeartbeats"] >= 1


def test_a_flood_of_bad_requests_grows_counters_not_series(server):
    """Made-up error codes (a body shaped like a workflow's upstream error) are counted as
    Code="other"; the number of series is what it was after the first of them."""
    def flood(n: int, start: int) -> None:
        for i in range(start, start + n):
            body = json.dumps({"error": f"made_up_{i}", "detail": f"<payload {i}>"})
            assert server.predict(MODEL, data=body, headers={"Content-Type": "application/json"}).status_code >= 400
            assert server.predict(MODEL, data=f"not an image {i}".encode()).status_code >= 400

    def model_series() -> int:
        return sum(MODEL in (labels.get("ModelName"), labels.get("model_name")) for _, labels, _ in server.metric_samples())

    flood(1, 0)
    series_before, before = model_series(), server.metrics(MODEL)
    flood(10, 1)
    after = server.metrics(MODEL)
    assert model_series() == series_before
    assert after['HandlerItemErrors{Code="other"}'] - before['HandlerItemErrors{Code="other"}'] == 10
    assert all("made_up" not in str(labels) and "<payload" not in str(labels) for _, labels, _ in server.metric_samples())


def test_a_scrape_answers_while_a_worker_restarts(settled):
    """SIGKILL minilm's worker: every scrape until a new worker is READY answers 200, and the
    restart shows as one more HandlerWorkerStarts (what TorchServeWorkerRestarts alerts on)."""
    server, model = settled, "minilm"

    def workers() -> list[dict]:
        return server.manage("GET", f"/models/{model}").json()[0]["workers"]

    before = workers()
    old = before[0]  # one of the shipped workers
    starts = server.metrics(model)["HandlerWorkerStarts"]
    os.kill(old["pid"], signal.SIGKILL)
    scrapes_while_down, deadline = 0, time.monotonic() + 180

    def recovered() -> bool:
        ready = [w for w in workers() if w["status"] == "READY"]
        return len(ready) == len(before) and old["pid"] not in {w["pid"] for w in ready}

    while not recovered():
        assert time.monotonic() < deadline, f"no new READY worker: {workers()}"
        assert requests.get(f"{server.urls['metrics']}/metrics", timeout=10).status_code == 200
        scrapes_while_down += 1
        time.sleep(0.1)
    assert scrapes_while_down > 0
    deadline = time.monotonic() + 30
    while server.metrics(model)["HandlerWorkerStarts"] != starts + 1:
        assert time.monotonic() < deadline, "the restart was not counted"
        time.sleep(0.2)

"""An idle server keeps its console quiet (issue 21: 96 lines a minute, nearly all the frontend's
echo of each worker's heartbeat metric), also while health checks read the management API, while
the heartbeat still reaches :8082/metrics, its echo goes to model_metrics.log, and every request
still logs one access line."""

from __future__ import annotations

import math
import time

from scripts.client.torchserve import poll_until
from scripts.serving import readiness

IDLE_LINES_PER_MINUTE = 10
BEATS = 2
"""Heartbeats per worker the idle window must see (one every 5 s: handlers/metrics.py)."""


def console(server) -> list[str]:
    return (server.workdir / "serve.out").read_text(errors="replace").splitlines()


def heartbeats(server) -> dict[str, float]:
    """ModelName -> its HandlerWorkerHeartbeats (the workflow's function nodes send none)."""
    return {labels["ModelName"]: value for name, labels, value in server.metric_samples() if name == "HandlerWorkerHeartbeats"}


def workers(server, models) -> int:
    """Workers of those models still registered: earlier tests of the session unregister models
    whose heartbeat series stay on :8082/metrics."""
    described = [server.describe(model) for model in models]
    return sum(len(version["workers"]) for response in described if response.status_code == 200 for version in response.json())


def echoed_beats(server) -> int:
    """Heartbeat echoes in model_metrics.log: read from the file, so that watching the idle server
    adds no access line of its own."""
    log = server.workdir / "logs" / "model_metrics.log"
    return log.read_text(errors="replace").count("[METRICS]HandlerWorkerHeartbeats") if log.exists() else 0


def test_an_idle_server_prints_almost_nothing_and_its_heartbeats_still_count(settled):
    poll_until(lambda: any(line.startswith("ready: ") for line in console(settled)), 240, "the ready: line")
    beats_before = heartbeats(settled)
    beating = workers(settled, beats_before)
    probe = readiness.Server.from_config(settled.workdir / "config.properties", settled.key_file, ["photo_embedding"])

    def window_over() -> bool:
        assert readiness.missing(probe) == []  # a health check every second: its reads stay off the console
        return echoed_beats(settled) - echoes_before >= BEATS * beating

    lines_before, echoes_before, started = len(console(settled)), echoed_beats(settled), time.monotonic()
    poll_until(window_over, 60, f"{BEATS} heartbeats from each of {beating} workers in model_metrics.log", interval_s=1)
    minutes = (time.monotonic() - started) / 60
    printed = console(settled)[lines_before:]
    assert not [line for line in printed if "[METRICS]" in line], printed
    assert len(printed) <= math.ceil(IDLE_LINES_PER_MINUTE * minutes), printed
    grown = sum(heartbeats(settled).values()) - sum(beats_before.values())
    assert grown >= BEATS * beating  # and they still reach :8082/metrics (the dashboard's worker panel)


def test_each_request_still_logs_one_access_line(settled):
    def access_lines() -> int:
        return sum('"POST /predictions/minilm HTTP/1.1" 200' in line for line in console(settled))

    before = access_lines()
    for n in range(3):
        assert settled.predict("minilm", json={"text": f"sentence {n}"}).status_code == 200
    poll_until(lambda: access_lines() - before >= 3, 10, "three access lines")
    assert access_lines() - before == 3

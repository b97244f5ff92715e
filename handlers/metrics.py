"""The handler's metrics, exported by TorchServe at :8082/metrics (model_metrics_auto_detect).

Each metric is one `[METRICS]` line the worker logs and the frontend turns into a Prometheus
series, labelled ModelName, Level ("Model") and Hostname (docs/metrics.md):

  HandlerPreprocessSeconds, HandlerInferenceSeconds,     histograms, one observation per batch
  HandlerPostprocessSeconds
  HandlerRequestSeconds                                  histogram, one observation per request: the
                                                         time its batch spent in handle()
  HandlerBatchSize_bucket{le=...}                        counters, cumulative per `le`: a histogram
  HandlerBatches, HandlerItems                           counters: its _count and _sum
  HandlerItemErrors{Code=...}                            counter per error code (a fixed set)
  HandlerWorkerStarts                                    counter: workers that finished initialize()
  HandlerWorkerHeartbeats                                counter: +1 every HEARTBEAT_S per live worker

Why two kinds of histogram: TorchServe 0.12 does export its HISTOGRAM metric type to Prometheus
(checked on a real server), but with the Prometheus Java client's default buckets, which no
setting changes: 5 ms .. 10 s. Those fit latencies in seconds; they do not fit batch sizes 1..64
(the top finite bucket is 10), so the batch size is exported as one counter per bucket.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterable, Iterator

from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes

from handlers.errors import error_statuses

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""The `le` bounds TorchServe 0.12 gives every HISTOGRAM (not configurable); documented, not sent."""
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
STAGES = ("Preprocess", "Inference", "Postprocess")
HEARTBEAT_S = 5.0
OTHER_CODE = "other"
"""The Code label of an error code this bundle does not define (one a payload made up)."""


ERROR_CODES = frozenset(error_statuses()) | {OTHER_CODE}
"""The only values the Code label takes: the bundle's error codes, and OTHER_CODE."""


def error_label(code: str) -> str:
    """`code` if the bundle defines it, else OTHER_CODE: a workflow's upstream error carries a code
    read from a payload, and free text must never become a label value (one series each)."""
    return code if code in ERROR_CODES else OTHER_CODE


def batch_size_counts(size: int) -> list[tuple[str, int]]:
    """(le, increment) for every bucket, +Inf included: cumulative, and all of them each time, so
    every bucket's series exists from the first batch on (histogram_quantile needs them)."""
    return [(str(le), int(size <= le)) for le in BATCH_SIZE_BUCKETS] + [("+Inf", 1)]


def _labels(metrics, **extra: str) -> list[Dimension]:
    """`extra`, then ModelName and Level stated, not left to the cache: it labels a metric sent
    while it holds no request ids (Level="Error", no ModelName), and TorchServe rejects a metric
    whose label names change."""
    return [*(Dimension(name, value) for name, value in extra.items()),
            Dimension("ModelName", metrics.model_name), Dimension("Level", "Model")]


class StageTimer:
    """Collects wall-clock seconds per named stage of one batch."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = time.perf_counter() - start


def report_batch(metrics, stage_s: dict[str, float], batch_size: int, error_codes: Iterable[str]) -> None:
    """Send one batch's figures to TorchServe's metrics cache (a no-op without one).

    `stage_s` holds STAGES and "Request" (the whole handle() call), in seconds."""
    if metrics is None:
        return
    for stage in STAGES:
        metrics.add_metric(f"Handler{stage}Seconds", stage_s[stage], "s", None, _labels(metrics), MetricTypes.HISTOGRAM)
    for _ in range(batch_size):
        metrics.add_metric("HandlerRequestSeconds", stage_s["Request"], "s", None, _labels(metrics), MetricTypes.HISTOGRAM)
    for le, increment in batch_size_counts(batch_size):
        metrics.add_counter("HandlerBatchSize_bucket", increment, None, _labels(metrics, le=le))
    metrics.add_counter("HandlerBatches", 1, None, _labels(metrics))
    metrics.add_counter("HandlerItems", batch_size, None, _labels(metrics))
    for code, count in Counter(error_label(code) for code in error_codes).items():
        metrics.add_counter("HandlerItemErrors", count, None, _labels(metrics, Code=code))


def report_worker_start(metrics, period_s: float = HEARTBEAT_S) -> threading.Event | None:
    """Count a worker that is ready, and start its heartbeat: HandlerWorkerHeartbeats grows by one
    every `period_s` while the worker process lives, so `rate()` of it counts the live workers of
    a model (TorchServe 0.12 exports no worker state). Returns the Event that stops the heartbeat."""
    if metrics is None:
        return None
    metrics.add_counter("HandlerWorkerStarts", 1, None, _labels(metrics))
    stop = threading.Event()

    def beat() -> None:
        while True:
            metrics.add_counter("HandlerWorkerHeartbeats", 1, None, _labels(metrics))
            if stop.wait(period_s):
                return

    threading.Thread(target=beat, name="metrics-heartbeat", daemon=True).start()
    return stop

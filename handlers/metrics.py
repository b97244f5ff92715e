"""Per-batch handler metrics, exported by TorchServe at :8082/metrics (model_metrics_auto_detect).

  HandlerPreprocessMs / HandlerInferenceMs / HandlerPostprocessMs   gauges, last batch
  HandlerBatches, HandlerItems                                      counters: items/batches = mean batch size
  HandlerItemErrors{Code=...}                                       counter per error code
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from typing import Iterable, Iterator

from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes


class StageTimer:
    """Collects wall-clock milliseconds per named stage of one batch."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[stage] = round((time.perf_counter() - start) * 1000, 3)


def report_batch(metrics, stage_ms: dict[str, float], batch_size: int, error_codes: Iterable[str]) -> None:
    """Send one batch's figures to TorchServe's metrics cache (a no-op without one)."""
    if metrics is None:
        return
    for stage, ms in stage_ms.items():
        metrics.add_time(f"Handler{stage}Ms", ms, None, "ms", [], MetricTypes.GAUGE)
    metrics.add_counter("HandlerBatches", 1, None, [])
    metrics.add_counter("HandlerItems", batch_size, None, [])
    for code, count in Counter(error_codes).items():
        metrics.add_counter("HandlerItemErrors", count, None, [Dimension("Code", code)])

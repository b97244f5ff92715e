"""What one benchmark run measures: the models, the sweep's sizes (full or smoke), the shipped settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from handlers.device import thread_count
from scripts.measure.bench.report import HEADLINE_CONCURRENCY
from scripts.measure.bench.sweep import Sweep
from scripts.measure.in_process import model_config

REPO = Path(__file__).resolve().parents[3]
IMAGE, TEXT = "efficientnet_lite0", "minilm"
SPEED_KEYS = ("runtime", "graph_optimization", "ort_spinning", "precision", "channels_last", "compile", "jpeg_draft",
              "threads", "quantize")


@dataclass(frozen=True)
class Plan:
    concurrencies: tuple[int, ...]
    """The shipped image model as loaded, at each of these."""
    requests: int
    """Requests per measured cell for the Python client (at least 2 per client), after 2 per client that fill the pipeline."""
    image_sweep: Sweep
    text_sweep: Sweep
    variant_concurrencies: tuple[int, ...]
    """The torch path and the stock handler (same weights, batching and workers as shipped), at each of these."""
    text_concurrencies: tuple[int, ...]
    raw_seconds: float
    """Time spent timing each raw batch size."""
    int8_repeat: int
    int8_texts: int | None
    """How many of samples/sentences.txt the int8 measurement embeds (None: all)."""
    wrk_seconds: float = 5.0
    """How long wrk loads each cell of the shipped models (where wrk is installed; 0: always the Python client)."""
    sweep_wrk_seconds: float = 4.0
    """How long wrk loads each sweep point (after the pipeline is filled)."""


C = HEADLINE_CONCURRENCY
FULL = Plan((1, 4, C, 32), 400, Sweep((1, 4, 8), (1, 2)), Sweep((4, 8), (1, 2)), (1, C), (1, C), 3.0, 5, None,
            wrk_seconds=5.0, sweep_wrk_seconds=4.0)
SMOKE = Plan((2,), 8, Sweep((8,), (2,), layouts=((2, 1),), concurrencies=(2,)), Sweep((), ()), (2,), (2,), 0.2, 1, 8,
             wrk_seconds=1.0, sweep_wrk_seconds=1.0)


def shipped(name: str) -> dict:
    """The model's batching, workers and speed settings as its model-config.yaml ships them; `threads`
    as a worker resolves it (0: the cores / maxWorkers) and `threads_setting` as written."""
    config = model_config(name)
    handler = config["handler"]
    workers = int(config.get("maxWorkers") or config.get("minWorkers") or 1)
    return {"batch_size": config["batchSize"], "max_batch_delay": config["maxBatchDelay"], "workers": workers,
            **{key: value for key, value in handler.items() if key in SPEED_KEYS},
            "threads_setting": handler.get("threads", 0),
            "threads": thread_count(handler.get("threads", 0), len(os.sched_getaffinity(0)), workers)}

"""What one benchmark run measures: the models, the sweep's sizes (full or smoke), the shipped settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scripts.bench.report import HEADLINE_CONCURRENCY
from scripts.in_process import model_config

REPO = Path(__file__).resolve().parents[2]
IMAGE, TEXT = "efficientnet_lite0", "minilm"
SPEED_KEYS = ("runtime", "graph_optimization", "ort_spinning", "precision", "channels_last", "compile", "jpeg_draft",
              "threads", "quantize")


@dataclass(frozen=True)
class Plan:
    batch_sizes: tuple[int, ...]
    delays: tuple[int, ...]
    concurrencies: tuple[int, ...]
    requests: int
    """Requests per measured cell (at least 2 per client), after 2 per client that fill the pipeline."""
    stock_concurrencies: tuple[int, ...]
    text_concurrencies: tuple[int, ...]
    raw_seconds: float
    """Time spent timing each raw batch size."""
    int8_repeat: int
    int8_texts: int | None
    """How many of samples/sentences.txt the int8 measurement embeds (None: all)."""
    wrk_seconds: float = 5.0
    """How long wrk loads each cell (where wrk is installed; 0: always the Python client)."""


FULL = Plan((1, 4, 8, 16), (2, 10), (1, 4, 16, 32), 400, (1, HEADLINE_CONCURRENCY), (1, HEADLINE_CONCURRENCY), 3.0, 5, None)
SMOKE = Plan((8,), (), (2,), 8, (2,), (2,), 0.2, 1, 8, wrk_seconds=1.0)


def shipped(name: str) -> dict:
    """The model's batching and speed settings as its model-config.yaml ships them."""
    config = model_config(name)
    return {"batch_size": config["batchSize"], "max_batch_delay": config["maxBatchDelay"],
            **{key: value for key, value in config["handler"].items() if key in SPEED_KEYS}}

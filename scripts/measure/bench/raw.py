"""Raw, in-process timing: the bundle's handler with no server in between (the limit served load aims at)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from scripts.measure.bench.plan import IMAGE, TEXT, Plan, shipped
from scripts.measure.in_process import load_handler, model_config


def median_seconds(run: Callable[[], object], min_calls: int = 5, min_s: float = 0.0, warmup: int = 2) -> float:
    """Median duration of one call, after `warmup` calls (allocation, kernel choice), over at least
    `min_calls` calls and `min_s` seconds."""
    for _ in range(warmup):
        run()
    times: list[float] = []
    deadline = time.perf_counter() + min_s
    while len(times) < min_calls or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_rows(handler, request: dict, batch_sizes: Sequence[int], seconds: float, decode: bool = False) -> list[dict]:
    """The handler in-process on `request` repeated: the model alone (decoded once), or decoding each time."""
    rows = []
    for batch in tqdm(sorted(set(batch_sizes)), desc=f"{handler.metadata['name']}, raw{' + decode' if decode else ''}"):
        item = handler.decode_request(request)

        def run(item=item, batch=batch) -> object:  # bound now: ruff B023
            return handler.predict([handler.decode_request(request) if decode else item for _ in range(batch)])

        seconds_per_batch = median_seconds(run, min_s=seconds)
        rows.append({"batch_size": batch, "throughput": round(batch / seconds_per_batch, 1),
                     "latency_ms": round(seconds_per_batch * 1000, 2)})
    return rows


def one_process(name: str) -> dict:
    """The shipped config as one process with every core (threads 0 with one worker): the machine's limit."""
    return {**model_config(name), "minWorkers": 1, "maxWorkers": 1}


def measure_raw(plan: Plan, weights_dir: Path, image_body: bytes, text_body: bytes) -> dict:
    """The raw models (decoded once) and the handlers decoding every item, at batch 1, the shipped
    batch and the sweep's batch sizes."""
    image_batches = sorted({1, shipped(IMAGE)["batch_size"], *plan.image_sweep.batch_sizes})
    text_batches = sorted({1, shipped(TEXT)["batch_size"], *plan.text_sweep.batch_sizes})
    image = load_handler(IMAGE, weights_dir / IMAGE, one_process(IMAGE))
    text = load_handler(TEXT, weights_dir / TEXT, one_process(TEXT))
    image_request, text_request = {"body": bytearray(image_body)}, {"body": json.loads(text_body)}
    return {
        "image_raw": raw_rows(image, image_request, image_batches, plan.raw_seconds),
        "image_raw_handler": raw_rows(image, image_request, image_batches, plan.raw_seconds, decode=True),
        "text_raw": raw_rows(text, text_request, text_batches, plan.raw_seconds),
        "text_raw_handler": raw_rows(text, text_request, text_batches, plan.raw_seconds, decode=True),
    }

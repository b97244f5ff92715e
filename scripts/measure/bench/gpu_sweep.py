"""`bench-gpu --sweep`: which GPU configuration of efficientnet_lite0 serves the most images at c128
within the p99 target. Pure parts: the candidates, their configs, the choice, the time plan.

Issue #20 asks for batchSize, maxBatchDelay, workers per GPU and threads per GPU worker chosen by
measurement. Each candidate is the shipped GPU variant (models/configs/efficientnet_lite0.yaml `gpu:`)
with a few settings changed, served alone on a fresh TorchServe (every bucket warmed at load) and
loaded at c128: `settle_s` unrecorded, then `cell_s` measured. On a GPU host with one upload and a
few minutes (scripts/measure/gpu_kit.py), the sweep stops starting candidates when the next one would
not finish in the time left, and says which it skipped.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# The shipped one first: each other changes one thing (or two that go together) against it. In the order
# they run, so a short budget measures the most telling ones: CUDA graphs (issue #20: batch 1 is
# launch-bound), more workers per GPU without and with MPS (whose kernels then run side by side), bigger batches.
GPU_CANDIDATES: tuple[dict[str, Any], ...] = (
    {},
    {"handler": {"compile": "cudagraphs"}},
    {"workers_per_gpu": 4},
    {"workers_per_gpu": 4, "mps": True},
    {"batchSize": 128},
    {"workers_per_gpu": 1},
    {"batchSize": 32, "maxBatchDelay": 2},
    {"handler": {"decode_threads": 8}},
    {"workers_per_gpu": 3},
)
# The CPU: one worker, small batches. CUDA graphs are refused on a CPU worker, so the dry run also checks
# that a candidate whose workers never get READY is reported as failed and the next one still runs.
DRY_CANDIDATES: tuple[dict[str, Any], ...] = ({}, {"handler": {"compile": "cudagraphs"}}, {"batchSize": 4})
# start_s: a candidate whose workers are not all READY by then failed (the shipped config loads in seconds):
# a worker that fails at load is restarted for ever, and waiting the usual 240 s would spend half the kit's budget.
SWEEP_PLAN = {"concurrency": 128, "settle_s": 3.0, "cell_s": 8.0, "start_s": 120.0}
DRY_SWEEP_PLAN = {"concurrency": 4, "settle_s": 0.3, "cell_s": 1.0, "start_s": 30.0}
P99_BOUND_MS = 100  # issue #20's c128 target, which the choice must keep
RUN_SETTINGS = ("handler", "workers_per_gpu", "mps")
"""A candidate's keys that are not TorchServe's model-config keys."""


def label(changes: Mapping[str, Any]) -> str:
    """'shipped', or the changed settings: 'workers_per_gpu=4 mps=True', 'batchSize=32 maxBatchDelay=2', 'compile=cudagraphs'."""
    flat = {**{key: value for key, value in changes.items() if key != "handler"}, **changes.get("handler", {})}
    return " ".join(f"{key}={value}" for key, value in flat.items()) or "shipped"


def candidate_config(base: Mapping[str, Any], changes: Mapping[str, Any], workers_per_gpu: int, gpus: int) -> dict:
    """`base` (the served variant, with `workers_per_gpu` workers on each GPU) with the changes applied:
    top-level keys replaced, handler keys merged, the worker count scaled by the GPUs."""
    config = {**base, **{key: value for key, value in changes.items() if key not in RUN_SETTINGS},
              "handler": {**base["handler"], **changes.get("handler", {})}}
    if "workers_per_gpu" in changes:
        workers = max(1, gpus) * int(changes["workers_per_gpu"])
        config.update(minWorkers=workers, maxWorkers=workers)
    return config


def uses_mps(changes: Mapping[str, Any]) -> bool:
    """Whether the candidate's server runs under NVIDIA MPS (scripts/measure/bench/mps.py)."""
    return bool(changes.get("mps"))


def summary(config: Mapping[str, Any]) -> dict:
    """What the report shows of a candidate's config."""
    handler = config["handler"]
    return {"batchSize": config["batchSize"], "maxBatchDelay": config["maxBatchDelay"], "workers": config["maxWorkers"],
            "threads": handler.get("threads"), "decode_threads": handler.get("decode_threads")}


def best(rows: Sequence[dict], p99_bound_ms: float = P99_BOUND_MS) -> str | None:
    """The label of the row with the most throughput among those measured with no failed request and
    p99 within the bound; None if none qualifies."""
    fit = [row for row in rows if row.get("p99_ms") is not None and row["not_ok"] == 0 and row["p99_ms"] <= p99_bound_ms]
    return max(fit, key=lambda row: row["throughput_rps"])["label"] if fit else None


def fits(seconds_left: float, durations_s: Sequence[float], first_guess_s: float = 60.0) -> bool:
    """Whether one more candidate is likely to finish in the time left: the slowest one so far (or the
    first guess, before any ran) must fit."""
    return seconds_left >= max(durations_s, default=first_guess_s)

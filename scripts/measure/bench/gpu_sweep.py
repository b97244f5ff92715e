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

from scripts.measure.bench.gpu_report import C1_MARGIN_MS, P99_BOUND_MS

# The shipped one first: each other changes one thing (or two that go together) against it. In the order
# they run, so a short budget measures the most telling ones: CUDA graphs (issue #20: batch 1 is
# launch-bound), a shorter maxBatchDelay (a lone request waits all of it: c1 p50 >= delay + the frontend's
# ~1 ms, docs/gpu.md), more workers per GPU without and with MPS (whose kernels then run side by side),
# bigger batches.
GPU_CANDIDATES: tuple[dict[str, Any], ...] = (
    {},
    {"handler": {"compile": "cudagraphs"}},
    {"maxBatchDelay": 2},
    {"workers_per_gpu": 4},
    {"workers_per_gpu": 4, "mps": True},
    {"batchSize": 128},
    {"workers_per_gpu": 1},
    {"batchSize": 32, "maxBatchDelay": 2},
    {"handler": {"decode_threads": 8}},
)
# The CPU: one worker, small batches. CUDA graphs are refused on a CPU worker, so the dry run also checks
# that a candidate whose workers never get READY is reported as failed and the next one still runs.
DRY_CANDIDATES: tuple[dict[str, Any], ...] = ({}, {"handler": {"compile": "cudagraphs"}}, {"batchSize": 4})
# start_s: a candidate whose workers are not all READY by then failed (the shipped config loads in seconds):
# a worker that fails at load is restarted for ever, and waiting the usual 240 s would spend half the kit's budget.
# c1_s: then one client alone, all of it measured (the server is warm from the cell before).
SWEEP_PLAN = {"concurrency": 128, "settle_s": 3.0, "cell_s": 8.0, "c1_s": 3.0, "start_s": 120.0}
DRY_SWEEP_PLAN = {"concurrency": 4, "settle_s": 0.3, "cell_s": 1.0, "c1_s": 0.5, "start_s": 30.0}
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


def c1_bound_ms(batch_one_ms: float | None) -> float | None:
    """Issue #20's c1 target for a candidate: the handler's batch of one in process, plus the margin."""
    return None if batch_one_ms is None else round(batch_one_ms + C1_MARGIN_MS, 2)


def best(rows: Sequence[dict], p99_bound_ms: float = P99_BOUND_MS, c1_bound: float | None = None) -> str | None:
    """The label of the row with the most throughput among those measured with no failed request,
    p99 within the bound and (given a c1 bound) c1 p50 within it; None if none qualifies."""
    def keeps_c1(row: dict) -> bool:
        return c1_bound is None or (row.get("c1_p50_ms") is not None and row["c1_p50_ms"] <= c1_bound)
    fit = [row for row in rows if row.get("p99_ms") is not None and row["not_ok"] == 0 and row["p99_ms"] <= p99_bound_ms
           and keeps_c1(row)]
    return max(fit, key=lambda row: row["throughput_rps"])["label"] if fit else None


def fits(seconds_left: float, durations_s: Sequence[float], first_guess_s: float = 60.0) -> bool:
    """Whether one more candidate is likely to finish in the time left: the slowest one so far (or the
    first guess, before any ran) must fit."""
    return seconds_left >= max(durations_s, default=first_guess_s)

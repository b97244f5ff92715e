"""`make bench-gpu`: the GPU image's configuration served on this host's GPU, in one run.

    ts-bundle-bench-gpu                  # needs CUDA; without it, says so and exits 0
    ts-bundle-bench-gpu --cpu-dry-run    # the same steps on the CPU, seconds each: checks the
                                         # pipeline before GPU time is spent; measures no GPU

One server (scripts/measure/bench/gpu_server.py, free ports) holds TorchServe's floor (a do-nothing handler,
batch 32) and each model as the GPU image serves it: its archive with the GPU variant of its
model-config.yaml (scripts/build/gpu_config.py), SERVE_WORKERS_PER_GPU workers per GPU. Measured:
- the first 10 s of load after every worker is READY, apart from the next 10 s (stalls on new
  batch shapes show there);
- each model at c1, c64 and c128: throughput, p50/p99, GPU utilisation and memory (nvidia-smi,
  sampled through the cell);
- the floor at c128, with a 1-byte body and with the photo as the body (what the frontend alone
  costs to carry a photo), and each model's handler in process at batch 1 and its batchSize, decoding
  included (the ceiling);
- which of TorchServe's GPU series :8082/metrics shows at the end (collected once a minute);
- with --sweep, efficientnet_lite0 at c128 and then c1 in each candidate GPU configuration, a fresh
  server each (scripts/measure/bench/gpu_sweep.py), and which serves the most within the p99 and c1
  targets.
The load comes from this host (scripts/measure/bench/http_load.py: aiohttp clients in a quarter of the cores'
processes; each row names it and its CPU share): wrk is rarely on a GPU host.
Writes <out>/results.json, report.md and throughput.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import torch

from scripts.client.torchserve import TorchServe
from scripts.measure.bench.gpu_report import P99_BOUND_MS, batch_one_ms, render_markdown, summarise_window, write_plot
from scripts.measure.bench.gpu_sampler import GpuSampler
from scripts.measure.bench.gpu_server import (
    CONTENT_TYPES,
    FLOOR,
    SERVER_DIR,
    WORKERS_PER_GPU,
    archive_weights,
    keep_logs,
    served_configs,
    start_server,
)
from scripts.measure.bench.gpu_sweep import (
    DRY_CANDIDATES,
    DRY_SWEEP_PLAN,
    GPU_CANDIDATES,
    SWEEP_PLAN,
    best,
    c1_bound_ms,
    candidate_config,
    fits,
    label,
    summary,
    uses_mps,
)
from scripts.measure.bench.http_load import LoadProcesses, default_processes
from scripts.measure.bench.machine import machine_info
from scripts.measure.bench.mps import mps_daemon
from scripts.measure.bench.plan import IMAGE, REPO, TEXT
from scripts.measure.bench.raw import raw_rows
from scripts.measure.in_process import load_handler

TEXT_BODY = json.dumps({"text": "The match went to extra time before the home side scored the winning goal."}).encode()
FULL = {"concurrencies": (1, 64, 128), "cell_s": 10.0, "window_s": 10.0, "raw_s": 3.0}
DRY = {"concurrencies": (1, 4), "cell_s": 1.5, "window_s": 1.5, "raw_s": 0.3}
GPU_SERIES = ("GPUUtilization", "GPUMemoryUsed", "GPUMemoryUtilization")  # TorchServe's, with nvgpu (docs/metrics.md)


def served_rows(server: TorchServe, load: LoadProcesses, model: str, body: bytes, content_type: str, plan: dict) -> dict:
    """The first 10 s of load apart from the next 10 s (c128, or the plan's largest), then one cell per concurrency."""
    url, headers = server.prediction_url(model), {**server.auth("inference"), "Content-Type": content_type}
    top = max(plan["concurrencies"])
    with GpuSampler() as sampler:
        records = load.run(url, body, headers, top, 2 * plan["window_s"]).records
    windows = {"first": summarise_window(records, 0, plan["window_s"], top),
               "next": summarise_window(records, plan["window_s"], 2 * plan["window_s"], top), **sampler.summary()}
    cells = []
    for concurrency in plan["concurrencies"]:
        with GpuSampler() as sampler:
            cell = load.run(url, body, headers, concurrency, plan["cell_s"])
        cells.append({**summarise_window(cell.records, 0, plan["cell_s"], concurrency), **sampler.summary(),
                      **cell.client_fields(plan["cell_s"])})
    return {"after_ready": windows, "cells": cells}


def in_process_rows(model: str, weights_dir: Path, config: dict, gpu_id: int | None, body: bytes, seconds: float) -> list[dict]:
    handler = load_handler(model, weights_dir / model, config, gpu_id=gpu_id)
    request = {"body": bytearray(body)} if model == IMAGE else {"body": json.loads(body)}
    return raw_rows(handler, request, [1, int(config["batchSize"])], seconds, decode=True)


def serve_and_load(workdir: Path, args, plan: dict, gpus: int, bodies: dict[str, bytes], load: LoadProcesses,
                   results: dict) -> dict:
    """Every served row into `results`: each model's windows and cells, then the floor and the GPU series.
    Returns the configs served."""
    configs = served_configs(args.model_store, gpus, args.cpu_dry_run, args.models)
    server = start_server(workdir, args.model_store, configs)
    try:
        for model in args.models:
            results["models"][model] = {"config": configs[model], "weights": archive_weights(args.model_store / f"{model}.mar"),
                                        **served_rows(server, load, model, bodies[model], CONTENT_TYPES[model], plan)}
        top = max(plan["concurrencies"])
        for key, body in (("floor", bodies[FLOOR]), ("floor_photo", bodies[IMAGE])):
            floor = load.run(server.prediction_url(FLOOR), body, server.auth("inference"), top, plan["cell_s"])
            results[key] = {**summarise_window(floor.records, 0, plan["cell_s"], top), **floor.client_fields(plan["cell_s"]),
                            "body_bytes": len(body)}
        results["gpu_series"] = sorted({name for name, _, _ in server.metric_samples() if name in GPU_SERIES})
    finally:
        server.stop()
    return configs


def sweep_rows(workdir: Path, args, gpus: int, body: bytes, load: LoadProcesses, deadline: float, save,
               batch_one: float | None = None) -> dict:
    """efficientnet_lite0 at c128, then c1, in each candidate configuration (scripts/measure/bench/gpu_sweep.py),
    a fresh server each, until the next would not finish before `deadline` (time.monotonic). A candidate
    that fails (a worker not READY within the plan's `start_s`, no MPS) is reported and the next one runs.
    The choice keeps c1 within the issue's bound when `batch_one` (the handler's batch of one in process, ms)
    is known. `save` is called with the sweep after each candidate: a run cut short keeps what it measured."""
    base = served_configs(args.model_store, gpus, args.cpu_dry_run, [IMAGE])[IMAGE]
    plan = DRY_SWEEP_PLAN if args.cpu_dry_run else SWEEP_PLAN
    sweep: dict[str, Any] = {"model": IMAGE, "plan": plan, "p99_bound_ms": P99_BOUND_MS, "c1_bound_ms": c1_bound_ms(batch_one),
                             "rows": [], "failed": [], "skipped": [], "best": None}
    durations: list[float] = []
    for number, changes in enumerate(DRY_CANDIDATES if args.cpu_dry_run else GPU_CANDIDATES):
        if not fits(deadline - time.monotonic(), durations):
            sweep["skipped"].append(label(changes))
            continue
        started = time.monotonic()
        config = candidate_config(base, changes, WORKERS_PER_GPU, gpus)
        try:
            sweep["rows"].append(measure_candidate(workdir / f"sweep-{number}", args.model_store, changes, config, body,
                                                   load, plan, min(plan["start_s"], deadline - started)))
        except Exception as failed:  # noqa: BLE001 - the candidate's failure is its result; the others still run
            sweep["failed"].append({"label": label(changes), "error": f"{type(failed).__name__}: {failed}"})
        durations.append(time.monotonic() - started)
        sweep["best"] = best(sweep["rows"], c1_bound=sweep["c1_bound_ms"])
        save(sweep)
    return sweep


def measure_candidate(workdir: Path, model_store: Path, changes: Mapping[str, Any], config: dict, body: bytes,
                      load: LoadProcesses, plan: dict, start_timeout_s: float) -> dict:
    """One candidate's row: a fresh server (under MPS if the candidate asks for it) loaded at the plan's
    concurrency, `settle_s` unrecorded, then `cell_s` measured; then one client alone for `c1_s`."""
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(mps_daemon(workdir / "mps", workdir / SERVER_DIR / "mps-log")) if uses_mps(changes) else None
        server = start_server(workdir, model_store, {IMAGE: config}, floor=False, env=env, timeout_s=start_timeout_s)
        stack.callback(server.stop)
        url, headers = server.prediction_url(IMAGE), {**server.auth("inference"), "Content-Type": CONTENT_TYPES[IMAGE]}
        seconds = plan["settle_s"] + plan["cell_s"]
        with GpuSampler() as sampler:
            cell = load.run(url, body, headers, plan["concurrency"], seconds)
        alone = summarise_window(load.run(url, body, headers, 1, plan["c1_s"]).records, 0, plan["c1_s"], 1)
    return {"label": label(changes), **summary(config), **summarise_window(cell.records, plan["settle_s"], seconds, plan["concurrency"]),
            **sampler.summary(), **cell.client_fields(seconds), "c1_p50_ms": alone["p50_ms"]}


def run(args, save) -> dict:
    """The served rows, then the in-process rows, then (--sweep) the configurations; `save` writes the
    outputs after each part."""
    started = time.monotonic()
    plan = DRY if args.cpu_dry_run else FULL
    gpus = torch.cuda.device_count()
    bodies = {IMAGE: (REPO / "samples" / "cat.jpg").read_bytes(), TEXT: TEXT_BODY, FLOOR: b"x"}
    results: dict[str, Any] = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "mode": "cpu-dry-run" if args.cpu_dry_run else "gpu", "machine": machine_info(),
                               "gpus": gpus, "workers_per_gpu": WORKERS_PER_GPU, "load_processes": args.load_processes,
                               "plan": plan, "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as workdir, LoadProcesses(args.load_processes) as load:
        try:
            configs = serve_and_load(Path(workdir), args, plan, gpus, bodies, load, results)
            for model in args.models:
                gpu_id = None if args.cpu_dry_run else 0
                results["models"][model]["in_process"] = in_process_rows(model, args.weights_dir, configs[model], gpu_id,
                                                                         bodies[model], plan["raw_s"])
            save(results)
            if args.sweep:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()  # the in-process handlers' memory goes back to the GPU before the servers
                deadline = started + (args.budget_s or float("inf"))
                sweep_rows(Path(workdir), args, gpus, bodies[IMAGE], load, deadline,
                           lambda sweep: save({**results, "sweep": sweep}), batch_one_ms(results["models"].get(IMAGE)))
        finally:
            if args.logs:
                keep_logs(Path(workdir), args.logs)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-store", type=Path, default=Path("model-store"), help="where make archive put the .mar files")
    parser.add_argument("--weights-dir", type=Path, default=Path("build/weights"), help="the exports (make weights)")
    parser.add_argument("--out", type=Path, default=Path("build/bench-gpu"))
    parser.add_argument("--models", nargs="+", default=[IMAGE, TEXT])
    parser.add_argument("--cpu-dry-run", action="store_true", help="run every step on the CPU, briefly (no GPU figures)")
    parser.add_argument("--logs", type=Path, help="copy the server's logs (serve.out, logs/) here at the end")
    parser.add_argument("--sweep", action="store_true",
                        help="then serve efficientnet_lite0 in each candidate GPU configuration at c128 (scripts/measure/bench/gpu_sweep.py)")
    parser.add_argument("--budget-s", type=float, help="start no sweep candidate that would end later than this after the start")
    parser.add_argument("--load-processes", type=int, default=default_processes(),
                        help="processes of the load client (default: a quarter of the cores)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print("bench-gpu: no CUDA device here (torch.cuda.is_available() is False): nothing measured. "
              "Run it on a GPU host (docs/gpu.md), or --cpu-dry-run to check the steps.")
        return 0
    run(args, lambda results: write_outputs(results, args.out))
    print((args.out / "report.md").read_text())
    return 0


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(results))
    try:
        write_plot(results, out / "throughput.png")
    except ModuleNotFoundError as missing:  # a GPU host without matplotlib: the report and results still stand
        print(f"bench-gpu: no throughput.png: {missing}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

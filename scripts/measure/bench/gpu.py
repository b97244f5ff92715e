"""`make bench-gpu`: the GPU image's configuration served on this host's GPU, in one run.

    ts-bundle-bench-gpu                  # needs CUDA; without it, says so and exits 0
    ts-bundle-bench-gpu --cpu-dry-run    # the same steps on the CPU, seconds each: checks the
                                         # pipeline before GPU time is spent; measures no GPU

One server (scripts/client/torchserve.py, free ports) holds TorchServe's floor (a do-nothing handler,
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
- with --sweep, efficientnet_lite0 at c128 in each candidate GPU configuration, a fresh server each
  (scripts/measure/bench/gpu_sweep.py), and which serves the most within the p99 target.
The load comes from this host (scripts/measure/bench/http_load.py: aiohttp clients in a quarter of the cores'
processes; each row names it and its CPU share): wrk is rarely on a GPU host.
Writes <out>/results.json, report.md and throughput.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from scripts.build.gpu_config import gpu_variant  # the rewrite the GPU image applies
from scripts.client.torchserve import START_TIMEOUT_S, TorchServe, poll_until
from scripts.measure.bench.gpu_report import render_markdown, summarise_window, write_plot
from scripts.measure.bench.gpu_sweep import (
    DRY_CANDIDATES,
    DRY_SWEEP_PLAN,
    GPU_CANDIDATES,
    P99_BOUND_MS,
    SWEEP_PLAN,
    best,
    candidate_config,
    fits,
    label,
    summary,
    uses_mps,
)
from scripts.measure.bench.http_load import Cell, LoadProcesses, default_processes
from scripts.measure.bench.machine import machine_info
from scripts.measure.bench.mps import mps_daemon
from scripts.measure.bench.plan import IMAGE, REPO, TEXT
from scripts.measure.bench.raw import raw_rows
from scripts.measure.bench.variants import archive_config, write_variant
from scripts.measure.in_process import load_handler

FLOOR = "floor"
FLOOR_HANDLER = '''
def handle(data, context):
    """TorchServe's own cost: every request answered at once, nothing computed (None: the load call)."""
    return None if data is None else ["{}"] * len(data)
'''
CONTENT_TYPES = {IMAGE: "application/octet-stream", TEXT: "application/json", FLOOR: "application/octet-stream"}
TEXT_BODY = json.dumps({"text": "The match went to extra time before the home side scored the winning goal."}).encode()
FULL = {"concurrencies": (1, 64, 128), "cell_s": 10.0, "window_s": 10.0, "raw_s": 3.0}
DRY = {"concurrencies": (1, 4), "cell_s": 1.5, "window_s": 1.5, "raw_s": 0.3}
SERVER_DIR = "server"  # the server's working folder inside the bench's temp folder: serve.out, logs/
WORKERS_PER_GPU = 2  # the image's SERVE_WORKERS_PER_GPU
GPU_SERIES = ("GPUUtilization", "GPUMemoryUsed", "GPUMemoryUtilization")  # TorchServe's, with nvgpu (docs/metrics.md)


def bench_config(config: dict, gpus: int, dry_run: bool) -> dict:
    """The GPU variant with the image's workers per GPU; a dry run keeps it runnable on a CPU
    (fp32, batch 8) with the GPU path's decoding and padding."""
    variant = {**gpu_variant(config), "minWorkers": max(1, gpus) * WORKERS_PER_GPU, "maxWorkers": max(1, gpus) * WORKERS_PER_GPU}
    if dry_run:
        variant.update(deviceType="cpu", batchSize=min(8, variant["batchSize"]), minWorkers=1, maxWorkers=1)
        variant["handler"] = {**variant["handler"], "precision": "fp32", "threads": 1, "decode_threads": 1}
        if "jpeg_decoder" in variant["handler"]:
            variant["handler"]["jpeg_decoder"] = "torchvision"
    return variant


def write_floor(store: Path) -> None:
    """A no-archive model folder (MAR-INF/MANIFEST.json beside the files) with the do-nothing handler."""
    folder = store / FLOOR
    (folder / "MAR-INF").mkdir(parents=True)
    (folder / "floor_handler.py").write_text(FLOOR_HANDLER)
    (folder / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 32\nmaxBatchDelay: 5\n")
    manifest = {"runtime": "python", "archiverVersion": "0.12.0",
                "model": {"modelName": FLOOR, "handler": "floor_handler.py", "modelVersion": "1.0", "configFile": "model-config.yaml"}}
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))


class GpuSampler:
    """nvidia-smi every `interval_s` while the block runs: mean utilisation, peak memory per GPU."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.samples, self._stop = interval_s, [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> "GpuSampler":
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.wait(self.interval_s):
            lines = subprocess.run(query, capture_output=True, text=True, check=False).stdout.splitlines()
            self.samples.append([tuple(float(v) for v in line.split(",")) for line in lines if line.strip()])

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_pct": None, "gpu_mem_mb": None}
        return {"gpu_util_pct": round(sum(s[0][0] for s in self.samples) / len(self.samples), 1),
                "gpu_mem_mb": max(s[0][1] for s in self.samples)}


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
                      **client_fields(cell, plan["cell_s"])})
    return {"after_ready": windows, "cells": cells}


def client_fields(cell: Cell, seconds: float) -> dict:
    """Which client loaded the cell and how much of the host it took (it shares the host with the server)."""
    return {"client": f"aiohttp x{cell.processes}", "client_cpu_share": cell.cpu_share(seconds)}


def in_process_rows(model: str, weights_dir: Path, config: dict, gpu_id: int | None, body: bytes, seconds: float) -> list[dict]:
    handler = load_handler(model, weights_dir / model, config, gpu_id=gpu_id)
    request = {"body": bytearray(body)} if model == IMAGE else {"body": json.loads(body)}
    return raw_rows(handler, request, [1, int(config["batchSize"])], seconds, decode=True)


def served_configs(model_store: Path, gpus: int, dry_run: bool, models: Sequence[str]) -> dict[str, dict]:
    return {model: bench_config(archive_config(model_store / f"{model}.mar"), gpus, dry_run) for model in models}


def start_server(workdir: Path, model_store: Path, configs: Mapping[str, dict], floor: bool = True,
                 env: Mapping[str, str] | None = None, timeout_s: float = START_TIMEOUT_S) -> TorchServe:
    """One TorchServe in `workdir` serving each model's archive with `configs[model]` (and the floor), once
    every worker is READY (TimeoutError after `timeout_s`, the server stopped); `env` goes to the server."""
    store = workdir / "model-store"
    store.mkdir(parents=True)
    for model, config in configs.items():
        write_variant(model_store / f"{model}.mar", store / f"{model}.mar", config)
    names = [*([FLOOR] if floor else []), *configs]
    if floor:
        write_floor(store)
    started = time.monotonic()
    server = TorchServe.start(workdir / SERVER_DIR, store, ",".join(f"{m}={m}" if m == FLOOR else f"{m}={m}.mar" for m in names),
                              env=env, timeout_s=timeout_s)
    try:
        poll_until(lambda: all(_ready(server, m) for m in names), max(1.0, timeout_s - (time.monotonic() - started)),
                   f"every worker READY; see {server.workdir / 'serve.out'}", interval_s=0.2)
    except BaseException:
        server.stop()  # not left running (and its workers restarting) after a failed start
        raise
    return server


def archive_weights(archive: Path) -> str:
    """Where the archive's weights came from (its metadata.json): the kit for offline GPU hosts may serve
    random values of the real shapes (scripts/measure/gpu_kit.py), and the report must say so."""
    with zipfile.ZipFile(archive) as mar:
        return json.loads(mar.read("metadata.json")).get("source", "not recorded")


def _ready(server: TorchServe, model: str) -> bool:
    workers = server.describe(model).json()[0]["workers"]
    return bool(workers) and all(w["status"] == "READY" for w in workers)


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
            results[key] = {**summarise_window(floor.records, 0, plan["cell_s"], top), **client_fields(floor, plan["cell_s"]),
                            "body_bytes": len(body)}
        results["gpu_series"] = sorted({name for name, _, _ in server.metric_samples() if name in GPU_SERIES})
    finally:
        server.stop()
    return configs


def sweep_rows(workdir: Path, args, gpus: int, body: bytes, load: LoadProcesses, deadline: float, save) -> dict:
    """efficientnet_lite0 at c128 in each candidate configuration (scripts/measure/bench/gpu_sweep.py), a
    fresh server each, until the next would not finish before `deadline` (time.monotonic). A candidate
    that fails (a worker not READY within the plan's `start_s`, no MPS) is reported and the next one runs.
    `save` is called with the sweep after each candidate: a run cut short keeps what it measured."""
    base = served_configs(args.model_store, gpus, args.cpu_dry_run, [IMAGE])[IMAGE]
    plan = DRY_SWEEP_PLAN if args.cpu_dry_run else SWEEP_PLAN
    sweep: dict[str, Any] = {"model": IMAGE, "plan": plan, "p99_bound_ms": P99_BOUND_MS, "rows": [], "failed": [],
                             "skipped": [], "best": None}
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
        sweep["best"] = best(sweep["rows"])
        save(sweep)
    return sweep


def measure_candidate(workdir: Path, model_store: Path, changes: Mapping[str, Any], config: dict, body: bytes,
                      load: LoadProcesses, plan: dict, start_timeout_s: float) -> dict:
    """One candidate's row: a fresh server (under MPS if the candidate asks for it) loaded at the plan's
    concurrency, `settle_s` unrecorded, then `cell_s` measured."""
    with contextlib.ExitStack() as stack:
        env = stack.enter_context(mps_daemon(workdir / "mps", workdir / SERVER_DIR / "mps-log")) if uses_mps(changes) else None
        server = start_server(workdir, model_store, {IMAGE: config}, floor=False, env=env, timeout_s=start_timeout_s)
        stack.callback(server.stop)
        url, headers = server.prediction_url(IMAGE), {**server.auth("inference"), "Content-Type": CONTENT_TYPES[IMAGE]}
        seconds = plan["settle_s"] + plan["cell_s"]
        with GpuSampler() as sampler:
            cell = load.run(url, body, headers, plan["concurrency"], seconds)
    return {"label": label(changes), **summary(config), **summarise_window(cell.records, plan["settle_s"], seconds, plan["concurrency"]),
            **sampler.summary(), **client_fields(cell, seconds)}


def keep_logs(workdir: Path, logs: Path) -> None:
    """The servers' folders go with the temp folder: keep their logs (serve.out, logs/), above all of a
    failed start; the main server's at the top, each sweep candidate's under sweep-N/."""
    ignore = shutil.ignore_patterns("key_file.json", "run")
    if (workdir / SERVER_DIR).exists():
        shutil.copytree(workdir / SERVER_DIR, logs, dirs_exist_ok=True, ignore=ignore)
    for folder in sorted(workdir.glob("sweep-*")):
        if (folder / SERVER_DIR).exists():
            shutil.copytree(folder / SERVER_DIR, logs / folder.name, dirs_exist_ok=True, ignore=ignore)


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
                           lambda sweep: save({**results, "sweep": sweep}))
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

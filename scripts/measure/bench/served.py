"""Served load: our models through a real TorchServe, as shipped and over the sweep's points.

The shipped models are measured as loaded; every other point (a workers x threads layout, the
torch path) is a variant archive (scripts/measure/bench/variants.py) registered through the management
API, with its batch size and delay, for the time it is measured. The load comes from wrk
(scripts/measure/bench/wrk.py) where it is installed, else from the bounded loopback Python client
(scripts/measure/bench/load_client.py); each row says which, and its CPU share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import requests
from tqdm import tqdm

from scripts.client.torchserve import START_TIMEOUT_S, Client, TorchServe, poll_until
from scripts.measure.bench.load_client import load_model
from scripts.measure.bench.plan import IMAGE, REPO, TEXT, Plan, shipped
from scripts.measure.bench.sweep import Sweep, sweep_points
from scripts.measure.bench.top1 import served_top1
from scripts.measure.bench.variants import archive_config, variant_config, write_variant
from scripts.measure.bench.wrk import find_wrk, run_wrk

CONTENT_TYPES = {IMAGE: "application/octet-stream", TEXT: "application/json"}
SETTING_KEYS = ("batch_size", "max_batch_delay", "workers", "threads")


def load_cell(client: Client, model: str, body: bytes, settings: dict, concurrency: int, total: int,
              wrk_seconds: float = 0.0, content_type: str = "application/octet-stream") -> dict:
    """One measured point: the pipeline filled first (not counted), then `wrk_seconds` of wrk where
    it is installed and asked for, else `total` requests from the Python client."""
    load_model(client, model, body, content_type, 2 * concurrency, concurrency)
    wrk = find_wrk() if wrk_seconds > 0 else None
    if wrk:
        headers = {**client.auth("inference"), "Content-Type": content_type}
        summary = run_wrk(client.prediction_url(model), body, headers, concurrency, wrk_seconds, wrk)
        if summary["requests"] == 0:  # no answer inside a short window (the oversubscribed stock handler): not 0 req/s
            summary = run_wrk(client.prediction_url(model), body, headers, concurrency, max(4 * wrk_seconds, 4.0), wrk)
    else:
        summary = python_load(client, model, body, content_type, max(total, 2 * concurrency), concurrency)
    return {**{key: settings[key] for key in SETTING_KEYS}, "concurrency": concurrency, "requests": summary["requests"],
            **{key: summary[key] for key in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms", "errors", "client",
                                             "client_cpu_share")}}


def python_load(client: Client, model: str, body: bytes, content_type: str, total: int, concurrency: int) -> dict:
    """The Python client's summary, with its own share of the machine's CPU (it shares the cores)."""
    cpu, started = time.process_time(), time.monotonic()
    summary = load_model(client, model, body, content_type, total, concurrency).summary()
    share = (time.process_time() - cpu) / ((time.monotonic() - started) * len(os.sched_getaffinity(0)))
    return {**summary, "errors": summary["requests"] - summary["statuses"].get(200, 0), "client": "python",
            "client_cpu_share": round(share, 3)}


def warn_without_wrk(wrk_seconds: float) -> None:
    if wrk_seconds > 0 and not find_wrk():
        warnings.warn("wrk is not installed (apt-get install wrk): the Python load client is used, and it takes a large "
                      "share of the server's CPU; see client_cpu_share in the report", stacklevel=2)


def worker_pids(client: Client, model: str) -> list[int]:
    response = client.describe(model)
    if response.status_code != 200:
        raise RuntimeError(f"describing {model} failed: {response.status_code} {response.text}")
    return [worker["pid"] for worker in response.json()[0]["workers"]]


@contextlib.contextmanager
def registered(client: Client, mar: str, name: str, batch: int, delay: int, workers: int = 1) -> Iterator[str]:
    """`mar` registered as `name` with this batching and these many workers for the duration of a `with` block."""
    response = client.register(mar, timeout_s=300, model_name=name, batch_size=batch, max_batch_delay=delay,
                               initial_workers=workers, synchronous="true")
    if response.status_code != 200:
        raise RuntimeError(f"registering {name} failed: {response.status_code} {response.text}")
    try:
        running = len(worker_pids(client, name))
        if running != workers:
            raise RuntimeError(f"{name} runs {running} workers, not the {workers} its archive asks for")
        yield name
    finally:
        client.unregister(name)


def variant_mar(store: Path, model: str, workers: int, threads: int, **handler) -> str:
    """<store>/<model>-w<W>t<T>[-<setting>...].mar: the shipped archive with this layout and these settings."""
    suffix = "".join(f"-{key}_{value}" for key, value in sorted(handler.items()))
    name = f"{model}-w{workers}t{threads}{suffix}.mar"
    if not (store / name).is_file():
        shipped_mar = store / f"{model}.mar"
        write_variant(shipped_mar, store / name, variant_config(archive_config(shipped_mar), workers, threads, **handler))
    return name


def measure_registered(client: Client, mar: str, name: str, settings: dict, concurrencies: Sequence[int], body: bytes,
                       content_type: str, plan: Plan, wrk_seconds: float) -> list[dict]:
    """A variant registered with `settings` (batch, delay, workers), at each concurrency."""
    with registered(client, mar, name, settings["batch_size"], settings["max_batch_delay"], settings["workers"]):
        return [load_cell(client, name, body, settings, c, plan.requests, wrk_seconds, content_type) for c in concurrencies]


def shipped_rows(client: Client, model: str, body: bytes, concurrencies: Sequence[int], plan: Plan) -> list[dict]:
    """The model as loaded (its archive's settings), at each concurrency."""
    settings = shipped(model)
    return [load_cell(client, model, body, settings, c, plan.requests, plan.wrk_seconds, CONTENT_TYPES[model])
            for c in tqdm(concurrencies, desc=f"{model}, served")]


def sweep_rows(client: Client, store: Path, model: str, sweep: Sweep, body: bytes, plan: Plan) -> list[dict]:
    """Every point of the sweep, each at the sweep's concurrencies."""
    rows = []
    for point in tqdm(sweep_points(sweep, len(os.sched_getaffinity(0))), desc=f"{model}, sweep"):
        mar = variant_mar(store, model, point.workers, point.threads)
        name = f"{model}_b{point.batch_size}_d{point.max_batch_delay}_w{point.workers}t{point.threads}"
        rows += measure_registered(client, mar, name, point.__dict__, sweep.concurrencies, body, CONTENT_TYPES[model], plan,
                                   plan.sweep_wrk_seconds)
    return rows


def torch_rows(client: Client, store: Path, body: bytes, plan: Plan, photos: Sequence[Path]) -> tuple[list[dict], dict[str, str]]:
    """Our image handler on `runtime: torch` (trace + channels_last), shipped batching and layout; and
    its top-1 label on each photo."""
    settings = shipped(IMAGE)
    mar = variant_mar(store, IMAGE, settings["workers"], settings["threads"], runtime="torch")
    with registered(client, mar, f"{IMAGE}_torch", settings["batch_size"], settings["max_batch_delay"],
                    settings["workers"]) as name:
        rows = [load_cell(client, name, body, settings, c, plan.requests, plan.wrk_seconds)
                for c in tqdm(plan.variant_concurrencies, desc="image, torch path")]
        return rows, served_top1(client, name, photos)


def start_own_server(model_store: Path, workdir: Path) -> tuple[TorchServe, float]:
    """TorchServe on free ports with copies of the shipped archives; the cold start, start to first 200."""
    store = workdir / "model-store"  # config.properties' allowed_urls wants a model-store folder
    store.mkdir(parents=True)
    for name in (IMAGE, TEXT):
        shutil.copyfile(model_store / f"{name}.mar", store / f"{name}.mar")
    started = time.monotonic()
    server = TorchServe.start(workdir / "server", store, f"{IMAGE}={IMAGE}.mar,{TEXT}={TEXT}.mar", until="ping")
    cat = (REPO / "samples" / "cat.jpg").read_bytes()
    poll_until(lambda: server.predict(IMAGE, data=cat, timeout_s=60).status_code == 200, START_TIMEOUT_S,
               f"a first 200 from {IMAGE}; see {server.workdir / 'serve.out'}", interval_s=0.1,
               ignore=(requests.ConnectionError,))
    cold_start = round(time.monotonic() - started, 2)
    # the first 200 comes while other workers may still load and warm up: measured then, they would
    # take the cores from the first rows (seen: p50 at concurrency 1 twice what it is once settled)
    poll_until(lambda: all(workers_ready(server, name) for name in (IMAGE, TEXT)), START_TIMEOUT_S,
               f"every worker of {IMAGE} and {TEXT} READY", interval_s=0.2)
    return server, cold_start


def workers_ready(client: Client, model: str) -> bool:
    """Every worker the model asks for (minWorkers) is up and READY."""
    info = client.describe(model).json()[0]
    workers = info["workers"]
    return len(workers) >= info["minWorkers"] and all(w["status"] == "READY" for w in workers)

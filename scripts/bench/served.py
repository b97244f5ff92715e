"""Served load: our models through a real TorchServe, over batch size x max batch delay x concurrency.

Variants of the shipped batching are registered through the management API for the time they
are measured; the load comes from wrk (scripts/bench/wrk.py) where it is installed, else from the
bounded loopback Python client (scripts/bench/load_client.py); each row says which, and its CPU share.
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

from scripts.bench.load_client import load_model
from scripts.bench.plan import IMAGE, REPO, TEXT, Plan, shipped
from scripts.bench.wrk import find_wrk, run_wrk
from scripts.torchserve import START_TIMEOUT_S, Client, TorchServe, poll_until


def sweep_cells(batch_sizes: Sequence[int], delays: Sequence[int], shipped_delay: int) -> list[tuple[int, int]]:
    """(batch size, max batch delay) pairs: each delay (and the shipped one) above batch 1; batch 1 never waits."""
    cells = []
    for batch in batch_sizes:
        for delay in ([shipped_delay] if batch == 1 else sorted({shipped_delay, *delays})):
            cells.append((batch, delay))
    return cells


def load_cell(client: Client, model: str, body: bytes, content_type: str, cell: tuple[int, int, int],
              total: int, wrk_seconds: float = 0.0) -> dict:
    """One measured point: the pipeline filled first (not counted), then `wrk_seconds` of wrk where
    it is installed and asked for, else `total` requests from the Python client."""
    batch, delay, concurrency = cell
    load_model(client, model, body, content_type, 2 * concurrency, concurrency)
    wrk = find_wrk() if wrk_seconds > 0 else None
    if wrk:
        headers = {**client.auth("inference"), "Content-Type": content_type}
        summary = run_wrk(client.prediction_url(model), body, headers, concurrency, wrk_seconds, wrk)
    else:
        summary = python_load(client, model, body, content_type, max(total, 2 * concurrency), concurrency)
    return {"batch_size": batch, "max_batch_delay": delay, "concurrency": concurrency, "requests": summary["requests"],
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


@contextlib.contextmanager
def registered(client: Client, mar: str, name: str, batch: int, delay: int) -> Iterator[str]:
    """`mar` registered as `name` with this batching for the duration of a `with` block."""
    response = client.register(mar, timeout_s=300, model_name=name, batch_size=batch, max_batch_delay=delay,
                               initial_workers=1, synchronous="true")
    if response.status_code != 200:
        raise RuntimeError(f"registering {name} failed: {response.status_code} {response.text}")
    try:
        yield name
    finally:
        client.unregister(name)


def served_sweep(client: Client, plan: Plan, body: bytes) -> list[dict]:
    """Every (batch, delay) cell x concurrency; the shipped cell uses the loaded model itself."""
    ship = shipped(IMAGE)
    cells = sweep_cells(plan.batch_sizes, plan.delays, ship["max_batch_delay"])
    rows = []
    with tqdm(total=len(cells) * len(plan.concurrencies), desc="image, served") as progress:
        for batch, delay in cells:
            is_shipped = (batch, delay) == (ship["batch_size"], ship["max_batch_delay"])
            variant = registered(client, f"{IMAGE}.mar", f"lite0_b{batch}_d{delay}", batch, delay)
            with contextlib.nullcontext(IMAGE) if is_shipped else variant as name:
                for concurrency in plan.concurrencies:
                    rows.append(load_cell(client, name, body, "application/octet-stream", (batch, delay, concurrency),
                                          plan.requests, plan.wrk_seconds))
                    progress.update()
    return rows


def text_served(client: Client, plan: Plan, body: bytes) -> list[dict]:
    ship = shipped(TEXT)
    return [load_cell(client, TEXT, body, "application/json", (ship["batch_size"], ship["max_batch_delay"], c), plan.requests,
                      plan.wrk_seconds)
            for c in tqdm(plan.text_concurrencies, desc="text, served")]


def start_own_server(model_store: Path, workdir: Path) -> tuple[TorchServe, float]:
    """TorchServe on free ports with copies of the shipped archives; the cold start, start to first 200."""
    store = workdir / "model-store"  # config.properties' allowed_urls wants a model-store folder
    store.mkdir(parents=True)
    for name in (IMAGE, TEXT):
        shutil.copyfile(model_store / f"{name}.mar", store / f"{name}.mar")
    started = time.monotonic()
    server = TorchServe.start(workdir / "server", store, f"{IMAGE}={IMAGE}.mar,{TEXT}={TEXT}.mar")
    cat = (REPO / "samples" / "cat.jpg").read_bytes()
    poll_until(lambda: server.predict(IMAGE, data=cat, timeout_s=60).status_code == 200, START_TIMEOUT_S,
               f"a first 200 from {IMAGE}; see {server.workdir / 'serve.out'}", interval_s=0.1,
               ignore=(requests.ConnectionError,))
    return server, round(time.monotonic() - started, 2)

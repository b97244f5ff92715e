"""`make bench`: the served models against the raw models and TorchServe's stock handler, here.

    python -m scripts.benchmark                        # own server on free ports, full sweep (minutes)
    python -m scripts.benchmark --smoke                # a handful of requests: what CI runs
    python -m scripts.benchmark --wait-quiet 0.5       # first wait (up to 15 min) for a 1-min load <= 0.5
    python -m scripts.benchmark --url http://127.0.0.1:8080 --management-url http://127.0.0.1:8081 \
        --key-file key_file.json                       # a server that is already running (no cold start, no stock)

One run measures, for the image model: served throughput and p50/p90/p99 over batch size x max
batch delay x concurrency (variants registered through the management API), the raw model
in-process with the same settings (the limit), and TorchServe's stock `image_classifier` handler
serving the same weights; for the text model: served against raw, and int8 against fp32. It
writes <out>/results.json, report.md and PNG plots, and prints the targets, met or missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Sequence

import requests
import torch
from tqdm import tqdm

from scripts.bench.machine import load_average, machine_info, wait_until_quiet
from scripts.bench.report import HEADLINE_CONCURRENCY, evaluate, headline, render_markdown, verdict
from scripts.in_process import load_handler, model_config
from scripts.loadgen import run_load

REPO = Path(__file__).resolve().parent.parent
IMAGE, TEXT = "efficientnet_lite0", "minilm"


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


FULL = Plan((1, 4, 8, 16), (2, 10), (1, 4, 16, 32), 400, (1, HEADLINE_CONCURRENCY), (1, HEADLINE_CONCURRENCY), 3.0, 5, None)
SMOKE = Plan((8,), (), (2,), 8, (2,), (2,), 0.2, 1, 8)


@dataclass
class Endpoint:
    """A TorchServe's URLs and its key file: ours, or one already running."""

    urls: dict[str, str]
    key_file: Path

    def auth(self, api: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {json.loads(self.key_file.read_text())[api]['key']}"}

    def manage(self, method: str, path: str) -> requests.Response:
        return requests.request(method, f"{self.urls['management']}{path}", headers=self.auth("management"), timeout=300)


def sweep_cells(batch_sizes: Sequence[int], delays: Sequence[int], shipped_delay: int) -> list[tuple[int, int]]:
    """(batch size, max batch delay) pairs: each delay (and the shipped one) above batch 1; batch 1 never waits."""
    cells = []
    for batch in batch_sizes:
        for delay in ([shipped_delay] if batch == 1 else sorted({shipped_delay, *delays})):
            cells.append((batch, delay))
    return cells


def shipped(name: str) -> dict:
    config = model_config(name)
    return {"batch_size": config["batchSize"], "max_batch_delay": config["maxBatchDelay"],
            **{key: value for key, value in config["handler"].items() if key in SPEED_KEYS}}


SPEED_KEYS = ("precision", "channels_last", "compile", "jpeg_draft", "threads", "quantize")


# ---- served ------------------------------------------------------------------------------------
def load_cell(endpoint: Endpoint, model: str, body: bytes, content_type: str, cell: tuple[int, int, int],
              total: int) -> dict:
    """One measured point: the pipeline filled first (not counted), then `total` requests."""
    batch, delay, concurrency = cell
    url = f"{endpoint.urls['inference']}/predictions/{model}"
    headers = {**endpoint.auth("inference"), "Content-Type": content_type}
    run_load(url, body, headers, 2 * concurrency, concurrency)
    summary = run_load(url, body, headers, max(total, 2 * concurrency), concurrency).summary()
    return {"batch_size": batch, "max_batch_delay": delay, "concurrency": concurrency, "requests": summary["requests"],
            **{key: summary[key] for key in ("throughput_rps", "p50_ms", "p90_ms", "p99_ms")},
            "errors": summary["requests"] - summary["statuses"].get(200, 0)}


@contextlib.contextmanager
def registered(endpoint: Endpoint, mar: str, name: str, batch: int, delay: int) -> Iterator[str]:
    """`mar` registered as `name` with this batching for the duration of a `with` block."""
    params = f"url={mar}&model_name={name}&batch_size={batch}&max_batch_delay={delay}&initial_workers=1&synchronous=true"
    response = endpoint.manage("POST", f"/models?{params}")
    if response.status_code != 200:
        raise RuntimeError(f"registering {name} failed: {response.status_code} {response.text}")
    try:
        yield name
    finally:
        endpoint.manage("DELETE", f"/models/{name}")


def served_sweep(endpoint: Endpoint, plan: Plan, body: bytes) -> list[dict]:
    """Every (batch, delay) cell x concurrency; the shipped cell uses the loaded model itself."""
    ship = shipped(IMAGE)
    cells = sweep_cells(plan.batch_sizes, plan.delays, ship["max_batch_delay"])
    rows = []
    with tqdm(total=len(cells) * len(plan.concurrencies), desc="image, served") as progress:
        for batch, delay in cells:
            is_shipped = (batch, delay) == (ship["batch_size"], ship["max_batch_delay"])
            variant = registered(endpoint, f"{IMAGE}.mar", f"lite0_b{batch}_d{delay}", batch, delay)
            with contextlib.nullcontext(IMAGE) if is_shipped else variant as name:
                for concurrency in plan.concurrencies:
                    rows.append(load_cell(endpoint, name, body, "application/octet-stream", (batch, delay, concurrency), plan.requests))
                    progress.update()
    return rows


def stock_rows(endpoint: Endpoint, plan: Plan, body: bytes, model_store: Path, export_dir: Path) -> list[dict]:
    """TorchServe's stock image_classifier on the same weights and batching as the shipped model."""
    from scripts.bench.stock_archive import STOCK_NAME, build_stock_archive

    ship = shipped(IMAGE)
    batch, delay = ship["batch_size"], ship["max_batch_delay"]
    build_stock_archive(export_dir, model_store, batch, delay)
    rows = []
    with registered(endpoint, f"{STOCK_NAME}.mar", STOCK_NAME, batch, delay) as name:
        for concurrency in tqdm(plan.stock_concurrencies, desc="image, stock handler"):
            rows.append(load_cell(endpoint, name, body, "application/octet-stream", (batch, delay, concurrency), plan.requests))
    return rows


def text_served(endpoint: Endpoint, plan: Plan, body: bytes) -> list[dict]:
    ship = shipped(TEXT)
    return [load_cell(endpoint, TEXT, body, "application/json", (ship["batch_size"], ship["max_batch_delay"], c), plan.requests)
            for c in tqdm(plan.text_concurrencies, desc="text, served")]


# ---- raw, in-process ---------------------------------------------------------------------------
def median_seconds(run: Callable[[], object], min_s: float, min_calls: int = 5) -> float:
    """Median duration of one call, after two warm-up calls, over at least `min_calls` calls and `min_s`."""
    run(), run()
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

        def run() -> object:
            items = {i: handler.decode_request(request) if decode else item for i in range(batch)}
            return handler.run_isolated(list(items), items)

        seconds_per_batch = median_seconds(run, seconds)
        rows.append({"batch_size": batch, "throughput": round(batch / seconds_per_batch, 1),
                     "latency_ms": round(seconds_per_batch * 1000, 2)})
    return rows


def int8_vs_fp32(model_dir: Path, repeat: int, limit: int | None = None) -> dict:
    """scripts/text_quantization.py's measurement with the shipped int8 settings."""
    import warnings

    from transformers import AutoTokenizer

    from handlers.quantization import quantize_int8
    from scripts.text_quantization import embedder, load_fp32, measure

    warnings.filterwarnings("ignore", module="torch.ao")
    handler_config = model_config(TEXT)["handler"]
    keep = handler_config.get("int8_keep_fp32", [])
    texts = [line.strip() for line in (REPO / "samples" / "sentences.txt").read_text().splitlines() if line.strip()][:limit]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    fp32_model = load_fp32(model_dir)
    settings = (handler_config.get("max_tokens", 256), handler_config.get("chunk_texts", 64))
    fp32 = measure(embedder(fp32_model, tokenizer, *settings), texts, repeat)
    int8 = measure(embedder(quantize_int8(fp32_model, torch.device("cpu"), keep), tokenizer, *settings), texts, repeat)
    cosines = torch.nn.functional.cosine_similarity(int8["batched"], fp32["alone"], dim=1)
    return {"texts": len(texts), "keep_fp32": list(keep), "speedup": round(fp32["batch_s"] / int8["batch_s"], 2),
            "speedup_single": round(fp32["single_s"] / int8["single_s"], 2),
            "cosine_mean": round(cosines.mean().item(), 4), "cosine_min": round(cosines.min().item(), 4)}


# ---- the run -----------------------------------------------------------------------------------
def start_own_server(model_store: Path, workdir: Path) -> tuple[object, Endpoint, float]:
    """TorchServe on free ports with copies of the shipped archives; the cold start, start to first 200."""
    from scripts.torchserve import TorchServe

    store = workdir / "model-store"  # config.properties' allowed_urls wants a model-store folder
    store.mkdir(parents=True)
    for name in (IMAGE, TEXT):
        shutil.copyfile(model_store / f"{name}.mar", store / f"{name}.mar")
    started = time.monotonic()
    server = TorchServe.start(workdir / "server", store, f"{IMAGE}={IMAGE}.mar,{TEXT}={TEXT}.mar")
    endpoint = Endpoint(server.urls, server.workdir / "key_file.json")
    cat = (REPO / "samples" / "cat.jpg").read_bytes()
    while requests.post(f"{server.urls['inference']}/predictions/{IMAGE}", data=cat,
                        headers=endpoint.auth("inference"), timeout=60).status_code != 200:
        time.sleep(0.1)
    return server, endpoint, round(time.monotonic() - started, 2)


def measure_served(endpoint: Endpoint, plan: Plan, image_body: bytes, text_body: bytes, store: Path | None,
                   export_dir: Path) -> dict:
    results = {"image_served": served_sweep(endpoint, plan, image_body), "text_served": text_served(endpoint, plan, text_body)}
    if store is None:
        results["stock_note"] = "not measured: the stock archive is registered only in the benchmark's own server"
    else:
        results["stock"] = stock_rows(endpoint, plan, image_body, store, export_dir)
    return results


def one_process(name: str) -> dict:
    """The shipped config as one process with every core (threads 0 with one worker): the machine's limit."""
    return {**model_config(name), "minWorkers": 1, "maxWorkers": 1}


def measure_raw(plan: Plan, weights_dir: Path, image_body: bytes, text_body: bytes) -> dict:
    image_batches = sorted({1, *plan.batch_sizes})
    image = load_handler(IMAGE, weights_dir / IMAGE, one_process(IMAGE))
    text = load_handler(TEXT, weights_dir / TEXT, one_process(TEXT))
    return {
        "image_raw": raw_rows(image, {"body": bytearray(image_body)}, image_batches, plan.raw_seconds),
        "image_raw_handler": raw_rows(image, {"body": bytearray(image_body)}, image_batches, plan.raw_seconds, decode=True),
        "text_raw": raw_rows(text, {"body": json.loads(text_body)}, (1, shipped(TEXT)["batch_size"]), plan.raw_seconds),
        "int8": int8_vs_fp32(weights_dir / TEXT, plan.int8_repeat, plan.int8_texts),
    }


def assemble(args, plan: Plan, served: dict, raw: dict, cold_start: float | None, started_at: str, load_before) -> dict:
    results = {
        "started_at": started_at, "mode": "smoke" if args.smoke else "full", "machine": machine_info(),
        "load_before": load_before, "load_after": load_average(), "cold_start_s": cold_start, "plan": plan.__dict__,
        "image": {"model": IMAGE, "body": f"{args.image.name}, {args.image.stat().st_size} bytes", "shipped": shipped(IMAGE),
                  "served": served["image_served"], "raw": raw["image_raw"], "raw_handler": raw["image_raw_handler"],
                  "stock": served.get("stock", []), "stock_note": served.get("stock_note")},
        "text": {"model": TEXT, "shipped": shipped(TEXT), "served": served["text_served"], "raw": raw["text_raw"],
                 "int8": raw["int8"]},
    }
    results["headline"] = headline(results)
    results["targets"] = evaluate(results["headline"])
    return results


def write_outputs(results: dict, out: Path) -> list[Path]:
    from scripts.bench.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(results))
    plots = write_plots(results["image"], out, "image") + write_plots(results["text"], out, "text")
    return [out / "results.json", out / "report.md", *plots]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny run: one batch size, a handful of requests")
    parser.add_argument("--model-store", type=Path, default=Path("model-store"), help="where make archive put the .mar files")
    parser.add_argument("--weights-dir", type=Path, default=Path("build/weights"), help="the exports (make weights)")
    parser.add_argument("--out", type=Path, default=Path("build/bench"))
    parser.add_argument("--image", type=Path, default=REPO / "samples" / "cat.jpg", help="the photo every request sends")
    parser.add_argument("--text", default="The match went to extra time before the home side scored the winning goal.")
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD", help="first wait up to 15 min for the 1-min load to drop to LOAD")
    parser.add_argument("--url", help="inference URL of a running server (default: start our own)")
    parser.add_argument("--management-url", default="http://127.0.0.1:8081")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else FULL
    if args.wait_quiet is not None:
        print(f"benchmark: 1-minute load {wait_until_quiet(args.wait_quiet, 900)} (asked for <= {args.wait_quiet})")
    started_at, load_before = datetime.now(timezone.utc).isoformat(timespec="seconds"), load_average()
    image_body, text_body = args.image.read_bytes(), json.dumps({"text": args.text}).encode()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        served, cold_start = _serve_and_measure(args, plan, Path(workdir), image_body, text_body)
    raw = measure_raw(plan, args.weights_dir, image_body, text_body)
    results = assemble(args, plan, served, raw, cold_start, started_at, load_before)
    for path in write_outputs(results, args.out):
        print(f"wrote {path}")
    for row in results["targets"]:
        print(f"  {verdict(row['met']):>12}  {row['target']}: {row['value']} (target {row['bound']})")
    return 0


def _serve_and_measure(args, plan: Plan, workdir: Path, image_body: bytes, text_body: bytes) -> tuple[dict, float | None]:
    if args.url:
        endpoint = Endpoint({"inference": args.url, "management": args.management_url}, args.key_file)
        return measure_served(endpoint, plan, image_body, text_body, None, args.weights_dir / IMAGE), None
    server, endpoint, cold_start = start_own_server(args.model_store, workdir)
    try:
        return measure_served(endpoint, plan, image_body, text_body, workdir / "model-store", args.weights_dir / IMAGE), cold_start
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

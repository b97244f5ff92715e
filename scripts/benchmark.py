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
The parts live in scripts/bench/, one concern a file: plan, served, raw, stock, int8, report, plots.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from scripts.bench.int8 import int8_vs_fp32
from scripts.bench.machine import load_average, machine_info, wait_until_quiet
from scripts.bench.plan import FULL, IMAGE, REPO, SMOKE, TEXT, Plan, shipped
from scripts.bench.raw import measure_raw
from scripts.bench.report import evaluate, headline, render_markdown, verdict
from scripts.bench.served import served_sweep, start_own_server, text_served, warn_without_wrk
from scripts.torchserve import Client


def measure_served(client: Client, plan: Plan, image_body: bytes, text_body: bytes, store: Path | None,
                   export_dir: Path) -> dict:
    results = {"image_served": served_sweep(client, plan, image_body), "text_served": text_served(client, plan, text_body)}
    if store is None:
        results["stock_note"] = "not measured: the stock archive is registered only in the benchmark's own server"
    else:
        from scripts.bench.stock import stock_rows  # model_archiver: only when the stock archive is built

        results["stock"] = stock_rows(client, plan, image_body, store, export_dir)
    return results


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
    warn_without_wrk(plan.wrk_seconds)
    if args.wait_quiet is not None:
        print(f"benchmark: 1-minute load {wait_until_quiet(args.wait_quiet, 900)} (asked for <= {args.wait_quiet})")
    started_at, load_before = datetime.now(timezone.utc).isoformat(timespec="seconds"), load_average()
    image_body, text_body = args.image.read_bytes(), json.dumps({"text": args.text}).encode()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        served, cold_start = _serve_and_measure(args, plan, Path(workdir), image_body, text_body)
    raw = {**measure_raw(plan, args.weights_dir, image_body, text_body),
           "int8": int8_vs_fp32(args.weights_dir / TEXT, plan.int8_repeat, plan.int8_texts)}
    results = assemble(args, plan, served, raw, cold_start, started_at, load_before)
    for path in write_outputs(results, args.out):
        print(f"wrote {path}")
    for row in results["targets"]:
        print(f"  {verdict(row['met']):>12}  {row['target']}: {row['value']} (target {row['bound']})")
    return 0


def _serve_and_measure(args, plan: Plan, workdir: Path, image_body: bytes, text_body: bytes) -> tuple[dict, float | None]:
    if args.url:
        client = Client.attach(args.url, args.management_url, args.key_file)
        return measure_served(client, plan, image_body, text_body, None, args.weights_dir / IMAGE), None
    server, cold_start = start_own_server(args.model_store, workdir)
    try:
        return measure_served(server, plan, image_body, text_body, workdir / "model-store", args.weights_dir / IMAGE), cold_start
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())

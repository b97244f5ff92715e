"""`make bench`: the served models against the in-process handlers and TorchServe's stock handler, here.

    python -m scripts.measure.benchmark                        # own server on free ports, the full run (minutes)
    python -m scripts.measure.benchmark --smoke                # a handful of requests, one sweep point: what CI runs
    python -m scripts.measure.benchmark --wait-quiet 0.5       # first wait (up to 15 min) for a 1-min load <= 0.5
    python -m scripts.measure.benchmark --url http://127.0.0.1:8080 --management-url http://127.0.0.1:8081 \
        --key-file key_file.json                       # a server that is already running (shipped models only)

One run measures, for the image model: the shipped model served (throughput, p50/p90/p99 over
concurrency), a sweep of batch size x workers x threads (each point a variant archive registered
through the management API), our torch path and TorchServe's stock `image_classifier` handler on
the same weights and batching, the in-process handler (the limit), the top-1 label of real photos
against plain fp32; for the text model: served, a smaller sweep, in-process, int8 against fp32; and
the cold start and the worker-kill recovery. It writes <out>/results.json, report.md and PNG plots,
and prints issue #12's targets, met or missed. The parts live in scripts/measure/bench/, one concern a file.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from scripts.client.torchserve import Client
from scripts.measure.bench.int8 import int8_vs_fp32
from scripts.measure.bench.machine import load_average, machine_info, wait_until_quiet
from scripts.measure.bench.plan import FULL, IMAGE, REPO, SMOKE, TEXT, Plan, shipped
from scripts.measure.bench.raw import measure_raw
from scripts.measure.bench.report import POINT_KEYS, evaluate, headline, render_markdown, verdict
from scripts.measure.bench.served import shipped_rows, start_own_server, sweep_rows, torch_rows, warn_without_wrk
from scripts.measure.bench.sweep import Point, best_point
from scripts.measure.bench.top1 import compare, photo_files, reference_top1, served_top1

OWN_SERVER_ONLY = "not measured: variant archives are registered only in the benchmark's own server"


def measure_served(client: Client, plan: Plan, image_body: bytes, text_body: bytes, store: Path | None,
                   export_dir: Path) -> dict:
    """Everything measured through the server; `store` None: a server we attached to (shipped models only)."""
    photos = photo_files()
    served = {"image": {"served": shipped_rows(client, IMAGE, image_body, plan.concurrencies, plan)},
              "text": {"served": shipped_rows(client, TEXT, text_body, plan.text_concurrencies, plan)},
              "top1": {"served": served_top1(client, IMAGE, photos)}}
    if store is None:
        for key in ("sweep_note", "stock_note", "torch_note"):
            served["image"][key] = OWN_SERVER_ONLY
        served["text"]["sweep_note"] = OWN_SERVER_ONLY
        served["recovery_note"] = "not measured: workers are killed only in the benchmark's own server"
        return served
    from scripts.measure.bench.recovery import worker_recovery
    from scripts.measure.bench.stock import stock_rows  # model_archiver: only when the stock archive is built

    served["image"]["sweep"] = sweep_rows(client, store, IMAGE, plan.image_sweep, image_body, plan)
    served["text"]["sweep"] = sweep_rows(client, store, TEXT, plan.text_sweep, text_body, plan)
    served["image"]["torch"], served["top1"]["torch"] = torch_rows(client, store, image_body, plan, photos)
    served["image"]["stock"], served["top1"]["stock"] = stock_rows(client, plan, image_body, store, export_dir, photos)
    served["recovery"] = worker_recovery(client, IMAGE, image_body)
    return served


def assemble(args, plan: Plan, served: dict, raw: dict, cold_start: float | None, started_at: str, load_before) -> dict:
    image = {"model": IMAGE, "body": f"{args.image.name}, {args.image.stat().st_size} bytes", "shipped": shipped(IMAGE),
             **served["image"], "raw": raw["image_raw"], "raw_handler": raw["image_raw_handler"],
             "top1": compare(raw["reference_top1"], served["top1"])}
    text = {"model": TEXT, "shipped": shipped(TEXT), **served["text"], "raw": raw["text_raw"],
            "raw_handler": raw["text_raw_handler"], "int8": raw["int8"]}
    for section in (image, text):
        ship = section["shipped"]
        section["choice"] = best_point(section.get("sweep", []), Point(*(ship[key] for key in POINT_KEYS)))
    results = {
        "started_at": started_at, "mode": "smoke" if args.smoke else "full", "machine": machine_info(),
        "load_before": load_before, "load_after": load_average(), "cold_start_s": cold_start, "plan": _plan_dict(plan),
        "recovery": served.get("recovery"), "recovery_note": served.get("recovery_note"), "image": image, "text": text,
    }
    results["headline"] = headline(results)
    results["targets"] = evaluate(results["headline"])
    return results


def _plan_dict(plan: Plan) -> dict:
    return {key: getattr(value, "__dict__", value) for key, value in plan.__dict__.items()}


def write_outputs(results: dict, out: Path) -> list[Path]:
    from scripts.measure.bench.plots import write_plots

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(render_markdown(results))
    plots = write_plots(results["image"], out, "image") + write_plots(results["text"], out, "text")
    return [out / "results.json", out / "report.md", *plots]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a tiny run: one sweep point, a handful of requests")
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
           "reference_top1": reference_top1(args.weights_dir, photo_files()),
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

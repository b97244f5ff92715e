"""`make bench` in its smoke mode: its own TorchServe, a handful of requests, every output written.

CI runs only this: one sweep point (2 workers x 1 thread, a variant archive), the torch path, the
stock handler, the photos' top-1 and the worker-kill recovery, each briefly; the full run is
`make bench` (docs/performance.md). Timing is not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scripts.client.torchserve import REPO


@pytest.fixture(scope="module")
def bench_out(model_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    weights = model_store.parent / "weights"  # the model_store fixture exports there
    command = [sys.executable, "-m", "scripts.measure.benchmark", "--smoke", "--model-store", str(model_store),
               "--weights-dir", str(weights), "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_writes_json_markdown_and_plots(bench_out):
    out, stdout = bench_out
    names = {path.name for path in out.iterdir()}
    assert {"results.json", "report.md", "image_throughput.png", "image_latency.png",
            "text_throughput.png", "text_latency.png"} <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "wrote" in stdout and "cold start" in stdout


def test_results_are_plausible(bench_out):
    out, _ = bench_out
    results = json.loads((out / "results.json").read_text())
    image, text = results["image"], results["text"]
    rows = image["served"] + image["sweep"] + image["torch"] + image["stock"] + text["served"]
    for row in rows:
        assert row["errors"] == 0 and row["throughput_rps"] > 0
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["client"] in {"wrk", "python"} and 0 <= row["client_cpu_share"] <= 1
    assert [(r["batch_size"], r["workers"], r["threads"]) for r in image["sweep"]] == [(8, 2, 1)]  # one point, 2 workers
    assert {r["workers"] for r in image["stock"]} == {1, image["shipped"]["workers"]}
    raw_batches = {1, image["shipped"]["batch_size"], 8}  # batch 1, the shipped batch, the sweep's
    assert {row["batch_size"] for row in image["raw"]} == raw_batches == {row["batch_size"] for row in image["raw_handler"]}
    assert all(row["throughput"] > 0 and row["latency_ms"] > 0 for row in image["raw"] + text["raw_handler"])
    assert 0 < results["cold_start_s"] < 240
    recovery = results["recovery"]
    assert recovery["workers_killed"] == image["shipped"]["workers"]
    assert 0 < recovery["first_answer_s"] <= recovery["all_workers_ready_s"] < 120
    top1 = image["top1"]
    assert top1["photos"] >= 2 and top1["served"]["identical"] == top1["torch"]["identical"] == top1["photos"]
    assert 0.5 < text["int8"]["cosine_mean"] <= 1.0
    assert results["machine"]["cores"] == len(os.sched_getaffinity(0)) and len(results["load_before"]) == 3
    assert image["shipped"]["runtime"] == "onnxruntime"
    assert {row["key"] for row in results["targets"]} >= {"cold_start_s", "image_vs_stock", "worker_recovery_s"}
    assert {row["key"]: row["met"] for row in results["targets"]}["image_vs_stock"] is None  # smoke: no concurrency 16


def test_report_names_the_machine_and_the_targets(bench_out):
    out, _ = bench_out
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "stock image_classifier" in report and "Sweep: batch size x workers x threads" in report
    assert json.loads((out / "results.json").read_text())["machine"]["cpu"] in report

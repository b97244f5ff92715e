"""make bench-gpu's pure parts: windows of recorded requests, the targets, the report, the config it serves."""

from __future__ import annotations

import sys

import yaml

from handlers.config import ImageSettings, TextSettings, parse_settings
from models.registry import get_spec
from scripts.measure.bench.gpu import write_outputs
from scripts.measure.bench.gpu_report import evaluate, first_vs_next, render_markdown, summarise_window
from scripts.measure.bench.gpu_server import bench_config

RECORDS = [(0.1, 10.0, 200), (0.5, 30.0, 200), (1.2, 5.0, 200), (1.5, 7.0, 503), (2.5, 9.0, 200)]


def test_summarise_window_counts_only_requests_started_inside():
    first = summarise_window(RECORDS, 0, 1, concurrency=4)
    assert (first["requests"], first["ok"], first["throughput_rps"], first["p50_ms"], first["p99_ms"]) == (2, 2, 2.0, 10.0, 30.0)
    second = summarise_window(RECORDS, 1, 2, concurrency=4)
    assert (second["ok"], second["not_ok"], second["p99_ms"]) == (1, 1, 5.0)
    assert summarise_window([], 0, 1, 1)["p99_ms"] is None


def cell(concurrency: int, rps: float, p99: float) -> dict:
    return {"concurrency": concurrency, "throughput_rps": rps, "p50_ms": p99 / 2, "p99_ms": p99, "not_ok": 0}


def results(mode: str = "gpu", first_p99: float = 150.0) -> dict:
    window = {"concurrency": 128, "throughput_rps": 1.0, "window_s": [0, 10]}
    image = {"weights": "random values of the real shapes",
             "config": {"batchSize": 64, "maxBatchDelay": 5, "maxWorkers": 2, "handler": {"precision": "fp16"}},
             "cells": [cell(1, 300, 4), cell(128, 4100, 90)],
             "after_ready": {"first": {**window, "p99_ms": first_p99}, "next": {**window, "p99_ms": 50.0}},
             "in_process": [{"batch_size": 1, "throughput": 500, "latency_ms": 2.0}, {"batch_size": 64, "throughput": 6000, "latency_ms": 10.7}]}
    return {"started_at": "now", "mode": mode, "gpus": 1, "gpu_series": ["GPUMemoryUsed", "GPUUtilization"],
            "workers_per_gpu": 2, "load_processes": 4, "floor": cell(128, 6500, 20),
            "floor_photo": {**cell(128, 5200, 25), "body_bytes": 38702},
            "machine": {"gpu": "H200", "cpu": "x", "cores": 16, "torch": "2.11"}, "models": {"efficientnet_lite0": image}}


def test_targets_met_missed_and_not_measured():
    rows = {row["target"]: row for row in evaluate(results())}
    assert len(rows) == 6
    assert rows["efficientnet_lite0 at c128: img/s"]["met"] is True
    assert rows["efficientnet_lite0 at c128: p99 ms"]["met"] is True
    assert rows["minilm at c64: req/s"]["met"] is None  # not in this run
    assert rows["efficientnet_lite0: first 10 s p99 / next 10 s p99"] == \
        {"target": "efficientnet_lite0: first 10 s p99 / next 10 s p99", "value": 3.0, "bound": "<= 3", "met": True}
    assert first_vs_next(results(first_p99=200.0)["models"]["efficientnet_lite0"]["after_ready"]) == 4.0
    assert rows["efficientnet_lite0 c1 p50 - in-process batch 1, ms"] == \
        {"target": "efficientnet_lite0 c1 p50 - in-process batch 1, ms", "value": 0.0, "bound": "<= 5", "met": True}  # p50 2.0 - 2.0
    assert rows["GPU metric series after a scrape"]["met"] is False  # GPUMemoryUtilization missing


def test_a_report_from_before_the_photo_floor_still_renders():
    old = results()
    del old["floor_photo"]
    assert "a 1-byte body, at c128: 6500 req/s" in render_markdown(old)


def test_a_cpu_dry_run_meets_no_target():
    assert {row["met"] for row in evaluate(results(mode="cpu-dry-run"))} == {None}
    assert "none of its figures is a GPU's" in render_markdown(results(mode="cpu-dry-run"))


def test_report_names_the_host_and_every_cell():
    report = render_markdown(results())
    assert "H200, 1 GPU(s)" in report and "| 128 | 4100 | 45.0 | 90 | 0 |" in report
    assert "aiohttp clients in 4 processes on the same host" in report
    assert "the photo as the body (38.7 KB), at c128: 5200 req/s" in report  # the frontend's cost of a photo
    assert "Weights: random values of the real shapes." in report  # a kit's served figures say they are speed only
    assert "first 10 s 1.0 req/s, p99 150.0 ms" in report and "| 64 | 6000 | 10.7 |" in report
    assert "waits the whole maxBatchDelay (5 ms here)" in report  # the config's, named beside the c1 target


def test_bench_serves_the_gpu_images_config():
    image = yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())
    config = bench_config(image, gpus=1, dry_run=False)
    assert (config["deviceType"], config["batchSize"], config["maxWorkers"]) == ("gpu", 64, 2)
    assert parse_settings(ImageSettings, config["handler"]).pad_to_bucket


def test_dry_run_config_runs_on_a_cpu_with_the_gpu_path():
    for name, settings in (("efficientnet_lite0", ImageSettings), ("minilm", TextSettings)):
        config = bench_config(yaml.safe_load(get_spec(name).config_path.read_text()), gpus=0, dry_run=True)
        handler = parse_settings(settings, config["handler"])
        assert config["deviceType"] == "cpu" and handler.precision == "fp32" and config["batchSize"] <= 8
        assert handler.runtime == "torch"
    image = bench_config(yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text()), gpus=0, dry_run=True)
    assert image["handler"]["jpeg_decoder"] == "torchvision" and image["handler"]["pad_to_bucket"]


def test_outputs_without_matplotlib_keep_the_report_and_the_results(tmp_path, monkeypatch, capsys):
    """A GPU host need not have matplotlib: the plot is left out, saying so, and nothing else is."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    write_outputs(results(), tmp_path)
    assert (tmp_path / "report.md").read_text() == render_markdown(results())
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "throughput.png").exists()
    assert "no throughput.png" in capsys.readouterr().err

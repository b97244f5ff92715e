"""The benchmark's pure parts: sweep cells, headline ratios, targets, the markdown report, machine facts."""

from __future__ import annotations

import pytest

from scripts.bench.machine import cpu_model, wait_until_quiet
from scripts.bench.report import TARGETS, evaluate, find, headline, markdown_table, render_markdown, verdict
from scripts.bench.served import sweep_cells


@pytest.mark.parametrize(
    "batch_sizes, delays, shipped, expected",
    [
        ((1, 8), (2, 10), 10, [(1, 10), (8, 2), (8, 10)]),  # batch 1 never waits: one delay only
        ((8,), (), 5, [(8, 5)]),
        ((4, 16), (5,), 5, [(4, 5), (16, 5)]),  # the shipped delay is not repeated
    ],
)
def test_sweep_cells(batch_sizes, delays, shipped, expected):
    assert sweep_cells(batch_sizes, delays, shipped) == expected


def served(batch, delay, concurrency, rps, p50=10.0):
    return {"batch_size": batch, "max_batch_delay": delay, "concurrency": concurrency, "requests": 100,
            "throughput_rps": rps, "p50_ms": p50, "p90_ms": p50 * 2, "p99_ms": p50 * 3, "errors": 0}


def results(**overrides) -> dict:
    base = {
        "started_at": "2026-01-01T00:00:00+00:00", "mode": "full", "cold_start_s": 8.0,
        "load_before": [0.1, 0.2, 0.3], "load_after": [1.0, 0.5, 0.4],
        "machine": {"cpu": "Test CPU", "cores": 2, "isa": "AVX512", "bf16": True, "memory_gb": 8.0, "gpu": None, "torch": "2.x"},
        "image": {
            "model": "efficientnet_lite0", "body": "cat.jpg, 1 bytes", "shipped": {"batch_size": 8, "max_batch_delay": 2},
            "served": [served(8, 2, 16, 180.0), served(8, 2, 1, 90.0, p50=14.0), served(8, 10, 16, 170.0)],
            "raw": [{"batch_size": 1, "throughput": 110.0, "latency_ms": 9.0}, {"batch_size": 8, "throughput": 200.0, "latency_ms": 40.0}],
            "raw_handler": [], "stock": [served(8, 2, 16, 45.0)],
        },
        "text": {
            "model": "minilm", "shipped": {"batch_size": 8, "max_batch_delay": 2},
            "served": [served(8, 2, 16, 80.0)], "raw": [{"batch_size": 8, "throughput": 100.0, "latency_ms": 80.0}],
            "int8": {"texts": 40, "speedup": 1.3, "speedup_single": 1.1, "cosine_mean": 0.991, "cosine_min": 0.95, "keep_fp32": []},
        },
    }
    base.update(overrides)
    return base


def test_headline_ratios():
    figures = headline(results())
    assert figures == {
        "image_served_vs_raw": 0.9, "image_vs_stock": 4.0, "image_p50_c1_over_raw_ms": 5.0, "cold_start_s": 8.0,
        "text_served_vs_raw": 0.8, "text_int8_speedup": 1.3, "text_int8_cosine": 0.991,
    }


def test_targets_met_missed_and_not_measured():
    figures = headline(results())
    figures["cold_start_s"] = None
    rows = {row["key"]: row for row in evaluate(figures)}
    assert len(rows) == len(TARGETS)
    assert rows["image_served_vs_raw"]["met"] is True  # 0.9 >= 0.90: the bound itself is met
    assert rows["image_p50_c1_over_raw_ms"]["met"] is True  # 5.0 <= 5
    assert rows["text_served_vs_raw"]["met"] is False
    assert rows["text_int8_speedup"]["met"] is False
    assert rows["cold_start_s"]["met"] is None and rows["cold_start_s"]["bound"] == "<= 15"
    assert [verdict(rows[k]["met"]) for k in ("image_vs_stock", "text_int8_speedup", "cold_start_s")] == \
        ["met", "**MISSED**", "not measured"]


def test_headline_without_the_headline_cell_is_not_measured():
    smoke = results()
    smoke["image"]["served"] = [served(8, 2, 2, 50.0)]
    smoke["image"]["stock"] = []
    figures = headline(smoke)
    assert figures["image_served_vs_raw"] is None and figures["image_vs_stock"] is None
    assert figures["image_p50_c1_over_raw_ms"] is None


def test_report_states_machine_load_and_every_target():
    data = results()
    data["targets"] = evaluate(headline(data))
    text = render_markdown(data)
    assert "Test CPU" in text and "2 cores" in text and "[0.1, 0.2, 0.3]" in text
    for target in TARGETS:
        assert target.text in text
    assert "**MISSED**" in text
    assert "| 8 | 2 | 16 | 100 | 180.0 |" in text
    assert text.count("## ") >= 4


def test_report_says_when_the_stock_handler_was_not_measured():
    data = results()
    data["image"]["stock"], data["image"]["stock_note"] = [], "not measured: a running server"
    data["targets"] = evaluate(headline(data))
    assert "not measured: a running server" in render_markdown(data)


def test_markdown_table_and_find():
    assert markdown_table(("a", "b"), [[1, None]]) == "| a | b |\n|---|---|\n| 1 |  |"
    rows = [{"x": 1, "y": 2}, {"x": 1, "y": 3}]
    assert find(rows, x=1, y=3) == rows[1] and find(rows, x=2) is None


def test_cpu_model():
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 9654\nflags\t: avx\n") == "AMD EPYC 9654"


def test_wait_until_quiet_polls_until_the_load_drops():
    loads = iter([[2.0], [1.0], [0.4], [0.1]])
    slept: list[float] = []
    assert wait_until_quiet(0.5, 600, poll_s=60, load=lambda: next(loads), sleep=slept.append) == 0.4
    assert slept == [60, 60]


def test_wait_until_quiet_gives_up_after_max_wait():
    slept: list[float] = []
    assert wait_until_quiet(0.5, 120, poll_s=60, load=lambda: [3.0], sleep=slept.append) == 3.0
    assert slept == [60, 60]

"""The benchmark's pure parts: the sweep's points and choice, headline figures, targets, the report,
variant archives, top-1 comparison, machine facts."""

from __future__ import annotations

import json
import zipfile

import pytest
import yaml

from scripts.measure.bench.machine import cpu_model, wait_until_quiet
from scripts.measure.bench.report import TARGETS, Target, evaluate, find, headline, markdown_table, render_markdown, sweep_table, verdict
from scripts.measure.bench.sweep import Point, Sweep, best_point, layouts_for, sweep_points
from scripts.measure.bench.top1 import compare, top1
from scripts.measure.bench.variants import archive_config, variant_config, write_variant


@pytest.mark.parametrize("cores, expected", [
    (1, ((1, 1),)),
    (2, ((1, 2), (2, 1))),
    (4, ((1, 4), (2, 2), (4, 1))),
    (6, ((1, 6), (2, 3), (3, 2), (6, 1))),
])
def test_layouts_split_the_cores_exactly(cores, expected):
    assert layouts_for(cores) == expected


@pytest.mark.parametrize("sweep, cores, expected", [
    (Sweep((1, 8), (2, 10), ((1, 2),)), 2, [Point(1, 2, 1, 2), Point(8, 2, 1, 2), Point(8, 10, 1, 2)]),  # batch 1: one delay
    (Sweep((4,), (2,)), 2, [Point(4, 2, 1, 2), Point(4, 2, 2, 1)]),  # no layouts given: every split of the cores
    (Sweep((1, 4, 8), (2,)), 2, [Point(b, 2, w, t) for w, t in ((1, 2), (2, 1)) for b in (1, 4, 8)]),  # grouped by layout
    (Sweep((), ()), 2, []),
])
def test_sweep_points(sweep, cores, expected):
    assert sweep_points(sweep, cores) == expected


def row(batch, workers, threads, concurrency, rps, p50=10.0, delay=2, errors=0):
    return {"batch_size": batch, "max_batch_delay": delay, "workers": workers, "threads": threads,
            "concurrency": concurrency, "requests": 100, "throughput_rps": rps, "p50_ms": p50, "p90_ms": p50 * 2,
            "p99_ms": p50 * 3, "errors": errors, "client": "wrk", "client_cpu_share": 0.003}


@pytest.mark.parametrize("rows, expected", [
    # the highest throughput wins when nothing else is close
    ([row(4, 1, 2, 16, 100.0), row(4, 2, 1, 16, 150.0)], (4, 2, 1)),
    # within 3%: the lower p50 at concurrency 1 wins
    ([row(8, 1, 2, 16, 150.0), row(8, 1, 2, 1, 80.0, p50=12.0), row(4, 2, 1, 16, 147.0), row(4, 2, 1, 1, 90.0, p50=9.0)],
     (4, 2, 1)),
    # just outside 3%: throughput wins over latency
    ([row(8, 1, 2, 16, 150.0), row(8, 1, 2, 1, 80.0, p50=12.0), row(4, 2, 1, 16, 145.0), row(4, 2, 1, 1, 90.0, p50=9.0)],
     (8, 1, 2)),
    # equal throughput and no concurrency-1 figure: the smaller batch, then fewer workers
    ([row(8, 2, 1, 16, 150.0), row(4, 2, 1, 16, 150.0), row(4, 1, 2, 16, 150.0)], (4, 1, 2)),
    # a point with errors is never chosen
    ([row(8, 2, 1, 16, 300.0, errors=3), row(4, 1, 2, 16, 100.0)], (4, 1, 2)),
])
def test_best_point(rows, expected):
    choice = best_point(rows)
    assert (choice["batch_size"], choice["workers"], choice["threads"]) == expected
    assert choice["best_throughput_rps"] == max(r["throughput_rps"] for r in rows if r["concurrency"] == 16 and not r["errors"])


def test_best_point_without_loaded_rows_is_none():
    assert best_point([]) is None
    assert best_point([row(8, 1, 2, 2, 50.0)]) is None  # the smoke run's concurrency 2 only


def test_best_point_reports_its_figures():
    choice = best_point([row(8, 1, 2, 16, 150.0), row(8, 1, 2, 1, 80.0, p50=12.0)])
    assert choice == {"batch_size": 8, "max_batch_delay": 2, "workers": 1, "threads": 2, "throughput_rps": 150.0,
                      "p50_c1_ms": 12.0, "best_throughput_rps": 150.0, "tolerance": 0.03, "shipped": False}


@pytest.mark.parametrize("shipped_rps, shipped_p50, kept", [
    (146.0, 10.9, True),   # within 3% on throughput and 10% on p50: the shipped point stays
    (146.0, 11.1, False),  # p50 more than 10% worse than the winner's (10.0)
    (140.0, 9.0, False),   # more than 3% slower
])
def test_the_shipped_point_stays_while_it_is_as_good(shipped_rps, shipped_p50, kept):
    rows = [row(8, 2, 1, 16, 150.0), row(8, 2, 1, 1, 80.0, p50=10.0),
            row(4, 1, 2, 16, shipped_rps), row(4, 1, 2, 1, 80.0, p50=shipped_p50)]
    choice = best_point(rows, shipped=Point(4, 2, 1, 2))
    assert choice["shipped"] is kept
    assert (choice["batch_size"], choice["workers"]) == ((4, 1) if kept else (8, 2))


def inprocess(*rows):
    return [{"batch_size": b, "throughput": t, "latency_ms": ms} for b, t, ms in rows]


def results(**overrides) -> dict:
    ship = {"batch_size": 8, "max_batch_delay": 2, "workers": 1, "threads": 2}
    base = {
        "started_at": "2026-01-01T00:00:00+00:00", "mode": "full", "cold_start_s": 8.0,
        "load_before": [0.1, 0.2, 0.3], "load_after": [1.0, 0.5, 0.4],
        "recovery": {"model": "efficientnet_lite0", "workers_killed": 1, "first_answer_s": 4.0, "all_workers_ready_s": 4.1},
        "machine": {"cpu": "Test CPU", "cores": 2, "isa": "AVX512", "bf16": True, "memory_gb": 8.0, "gpu": None, "torch": "2.x"},
        "image": {
            "model": "efficientnet_lite0", "body": "cat.jpg, 1 bytes", "shipped": ship,
            "served": [row(8, 1, 2, 16, 180.0), row(8, 1, 2, 1, 90.0, p50=14.0)],
            "sweep": [row(8, 1, 2, 16, 170.0), row(8, 1, 2, 1, 88.0, p50=13.0), row(8, 2, 1, 16, 210.0),
                      row(8, 2, 1, 1, 70.0, p50=15.0)],
            "torch": [row(8, 1, 2, 16, 90.0)], "stock": [row(8, 1, None, 16, 30.0), row(8, 2, None, 16, 36.0)],
            "raw": inprocess((1, 150.0, 6.0), (8, 260.0, 30.0)), "raw_handler": inprocess((1, 110.0, 9.0), (8, 200.0, 40.0)),
            "top1": {"photos": 7, "reference": {"cat.jpg": "tabby"}, "served": {"labels": {"cat.jpg": "tabby"}, "identical": 7,
                                                                                 "differ": []}},
        },
        "text": {
            "model": "minilm", "shipped": {**ship, "max_batch_delay": 10},
            "served": [row(8, 1, 2, 16, 80.0, delay=10), row(8, 1, 2, 1, 50.0, p50=9.0, delay=10)],
            "raw": inprocess((1, 300.0, 3.0), (8, 500.0, 16.0)), "raw_handler": inprocess((1, 250.0, 4.0), (8, 100.0, 80.0)),
            "int8": {"texts": 40, "speedup": 1.3, "speedup_single": 1.1, "cosine_mean": 0.991, "cosine_min": 0.95, "keep_fp32": []},
        },
    }
    base.update(overrides)
    return base


def test_headline_figures():
    assert headline(results()) == {
        "image_top1_identical": 1.0,
        "image_vs_stock": 5.0,  # against the faster stock layout (36, not 30)
        "image_torch_vs_stock": 2.5,
        "image_served_vs_inprocess": 0.9,  # 180 / the in-process handler at the shipped batch 8 (200)
        "image_p50_c1_over_inprocess_ms": 5.0,  # 14 - in-process batch 1 (9)
        "text_served_vs_inprocess": 0.8,
        "text_p50_c1_over_inprocess_ms": 5.0,
        "cold_start_s": 8.0,
        "worker_recovery_s": 4.0,
    }


def test_headline_without_the_headline_cells_is_not_measured():
    smoke = results(recovery=None)
    smoke["image"].update(served=[row(8, 1, 2, 2, 50.0)], stock=[], top1=None)
    figures = headline(smoke)
    assert figures["image_served_vs_inprocess"] is None and figures["image_vs_stock"] is None
    assert figures["image_p50_c1_over_inprocess_ms"] is None and figures["image_top1_identical"] is None
    assert figures["worker_recovery_s"] is None


BOUNDS = {t.key: t for t in TARGETS}


@pytest.mark.parametrize("key, value, met", [
    ("image_vs_stock", 5.0, True),  # the bound itself is met
    ("image_vs_stock", 4.99, False),
    ("image_served_vs_inprocess", 0.90, True),
    ("image_served_vs_inprocess", 0.895, False),
    ("image_p50_c1_over_inprocess_ms", 3.5, True),
    ("image_p50_c1_over_inprocess_ms", 3.51, False),
    ("text_served_vs_inprocess", 0.85, True),
    ("text_served_vs_inprocess", 0.76, False),
    ("text_p50_c1_over_inprocess_ms", 12.6, False),
    ("cold_start_s", 10.0, True),
    ("cold_start_s", 10.1, False),
    ("worker_recovery_s", 3.2, True),
    ("worker_recovery_s", 5.2, False),
    ("image_top1_identical", 1.0, True),
    ("image_top1_identical", 6 / 7, False),
    ("worker_recovery_s", None, None),  # a figure this run did not measure
    ("cold_start_s", None, None),
])
def test_each_target_met_missed_or_not_measured(key, value, met):
    figures = {"image_top1_identical": 1.0, key: value}
    (result,) = [r for r in evaluate(figures) if r["key"] == key]
    assert result["met"] is met and result["value"] == value
    assert result["bound"] == f"{BOUNDS[key].op} {BOUNDS[key].bound:g}"


@pytest.mark.parametrize("top1_value, expected", [(1.0, True), (6 / 7, False), (None, None)])
def test_the_stock_ratio_counts_only_with_top1_identical(top1_value, expected):
    rows = {r["key"]: r for r in evaluate({"image_vs_stock": 6.0, "image_top1_identical": top1_value})}
    assert rows["image_vs_stock"]["met"] is expected


def test_a_missed_ratio_stays_missed_whatever_the_top1():
    rows = {r["key"]: r for r in evaluate({"image_vs_stock": 3.7, "image_top1_identical": 1.0})}
    assert rows["image_vs_stock"]["met"] is False


def test_issue_12_targets_replace_the_old_ones():
    assert [(t.key, t.op, t.bound) for t in TARGETS] == [
        ("image_top1_identical", ">=", 1.0), ("image_vs_stock", ">=", 5.0), ("image_served_vs_inprocess", ">=", 0.90),
        ("image_p50_c1_over_inprocess_ms", "<=", 3.5), ("text_served_vs_inprocess", ">=", 0.85),
        ("text_p50_c1_over_inprocess_ms", "<=", 3.5), ("cold_start_s", "<=", 10.0), ("worker_recovery_s", "<=", 5.0)]
    assert evaluate({}, [Target("x", "x", "<=", 1.0, requires="missing")])[0]["met"] is None


def test_report_states_machine_load_targets_and_every_point():
    data = results()
    data["image"]["choice"] = {"batch_size": 8, "max_batch_delay": 2, "workers": 2, "threads": 1, "throughput_rps": 210.0,
                               "p50_c1_ms": 15.0, "best_throughput_rps": 210.0, "tolerance": 0.03}
    data["targets"] = evaluate(headline(data))
    text = render_markdown(data)
    assert "Test CPU" in text and "2 cores" in text and "[0.1, 0.2, 0.3]" in text
    for target in TARGETS:
        assert target.text in text
    assert "**MISSED**" in text and "| met |" in text
    assert "| 8 | 2 | 2 x 1 | 210.0 | 10.0 | 30.0 | 70.0 | 15.0 | 45.0 | 0 | 0% |" in text  # a sweep point, c16 then c1
    assert "| 8 | 2 | 2 x default | 16 |" in text  # the stock handler sets no thread count
    assert "**The shipped config differs.**" in text
    assert "every worker READY again after 4.1 s" in text
    assert "| cat.jpg | tabby | tabby |" in text


def test_report_says_what_was_not_measured():
    data = results(recovery=None, recovery_note="not measured: a running server")
    data["image"].update(stock=[], stock_note="not measured: a running server", sweep=[], sweep_note="not measured: sweep")
    data["targets"] = evaluate(headline(data))
    text = render_markdown(data)
    assert text.count("not measured: a running server") == 2 and "not measured: sweep" in text
    assert "The sweep's choice: not measured in this run." in text


def test_sweep_table_puts_each_concurrency_side_by_side():
    headers, lines = sweep_table([row(4, 2, 1, 1, 80.0, p50=9.0), row(4, 2, 1, 16, 200.0, p50=70.0, errors=1)])
    assert headers[3:6] == ["req/s c16", "p50 ms c16", "p99 ms c16"] and headers[6] == "req/s c1"
    assert lines == [[4, 2, "2 x 1", 200.0, 70.0, 210.0, 80.0, 9.0, 27.0, 1, "0%"]]


def test_markdown_table_and_find():
    assert markdown_table(("a", "b"), [[1, None]]) == "| a | b |\n|---|---|\n| 1 |  |"
    rows = [{"x": 1, "y": 2}, {"x": 1, "y": 3}]
    assert find(rows, x=1, y=3) == rows[1] and find(rows, x=2) is None


def test_verdicts():
    assert [verdict(v) for v in (True, False, None)] == ["met", "**MISSED**", "not measured"]


def test_variant_config_sets_the_layout_and_keeps_the_rest():
    shipped = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "handler": {"runtime": "onnxruntime", "threads": 0, "topk": 5}}
    variant = variant_config(shipped, 2, 1, runtime="torch")
    assert variant == {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "handler": {"runtime": "torch", "threads": 1, "topk": 5}}
    assert shipped["handler"]["runtime"] == "onnxruntime"  # the shipped config is not touched


def test_write_variant_changes_only_the_config(tmp_path):
    mar = tmp_path / "m.mar"
    manifest = {"model": {"configFile": "m.yaml", "modelName": "m"}}
    with zipfile.ZipFile(mar, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.writestr("m.yaml", yaml.safe_dump({"minWorkers": 1, "handler": {"threads": 0}}))
        archive.writestr("model.onnx", b"\x00weights\xff" * 100)
    variant = write_variant(mar, tmp_path / "v.mar", variant_config(archive_config(mar), 2, 1))
    assert archive_config(variant) == {"minWorkers": 2, "maxWorkers": 2, "handler": {"threads": 1}}
    with zipfile.ZipFile(mar) as a, zipfile.ZipFile(variant) as b:
        assert a.namelist() == b.namelist()
        assert a.read("model.onnx") == b.read("model.onnx") and a.read("MAR-INF/MANIFEST.json") == b.read("MAR-INF/MANIFEST.json")


def test_top1_and_compare():
    assert top1({"tabby": 0.6, "tiger cat": 0.3}) == "tabby"
    summary = compare({"a.jpg": "tabby", "b.png": "tripod"}, {"served": {"a.jpg": "tabby", "b.png": "tripod"},
                                                              "stock": {"a.jpg": "tabby", "b.png": "error 503"}})
    assert summary["photos"] == 2
    assert (summary["served"]["identical"], summary["served"]["differ"]) == (2, [])
    assert (summary["stock"]["identical"], summary["stock"]["differ"]) == (1, ["b.png"])


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


def test_plot_lines_are_one_per_layout_and_delay():
    from scripts.measure.bench.plots import by_layout

    rows = [row(1, 2, 1, 16, 170.0, delay=1), row(4, 2, 1, 16, 200.0, delay=1), row(4, 2, 1, 16, 190.0, delay=2),
            row(4, 1, 2, 16, 160.0, delay=1), row(4, 2, 1, 1, 80.0, delay=1)]
    lines = {name: [(r["batch_size"], r["throughput_rps"]) for r in line] for name, line in by_layout(rows, 16).items()}
    assert lines == {"2 x 1, delay 1 ms": [(1, 170.0), (4, 200.0)], "2 x 1, delay 2 ms": [(1, 170.0), (4, 190.0)],
                     "1 x 2, delay 1 ms": [(4, 160.0)]}  # batch 1 never waits: it starts every line of its layout

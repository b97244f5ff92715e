"""scripts/measure/bench/gpu_sweep.py: the candidates' configs and labels, the choice, the time plan;
and the report's configurations table."""

from __future__ import annotations

import yaml

from handlers.config import ImageSettings
from models.registry import get_spec
from scripts.build.model_config import problems
from scripts.measure.bench.gpu_report import sweep_lines
from scripts.measure.bench.gpu_server import bench_config
from scripts.measure.bench.gpu_sweep import GPU_CANDIDATES, best, c1_bound_ms, candidate_config, fits, label, summary, uses_mps


def shipped(gpus: int = 1) -> dict:
    return bench_config(yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text()), gpus=gpus, dry_run=False)


def test_labels_name_what_changed():
    assert [label(changes) for changes in GPU_CANDIDATES][:5] == [
        "shipped", "compile=cudagraphs", "maxBatchDelay=2", "workers_per_gpu=4", "workers_per_gpu=4 mps=True"]
    assert label({"batchSize": 32, "maxBatchDelay": 2}) == "batchSize=32 maxBatchDelay=2"
    assert label({"handler": {"decode_threads": 8}}) == "decode_threads=8"
    assert len({label(changes) for changes in GPU_CANDIDATES}) == len(GPU_CANDIDATES)


def test_a_candidate_changes_only_its_settings_and_scales_workers_by_gpus():
    base = shipped(gpus=2)
    assert candidate_config(base, {}, 2, gpus=2) == base
    four = candidate_config(base, {"workers_per_gpu": 4}, 2, gpus=2)
    assert (four["minWorkers"], four["maxWorkers"]) == (8, 8) and four["handler"] == base["handler"]
    threads = candidate_config(base, {"handler": {"decode_threads": 8}}, 2, gpus=2)
    assert threads["handler"] == {**base["handler"], "decode_threads": 8} and threads["batchSize"] == base["batchSize"]
    assert base["handler"]["decode_threads"] != 8  # the base is not changed in place
    assert summary(candidate_config(base, {"batchSize": 128}, 2, gpus=2))["batchSize"] == 128


def test_mps_is_how_a_candidate_runs_not_a_torchserve_setting():
    changes = {"workers_per_gpu": 4, "mps": True}
    config = candidate_config(shipped(), changes, 2, gpus=1)
    assert uses_mps(changes) and not uses_mps({"workers_per_gpu": 4})
    assert "mps" not in config and config == candidate_config(shipped(), {"workers_per_gpu": 4}, 2, gpus=1)


def test_every_gpu_candidate_is_a_valid_gpu_config():
    """A typo in a candidate would only show on the GPU host, as a failed or misleading row: each config
    passes make archive's check here (TorchServe's keys and values, the handler settings)."""
    for changes in GPU_CANDIDATES:
        assert problems(candidate_config(shipped(), changes, 2, gpus=1), ImageSettings) == [], label(changes)


def row(name: str, rps: float, p99: float | None, not_ok: int = 0, c1: float | None = 4.0) -> dict:
    return {"label": name, "throughput_rps": rps, "p99_ms": p99, "not_ok": not_ok, "c1_p50_ms": c1}


def test_best_is_the_fastest_within_the_p99_bound_and_without_errors():
    rows = [row("shipped", 3000, 60), row("workers_per_gpu=4", 5000, 140), row("batchSize=128", 4000, 90),
            row("decode_threads=8", 4500, 80, not_ok=3), row("broken", 0, None)]
    assert best(rows) == "batchSize=128"
    assert best(rows, p99_bound_ms=200) == "workers_per_gpu=4"
    assert best([row("workers_per_gpu=4", 5000, 140)]) is None


def test_best_keeps_c1_within_the_bound_when_it_has_one():
    """Issue #20: c1 p50 at most 5 ms above the handler's batch of one. A lone request waits the whole
    maxBatchDelay, so a long delay can win c128 and lose c1."""
    assert c1_bound_ms(2.6) == 7.6 and c1_bound_ms(None) is None
    rows = [row("shipped", 3000, 60, c1=9.0), row("maxBatchDelay=2", 2900, 62, c1=6.0), row("cut short", 3100, 50, c1=None)]
    assert best(rows) == "cut short"  # no bound: c1 is not judged
    assert best(rows, c1_bound=7.6) == "maxBatchDelay=2"
    assert best(rows, c1_bound=5.0) is None


def test_a_candidate_starts_only_if_the_slowest_so_far_fits():
    assert fits(100, []) and not fits(50, [])  # before any ran: the first guess, 60 s
    assert fits(35, [20, 30]) and not fits(25, [20, 30])


def test_the_report_shows_the_choice_and_what_time_left_out():
    sweep = {"model": "efficientnet_lite0", "plan": {"concurrency": 128, "settle_s": 3.0, "cell_s": 8.0, "c1_s": 3.0},
             "p99_bound_ms": 100, "c1_bound_ms": 7.6, "rows": [{**row("shipped", 3000, 60), **summary(shipped()), "p50_ms": 30}],
             "skipped": ["workers_per_gpu=3"], "best": "shipped"}
    text = "\n".join(sweep_lines(sweep))
    assert "| shipped | 64 | 5 | 2 |" in text and "| 60 | 0 | 4.0 |" in text  # p99, errors, c1 p50
    assert "p99 <= 100 ms, c1 p50 <= 7.6 ms and no error: **shipped**" in text and "then 3 s at c1" in text
    older = "\n".join(sweep_lines({**sweep, "c1_bound_ms": None, "plan": {"concurrency": 128, "settle_s": 3.0, "cell_s": 8.0}}))
    assert "p99 <= 100 ms and no error: **shipped**" in older  # results.json from before c1 was swept
    assert "Not measured (no time left in the budget): workers_per_gpu=3" in text
    assert "**none (no configuration kept p99 <= 100 ms, c1 p50 <= 7.6 ms without an error)**" in "\n".join(
        sweep_lines({**sweep, "best": None}))
    failed = "\n".join(sweep_lines({**sweep, "failed": [{"label": "compile=cudagraphs", "error": "TimeoutError: gave up"}]}))
    assert "Failed, so not in the table:\n\n- compile=cudagraphs: TimeoutError: gave up" in failed

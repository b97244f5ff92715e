"""`make archive VARIANT=gpu` (scripts/build/gpu_config.py): archives with each model's GPU settings for a
host's own TorchServe (`make serve VARIANT=gpu`), in a store of their own, with the worker count of the
GPUs that host has; the GPU image's builder runs the same make with no worker count."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from models.registry import get_spec
from scripts.build.gpu_config import gpu_variant, main, with_workers
from scripts.build.weights import export

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "models" / "configs"


def archived_config(archive: Path) -> dict:
    with zipfile.ZipFile(archive) as mar:
        return yaml.safe_load(mar.read(json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["configFile"]))


def make(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["make", "--no-print-directory", "-s", "-C", str(REPO), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_a_variant_for_this_host_fixes_the_workers_per_gpu(tmp_path):
    target = tmp_path / "out" / "minilm.yaml"
    assert main([str(CONFIGS / "minilm.yaml"), "--out", str(target), "--workers-per-gpu", "3"]) == 0
    variant = yaml.safe_load(target.read_text())
    assert variant == with_workers(gpu_variant(yaml.safe_load((CONFIGS / "minilm.yaml").read_text())), 3, torch.cuda.device_count())
    assert variant["deviceType"] == "gpu" and variant["minWorkers"] == variant["maxWorkers"] == 3 * max(1, torch.cuda.device_count())


def test_without_a_worker_count_the_variant_leaves_it_to_torchserve(tmp_path):
    """The image's form: its entrypoint sets the workers per visible GPU when it starts."""
    assert main([str(CONFIGS / "efficientnet_lite0.yaml"), "--out", str(tmp_path / "e.yaml")]) == 0
    variant = yaml.safe_load((tmp_path / "e.yaml").read_text())
    assert variant == gpu_variant(yaml.safe_load((CONFIGS / "efficientnet_lite0.yaml").read_text())) and "minWorkers" not in variant


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return export(get_spec("efficientnet_lite0"), tmp_path_factory.mktemp("weights")).parent


def test_make_archive_variant_gpu(tmp_path, weights):
    """The GPU settings in the archive, its own default store, and no rebuild while nothing changed."""
    assert make("print-MODEL_STORE", "VARIANT=gpu").stdout.strip() == "model-store-gpu"
    assert make("print-MODEL_STORE").stdout.strip() == "model-store"
    store = tmp_path / "model-store-gpu"
    build = ("archive", "VARIANT=gpu", "MODELS=efficientnet_lite0", "WORKFLOWS=", "WORKERS_PER_GPU=3",
             f"WEIGHTS_DIR={weights}", f"MODEL_STORE={store}", f"GPU_CONFIGS={tmp_path / 'gpu-configs'}")
    make(*build)
    archive = store / "efficientnet_lite0.mar"
    expected = with_workers(gpu_variant(yaml.safe_load((CONFIGS / "efficientnet_lite0.yaml").read_text())), 3, torch.cuda.device_count())
    assert archived_config(archive) == expected
    built = archive.stat().st_mtime_ns
    make(*build)
    assert archive.stat().st_mtime_ns == built, "rebuilt with nothing changed"
    make(*build[:-4], "WORKERS_PER_GPU=1", *build[-3:])
    assert archived_config(archive)["minWorkers"] == max(1, torch.cuda.device_count())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without a CUDA GPU")
def test_make_serve_variant_gpu_is_refused_before_any_archive_is_built(tmp_path):
    """On a CPU host the refusal comes first, not after minutes of exporting and archiving."""
    store = tmp_path / "model-store-gpu"
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "serve", "VARIANT=gpu", f"MODEL_STORE={store}",
                           f"WEIGHTS_DIR={tmp_path / 'weights'}", f"GPU_CONFIGS={tmp_path / 'gpu-configs'}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "the GPU archives need a CUDA GPU and torch sees none" in done.stderr
    assert not store.exists() and not (tmp_path / "weights").exists() and not (tmp_path / "gpu-configs").exists()


def test_make_kserve_store_variant_gpu_leaves_the_worker_count_to_the_pod(tmp_path, weights):
    """deploy/kserve/gpu's volume: the GPU image's entrypoint sets the workers per GPU the pod sees, so
    the archives carry none, whatever WORKERS_PER_GPU make archive uses on this host."""
    assert make("print-KSERVE_STORE", "VARIANT=gpu").stdout.strip() == "build/kserve-gpu"
    out = tmp_path / "kserve-gpu"
    make("kserve-store", "VARIANT=gpu", "MODELS=efficientnet_lite0", "WORKFLOWS=", f"WEIGHTS_DIR={weights}",
         f"MODEL_STORE={tmp_path / 'store'}", f"GPU_CONFIGS={tmp_path / 'gpu-configs'}", f"KSERVE_STORE={out}")
    config = archived_config(out / "model-store" / "efficientnet_lite0.mar")
    assert config == gpu_variant(yaml.safe_load((CONFIGS / "efficientnet_lite0.yaml").read_text())) and "minWorkers" not in config
    assert "load_models=efficientnet_lite0=efficientnet_lite0.mar" in (out / "config" / "config.properties").read_text()

"""docker/entrypoint.sh's environment: workers per GPU (SERVE_WORKERS_PER_GPU x the GPUs nvidia-smi
lists becomes TorchServe's default_workers_per_model, TS_DEFAULT_WORKERS_PER_MODEL, unless that is set
already) and where the front listens (SERVE_FRONT, or SERVE_V2_FRONT, its old name).

No GPU here, so `nvidia-smi` is a script on PATH that lists N GPUs as the real one does, and
`python` one that prints what the entrypoint exported, and the front's address it was given,
instead of starting the server. tests/integration/test_entrypoint.py runs it with the real one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from scripts.client.torchserve import REPO

NVIDIA_SMI = """#!/bin/sh
[ "$1" = --list-gpus ] || exit 9
i=0; while [ $i -lt {gpus} ]; do echo "GPU $i: NVIDIA H200 (UUID: GPU-$i)"; i=$((i+1)); done
"""
PYTHON = '#!/bin/sh\necho "workers=${TS_DEFAULT_WORKERS_PER_MODEL:-unset}"\n'
PYTHON_FRONT = '#!/bin/sh\nfront=none\nwhile [ $# -gt 0 ]; do [ "$1" = --front ] && front=$2; shift; done\necho "front=$front"\n'


def run_entrypoint(tmp_path: Path, gpus: int | None = None, python: str = PYTHON, **env: str) -> str:
    bin_dir = tmp_path / f"bin-{len(list(tmp_path.glob('bin-*')))}"  # fresh per call: no nvidia-smi left from the last
    bin_dir.mkdir()
    scripts = {"python": python, **({"nvidia-smi": NVIDIA_SMI.format(gpus=gpus)} if gpus is not None else {})}
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SERVE_WORKDIR": str(tmp_path), "SERVE_WORKFLOWS": ""}
    result = subprocess.run(["sh", str(REPO / "docker" / "entrypoint.sh")], env={**base, **env},
                            capture_output=True, text=True, check=True, timeout=30)
    return result.stdout.strip()


@pytest.mark.parametrize("gpus, per_gpu, expected", [(1, "2", "2"), (4, "2", "8"), (2, "1", "2"), (0, "2", "unset")])
def test_workers_follow_the_gpus(tmp_path, gpus, per_gpu, expected):
    assert run_entrypoint(tmp_path, gpus, SERVE_WORKERS_PER_GPU=per_gpu) == f"workers={expected}"


def test_an_explicit_default_workers_per_model_wins(tmp_path):
    assert run_entrypoint(tmp_path, 4, SERVE_WORKERS_PER_GPU="2", TS_DEFAULT_WORKERS_PER_MODEL="3") == "workers=3"


def test_the_cpu_image_and_a_host_without_nvidia_smi_are_left_alone(tmp_path):
    assert run_entrypoint(tmp_path, 4) == "workers=unset"  # the CPU image sets no SERVE_WORKERS_PER_GPU
    assert run_entrypoint(tmp_path, None, SERVE_WORKERS_PER_GPU="2") == "workers=unset"


@pytest.mark.parametrize("env, expected", [
    ({"SERVE_FRONT": "0.0.0.0:8090"}, "0.0.0.0:8090"),   # the image's ENV
    ({}, "none"),
    ({"SERVE_FRONT": ""}, "none"),                       # -e SERVE_FRONT= turns it off
    ({"SERVE_V2_FRONT": "127.0.0.1:9000"}, "127.0.0.1:9000"),                          # the old name, in a kept manifest
    ({"SERVE_FRONT": "0.0.0.0:8090", "SERVE_V2_FRONT": ""}, "none"),                   # the old way to turn it off still does
    ({"SERVE_FRONT": "0.0.0.0:8090", "SERVE_V2_FRONT": "127.0.0.1:9000"}, "127.0.0.1:9000"),
])
def test_the_front_listens_where_the_environment_says(tmp_path, env, expected):
    assert run_entrypoint(tmp_path, python=PYTHON_FRONT, **env) == f"front={expected}"

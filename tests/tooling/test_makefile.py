"""The Makefile's own behaviour: engine lookups only where an engine is used, archives rebuilt when
what they are built from changes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scripts.client.torchserve import REPO

ENGINE_SCRIPT = '#!/bin/sh\necho "$0 $*" >> {log}\nexit 1\n'


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    env.pop("MAKEFLAGS", None)
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True, env=env, timeout=60)


def engines_on_path(tmp_path: Path) -> tuple[str, Path]:
    """docker and podman that only log their calls, ahead of the real ones on PATH."""
    log = tmp_path / "engine-calls.log"
    for name in ("docker", "podman"):
        (tmp_path / name).write_text(ENGINE_SCRIPT.format(log=log))
        (tmp_path / name).chmod(0o755)
    return f"{tmp_path}{os.pathsep}{os.environ['PATH']}", log


def test_non_container_targets_never_look_for_an_engine(tmp_path):
    """`make -s print-MODELS` runs inside the image build: it must not probe `docker info`."""
    path, log = engines_on_path(tmp_path)
    assert make("-s", "print-MODELS", path=path).stdout.split() == ["efficientnet_lite0", "minilm"]
    assert make("-s", "print-GATEWAY_IMAGE", path=path).stdout.strip().endswith("nginx-unprivileged:1.27-alpine")
    assert not log.exists()
    assert "podman" in make("-n", "docker", path=path).stdout  # a container target does look: docker info failed
    assert "docker info" in log.read_text()


def test_archives_depend_on_what_builds_them():
    """A change to a model's module, the export or the archive script rebuilds the archive (dry run;
    where the archives are already built, only such a change makes make plan a rebuild)."""
    sources = make("-s", "print-MODEL_SRC").stdout.split() + make("-s", "print-ARCHIVE_SRC").stdout.split()
    assert {"models/registry.py", "scripts/build/weights.py", "scripts/build/onnx_export.py", "scripts/build/archives.py",
            "handlers/base.py"} <= set(sources)
    plan = make("-n", "-W", "models/registry.py", "model-store/efficientnet_lite0.mar").stdout
    assert "ts-bundle-export efficientnet_lite0" in plan and "ts-bundle-archive efficientnet_lite0" in plan
    plan = make("-n", "-W", "scripts/build/archives.py", "model-store/minilm.mar").stdout
    assert "ts-bundle-archive minilm" in plan


def test_the_front_address_and_its_old_name():
    """FRONT sets where make serve's front listens (doctor checks the same port); V2_FRONT, its old
    name, still does, and either one empty turns the front off."""
    def front_flag(*overrides: str) -> list[str]:
        (line,) = [line for line in make("-n", "doctor", *overrides).stdout.splitlines() if "ts-bundle-doctor" in line]
        words = line.split()
        return words[words.index("--front"):][:2] if "--front" in words else []
    assert front_flag() == ["--front", "127.0.0.1:8090"]
    assert front_flag("FRONT=0.0.0.0:9000") == ["--front", "0.0.0.0:9000"]
    assert front_flag("V2_FRONT=0.0.0.0:9001") == ["--front", "0.0.0.0:9001"]
    assert front_flag("FRONT=") == front_flag("V2_FRONT=") == []

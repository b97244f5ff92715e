"""What the docker and kube targets say when something is missing: no engine, no base image, no image."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.container.engine import ENV, REPO, which_engine


def make(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args], capture_output=True, text=True,
                          env=env or ENV, timeout=300)


def test_no_engine_names_the_engines_and_how_to_install_one(tmp_path):
    """PATH holds make and sh only: neither docker nor podman can be found."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "sh", "sed", "grep", "awk", "test"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found.startswith("/"):
            (bin_dir / tool).symlink_to(found)
    result = subprocess.run([str(bin_dir / "make"), "--no-print-directory", "-C", str(REPO), "docker"],
                            capture_output=True, text=True, env={"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/")})
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "looked for docker podman" in message and "apt-get install -y podman" in message, message


def test_a_missing_base_image_that_cannot_be_pulled_names_make_docker_base():
    if which_engine() is None:
        pytest.skip("no container engine")
    result = make("docker", f"ENGINE={which_engine()}", "BASE_IMAGE=localhost:1/no-such-base:none")
    assert result.returncode != 0
    assert "run `make docker-base`" in result.stdout + result.stderr, result.stdout + result.stderr


def test_kube_play_without_the_image_says_to_build_it_first(monkeypatch, capsys):
    if which_engine() != "podman":
        pytest.skip("podman kube play needs podman")
    monkeypatch.setenv("CONTAINERS_CONF", ENV["CONTAINERS_CONF"])
    sys.path.insert(0, str(REPO / "deploy"))
    import kube_play

    docs = kube_play.render()
    for doc in docs:
        for container in kube_play.containers(doc):
            if "torchserve-bundle" in container["image"]:
                container["image"] = "torchserve-bundle:no-such-tag"
    monkeypatch.setattr(kube_play, "render", lambda overlay=None: docs)
    assert kube_play.up() == 1
    assert "no image torchserve-bundle:no-such-tag here: build it first (make docker-base docker)" in capsys.readouterr().err

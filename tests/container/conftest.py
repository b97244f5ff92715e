"""The container tier: the image built ONCE per session from a clean clone, as a user builds it.

    make test PYTEST_ARGS=tests/container                  # builds: git clone, make docker-base docker
    CONTAINER_IMAGE=torchserve-bundle:cpu make test ...    # reuse an image already built (own iteration)

A clone holds only committed files: what it builds is what the repo ships. The build reuses the
engine's layer cache, so an unchanged tree rebuilds in about a minute. No engine (podman or a
docker daemon): every test here is skipped, with the reason; `.ci/run` installs podman with apt.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

import pytest

from tests.container.engine import IMAGE, REPO, Container, engine, which_engine


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> str:
    if which_engine() is None:
        pytest.skip("no container engine: podman not installed and no docker daemon answers "
                    "(apt-get install -y podman runc mmdebstrap uidmap, as .ci/run does)")
    reuse = os.environ.get("CONTAINER_IMAGE")
    if reuse:
        engine("image", "inspect", reuse)  # fails loudly on a wrong name rather than skipping
        return reuse
    clone = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    previous = image_id(IMAGE)
    started = time.monotonic()
    build = subprocess.run(["make", "-C", str(clone), "docker-base", "docker", f"ENGINE={which_engine()}"],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-6000:] + build.stderr[-6000:]
    print(f"\ncontainer tier: make docker-base docker from a clean clone took {time.monotonic() - started:.0f} s")
    if previous and previous != image_id(IMAGE):
        # The image this build untagged: each rebuild would otherwise leave ~7 GB dangling. The
        # layers the new image shares stay; rmi refuses (harmlessly) if a container still uses it.
        engine("rmi", previous, check=False)
    return IMAGE


def image_id(name: str) -> str | None:
    found = engine("image", "inspect", "--format", "{{.Id}}", name, check=False)
    return found.stdout.strip() or None if found.returncode == 0 else None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def started():
    """Containers started by a test, removed after it (with any volumes it names)."""
    containers: list[Container] = []
    volumes: list[str] = []
    yield containers, volumes
    for container in containers:
        container.remove()
    for volume in volumes:
        engine("volume", "rm", "-f", volume, check=False)

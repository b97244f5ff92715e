"""`make docker-run` itself, as the quickstart runs it (docs/docker.md): the image on the documented
ports (8080 and 8090 on every interface, management 8081 and metrics 8082 on loopback), snapshots
in the torchserve-snapshots volume, and Ctrl-C stopping it and removing the container.

Skipped, saying why, where those ports, that container name or that volume are taken already: a
developer's own `make serve` or snapshots are never touched."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.container.engine import ENV, IMAGE, REPO, Container, engine, http, which_engine

NAME, VOLUME = "torchserve", "torchserve-snapshots"  # the Makefile's docker-run
PORTS = {"inference": 8080, "v2": 8090, "management": 8081, "metrics": 8082}
START_S, STOP_S = 120, 90
CAT = {"tabby", "tiger cat", "Egyptian cat"}


def taken(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def exists(kind: str, name: str) -> bool:
    return engine(kind, "exists", name, check=False).returncode == 0


@pytest.fixture(scope="module")
def docker_run(image, tmp_path_factory):
    if image != IMAGE:
        pytest.skip(f"make docker-run runs {IMAGE}, not CONTAINER_IMAGE={image}")
    if busy := [port for port in PORTS.values() if taken(port)]:
        pytest.skip(f"ports {busy} are in use here (make serve?): make docker-run publishes {sorted(PORTS.values())}")
    if exists("container", NAME) or exists("volume", VOLUME):
        pytest.skip(f"a container {NAME} or volume {VOLUME} exists already (yours): not touched")
    log_path = tmp_path_factory.mktemp("docker-run") / "make.out"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["make", "--no-print-directory", "-C", str(REPO), "docker-run", f"ENGINE={which_engine()}"],
                                   env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    container = Container(NAME, IMAGE, ports={api: PORTS[api] for api in ("inference", "management")})
    try:
        started = time.monotonic()
        while not exists("container", NAME):
            assert process.poll() is None, log_path.read_text()[-4000:]
            assert time.monotonic() - started < START_S, log_path.read_text()[-4000:]
            time.sleep(0.5)
        print(f"\ncontainer tier: make docker-run ready {container.wait_ready():.0f} s after podman run")
        yield container, process, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        engine("rm", "-f", NAME, check=False)
        engine("volume", "rm", "-f", VOLUME, check=False)


def test_serves_on_the_documented_ports(docker_run):
    container, _, _ = docker_run
    status, body, _ = container.predict("predictions/efficientnet_lite0", (REPO / "samples" / "cat.jpg").read_bytes())
    assert status == 200 and next(iter(body)) in CAT, body
    assert http("GET", f"http://127.0.0.1:{PORTS['v2']}/v2/health/ready")[0] == 200
    assert container.manage("GET", "/models")[0] == 200
    assert http("GET", f"http://127.0.0.1:{PORTS['metrics']}/metrics")[0] == 200


def test_management_and_metrics_are_published_on_loopback_only(docker_run):
    published = engine("port", NAME).stdout
    for port in (PORTS["inference"], PORTS["v2"]):
        assert f"{port}/tcp -> 0.0.0.0:{port}" in published, published
    for port in (PORTS["management"], PORTS["metrics"]):
        assert f"{port}/tcp -> 127.0.0.1:{port}" in published, published


def test_snapshots_go_to_the_named_volume(docker_run):
    container, _, _ = docker_run
    listing = container.exec("ls", "/home/model-server/logs/config").stdout
    assert exists("volume", VOLUME) and "startup.cfg" in listing, listing


def test_ctrl_c_stops_it_and_removes_the_container(docker_run):
    _, process, log_path = docker_run
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends the terminal's foreground group: make and podman
    process.wait(timeout=STOP_S)  # make itself dies of the SIGINT; podman passes it on to the container
    started = time.monotonic()
    while exists("container", NAME):  # --rm: gone once TorchServe has stopped
        assert time.monotonic() - started < STOP_S, log_path.read_text()[-4000:]
        time.sleep(0.5)

"""docker/entrypoint.sh run outside Docker with the container config (docker/config.properties):
a real prediction, the healthcheck, the front beside TorchServe, snapshots in the log folder,
and a clean stop on SIGTERM (the front's too).

It runs from a copy of just the files the Dockerfile's runtime stage puts in /app, so a file the
image lacks fails here too. Only what Docker would differ in is overridden: paths (SERVE_*),
and ports (TorchServe's own TS_*_ADDRESS and TS_GRPC_*_PORT, which the container config lets
environment variables set). Worker sockets are private already: scripts/serving/serve.py gives every
server its own Java tmpdir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from models.registry import get_spec
from scripts.build.archives import build_archive
from scripts.build.weights import export
from scripts.client.torchserve import REPO, TorchServe, free_port, poll_until


def runtime_app(target: Path) -> Path:
    """A copy of what the runtime stage COPYs into /app (`COPY <sources> /app/<folder>/`)."""
    for sources, folder in re.findall(r"^COPY (?!--)(.+) /app/(\S+)/$", (REPO / "Dockerfile").read_text(), flags=re.M):
        (target / folder).mkdir(parents=True, exist_ok=True)
        for source in sources.split():
            if (REPO / source).is_dir():  # COPY dir/ /app/dir/: its contents
                shutil.copytree(REPO / source, target / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(REPO / source, target / folder)  # keeps the entrypoint executable
    return target


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    return runtime_app(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The container's environment, pointed at a temp model store holding efficientnet_lite0 alone."""
    root = tmp_path_factory.mktemp("entrypoint")
    weights = export(get_spec("efficientnet_lite0"), root / "weights").parent
    build_archive("efficientnet_lite0", weights, root / "model-store")
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SERVE_WORKDIR": str(root),
        "SERVE_MODEL_STORE": str(root / "model-store"),
        "SERVE_LOG_DIR": str(root / "logs"),
        "SERVE_WORKFLOWS": "",  # the session server covers workflow registration
        "SERVE_FRONT": f"127.0.0.1:{free_port()}",  # the image turns it on (on 0.0.0.0:8090)
        **{f"TS_{api.upper()}_ADDRESS": f"http://127.0.0.1:{free_port()}" for api in ("inference", "management", "metrics")},
        **{f"TS_GRPC_{api}_PORT": str(free_port()) for api in ("INFERENCE", "MANAGEMENT")},  # not 7070/7071: make serve may hold them
    }


@pytest.fixture(scope="module")
def container(env, app) -> TorchServe:
    root = Path(env["SERVE_WORKDIR"])
    urls = {api: env[f"TS_{api.upper()}_ADDRESS"] for api in ("inference", "management", "metrics")}
    with open(root / "serve.out", "wb") as log:
        process = subprocess.Popen([str(app / "docker" / "entrypoint.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    server = TorchServe(root, urls, process)
    try:
        server.wait_until_ready()
        # /ping is Healthy with one worker up; the tests below want every worker READY (serve.py's ready: line)
        poll_until(lambda: "ready: " in (root / "serve.out").read_text(), 240, "the ready: line")
        yield server
    finally:
        if process.poll() is None:
            server.stop()


@pytest.fixture(scope="module")
def healthcheck(env, app):
    """Run the image's healthcheck as the HEALTHCHECK instruction and the k8s probes do (--live: liveness)."""
    return lambda *args: subprocess.run([sys.executable, str(app / "docker" / "healthcheck.py"), *args], env=env,
                                        capture_output=True, text=True, timeout=30)


def test_the_container_config_serves_every_archive_in_the_store(container, app):
    response = container.predict("efficientnet_lite0", data=(REPO / "samples" / "cat.jpg").read_bytes())
    assert response.status_code == 200, response.text
    assert next(iter(response.json())) in {"tabby", "tiger cat", "Egyptian cat"}
    assert f"Config file: {app / 'docker' / 'config.properties'}" in (container.workdir / "serve.out").read_text()


def test_healthcheck_reads_the_key_file(container, healthcheck):
    result = healthcheck()
    assert result.returncode == 0, result.stderr
    assert "ready" in result.stdout  # the readiness check: every worker READY
    live = healthcheck("--live")
    assert live.returncode == 0 and "Healthy" in live.stdout, live.stderr


def test_healthcheck_renews_an_expired_management_key(container, healthcheck):
    key_file = container.workdir / "key_file.json"
    keys = json.loads(key_file.read_text())
    old_key = keys["management"]["key"]
    keys["management"]["expiration time"] = "2000-01-01T00:00:00Z"
    key_file.write_text(json.dumps(keys))
    assert healthcheck().returncode == 0
    assert container.keys["management"] != old_key


def test_healthcheck_renews_an_expired_inference_key(container, healthcheck):
    key_file = container.workdir / "key_file.json"
    keys = json.loads(key_file.read_text())
    old_key = keys["inference"]["key"]
    keys["inference"]["expiration time"] = "2000-01-01T00:00:00Z"  # as if token_expiration_min had passed
    key_file.write_text(json.dumps(keys))
    assert healthcheck("--live").returncode == 0
    assert container.keys["inference"] != old_key  # TorchServe rewrote the file
    cat = (REPO / "samples" / "cat.jpg").read_bytes()
    assert container.predict("efficientnet_lite0", data=cat).status_code == 200
    old = container.predict("efficientnet_lite0", data=cat, headers={"Authorization": f"Bearer {old_key}"})
    assert old.json()["type"] == "InvalidKeyException"


def serve_process(container) -> psutil.Process:
    """The entrypoint execs scripts/serving/serve.py: the container's own process."""
    serve = psutil.Process(container.process.pid)
    assert "scripts.serving.serve" in serve.cmdline()
    return serve


def listening_ports(process: psutil.Process) -> set[int]:
    return {c.laddr.port for c in process.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_the_front_is_served_by_serve_py_itself(container, env):
    """SERVE_FRONT -> scripts/serving/serve.py --front: the front listens in serve.py's own process
    (no second process to watch), and the ready: line names it."""
    front = f"http://{env['SERVE_FRONT']}"
    poll_until(lambda: "ready: " in (container.workdir / "serve.out").read_text(), 240, "the ready: line")
    (ready,) = [line for line in (container.workdir / "serve.out").read_text().splitlines() if line.startswith("ready: ")]
    assert ready.endswith(f"; front: {front}"), ready
    assert requests.get(f"{front}/v2/health/ready", timeout=30).json() == {"ready": True}
    assert requests.get(f"{front}/v2/models/efficientnet_lite0/ready", timeout=30).status_code == 200
    assert int(env["SERVE_FRONT"].rpartition(":")[2]) in listening_ports(serve_process(container))


def test_snapshots_go_to_the_log_dir(container):
    startup = sorted((container.workdir / "logs" / "config").glob("*-startup.cfg"))
    assert startup, "no startup snapshot in SERVE_LOG_DIR/config"
    assert "efficientnet_lite0.mar" in startup[-1].read_text()


def test_the_prestop_hook_makes_readiness_fail_at_once(container, healthcheck, env):
    """deploy/k8s's preStop: `healthcheck.py --stopping N` marks the server stopping; the probe and
    the front's /v2/health/ready say not ready while it still serves (the next test stops it)."""
    assert healthcheck().returncode == 0
    marked = healthcheck("--stopping", "0")
    assert marked.returncode == 0, marked.stderr
    probe = healthcheck()
    assert probe.returncode == 1 and "not ready: stopping: preStop hook" in probe.stderr
    assert requests.get(f"http://{env['SERVE_FRONT']}/v2/health/ready", timeout=30).status_code == 400
    assert healthcheck("--live").returncode == 0  # alive: liveness must not restart a pod that is draining
    cat = (REPO / "samples" / "cat.jpg").read_bytes()
    assert container.predict("efficientnet_lite0", data=cat).status_code == 200


def test_sigterm_stops_torchserve_java_and_the_front(container, healthcheck, env):
    java = [p for p in psutil.process_iter(["cmdline"]) if str(container.workdir) in " ".join(p.info["cmdline"] or [])
            and "org.pytorch.serve.ModelServer" in (p.info["cmdline"] or [])]
    assert len(java) == 1
    serve = serve_process(container)
    assert container.stop() == 0
    assert not java[0].is_running()
    assert not serve.is_running()
    with pytest.raises(requests.ConnectionError):  # the front went with it
        requests.get(f"http://{env['SERVE_FRONT']}/v2/health/live", timeout=5)
    log = (container.workdir / "serve.out").read_text()
    assert "serve: SIGTERM: not ready from now" in log and "serve: stopped " in log
    assert not (container.workdir / "serve.stopping").exists()
    assert healthcheck().returncode == 1
    assert healthcheck("--live").returncode == 1

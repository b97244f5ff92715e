"""scripts/serving/v2_sidecar.py beside the session's real TorchServe: a front that dies on its own is
started again and answers; stop() ends it; a SIGKILLed parent (serve.py) takes its front along."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest
import requests

from scripts.client.torchserve import REPO, free_port, poll_until
from scripts.serving.v2_sidecar import Sidecar

PARENT = """
import subprocess, sys, time
from scripts.serving.v2_sidecar import Sidecar
sidecar = Sidecar(sys.argv[1], sys.argv[2], sys.argv[3], [], stdout=subprocess.DEVNULL)  # this pipe: the pid alone
problem = sidecar.start_when_up(120)
print(problem or sidecar.process.pid, flush=True)
time.sleep(600)
"""


def live(url: str) -> int | None:
    try:
        return requests.get(f"{url}/v2/health/live", timeout=5).status_code
    except requests.ConnectionError:
        return None


@pytest.fixture
def sidecar(server):
    sidecar = Sidecar(f"127.0.0.1:{free_port()}", server.workdir / "config.properties", server.key_file, [])
    yield sidecar
    sidecar.stop()


def test_a_front_that_dies_is_started_again_and_answers(sidecar):
    assert sidecar.start_when_up(120) is None
    first = sidecar.process
    os.kill(first.pid, signal.SIGKILL)
    poll_until(lambda: sidecar.restarts == 1 and live(sidecar.url) == 200, 60, "the front started again")
    assert sidecar.process.pid != first.pid and first.poll() == -signal.SIGKILL
    sidecar.stop()
    assert sidecar.process.poll() is not None and live(sidecar.url) is None


def test_a_killed_parent_takes_its_front_along(server):
    listen = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, listen, str(server.workdir / "config.properties"),
                               str(server.key_file)], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        started = parent.stdout.readline().strip()
        assert started.isdigit(), started
        front = psutil.Process(int(started))
        assert live(f"http://{listen}") == 200
        parent.kill()  # as a SIGKILLed serve.py: no stop() runs
        parent.wait()
        front.wait(timeout=15)  # raises psutil.TimeoutExpired while the orphan still runs
        assert live(f"http://{listen}") is None
    finally:
        parent.kill()
        parent.stdout.close()

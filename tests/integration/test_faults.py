"""Faults, on a server of this module's own (started with snapshots on, as the container runs):
the worker process SIGKILLed under load, then TorchServe stopped and started again.

  - SIGKILL: TorchServe starts a new worker; only the requests in flight may fail, with "Worker
    died.": 507 when TorchServe has already read the worker's exit code 137, else 500 (its
    WorkerThread's default; a race, both seen here); the recovery time is measured and reported.
  - Restart: the models, versions, default version, worker counts and batch settings come back
    from the snapshot folder (<log-dir>/config) through scripts/serving/serve.py --snapshots.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scripts.client.torchserve import REPO, TorchServe, poll_until
from scripts.measure.bench.load_client import load_model
from tests.integration.figures import record

pytestmark = pytest.mark.reliability

MODEL = "efficientnet_lite0"
PHOTO = (REPO / "samples" / "cat.jpg").read_bytes()
KILL_LOAD, KILL_CONCURRENCY = 160, 8
SERVED_BEFORE_KILL = 16
RECOVERY_TARGET_S = 10
"""The goal (docs/reliability.md states the measured figure against it)."""
RECOVERY_LIMIT_S = 60
"""What the test asserts: a loaded 2-core CI box must not fail on a slow model load."""
WORKER_DIED = "Worker died."
WORKER_DIED_STATUSES = (500, 507)  # 507 only if the JVM saw exit code 137 before answering (module docstring)


@dataclass
class OwnServer:
    """One TorchServe for this module, restartable in place (same workdir, snapshot folder, store)."""

    workdir: Path
    model_store: Path
    server: TorchServe | None = None

    def start(self) -> TorchServe:
        """Start, and wait for every worker: /ping says Healthy while workers are still loading."""
        args = ("--snapshots", "--log-dir", str(self.workdir / "state"))
        self.server = TorchServe.start(self.workdir, self.model_store, f"{MODEL}={MODEL}.mar", extra_args=args)
        poll_until(lambda: all_ready(self.server), 240, "READY workers", interval_s=0.1)
        return self.server

    def restart(self) -> TorchServe:
        assert self.server.stop() == 0
        (self.workdir / "key_file.json").unlink()  # the new server writes new keys; don't read the old ones
        return self.start()


@pytest.fixture(scope="module")
def own(tmp_path_factory, model_store) -> OwnServer:
    own = OwnServer(tmp_path_factory.mktemp("faults"), model_store)
    own.start()
    yield own
    assert own.server.stop() == 0


def all_ready(server: TorchServe) -> bool:
    versions = server.manage("GET", f"/models/{MODEL}/all").json()
    return all(len(v["workers"]) >= v["minWorkers"] and all(w["status"] == "READY" for w in v["workers"]) for v in versions)


def workers(server: TorchServe, model: str = MODEL) -> list[dict]:
    response = server.manage("GET", f"/models/{model}")
    assert response.status_code == 200, response.text
    return response.json()[0]["workers"]


def recovered(server: TorchServe, before: list[dict], killed: int) -> bool:
    """As many READY workers as before the kill, the killed one not among them."""
    ready = [w for w in workers(server) if w["status"] == "READY"]
    return len(ready) == len(before) and killed not in {w["pid"] for w in ready}


def test_sigkill_of_the_worker_under_load(own):
    server = own.server
    before = workers(server)
    old = before[0]  # the shipped config may run several workers: kill one, wait for all of them READY again
    assert all(w["status"] == "READY" for w in before)
    with ThreadPoolExecutor(1) as pool:
        loading = pool.submit(load_model, server, MODEL, PHOTO, "application/octet-stream", KILL_LOAD, KILL_CONCURRENCY)
        poll_until(lambda: server.metrics(MODEL).get("HandlerItems", 0) >= SERVED_BEFORE_KILL, 120, "load", interval_s=0.1)
        os.kill(old["pid"], signal.SIGKILL)
        killed = time.monotonic()
        poll_until(lambda: recovered(server, before, old["pid"]), RECOVERY_LIMIT_S, "a new READY worker", interval_s=0.1)
        ready_s = time.monotonic() - killed
        assert server.predict(MODEL, data=PHOTO).status_code == 200
        answered_s = time.monotonic() - killed
        result = loading.result()

    failed = result.answered - result.statuses[200]
    record("worker SIGKILL under load", requests=KILL_LOAD, concurrency=KILL_CONCURRENCY, failed=failed,
           lost=result.lost, statuses=dict(result.statuses), new_worker_ready_s=round(ready_s, 1),
           first_answer_s=round(answered_s, 1), target_s=RECOVERY_TARGET_S)
    assert result.lost == 0 and not result.failures, result.summary()
    assert failed <= KILL_CONCURRENCY, "more requests failed than were in flight"
    assert set(result.statuses) <= {200, *WORKER_DIED_STATUSES}
    assert all(line[:3] in map(str, WORKER_DIED_STATUSES) and WORKER_DIED in line for line in result.error_bodies), result.error_bodies
    assert answered_s <= RECOVERY_LIMIT_S


def model_state(server: TorchServe) -> dict:
    """What a restart must keep: per version its settings and worker count, and the default."""
    versions = server.manage("GET", f"/models/{MODEL}/all").json()
    keys = ("modelUrl", "minWorkers", "maxWorkers", "batchSize", "maxBatchDelay")
    state = {v["modelVersion"]: {**{k: v[k] for k in keys}, "workers": len(v["workers"])} for v in versions}
    default = server.manage("GET", f"/models/{MODEL}").json()[0]["modelVersion"]
    return {"default": default, "versions": state}


def test_restart_restores_models_from_the_snapshot(own):
    server = own.server
    params = {"url": f"{MODEL}_v2.mar", "batch_size": 4, "max_batch_delay": 50, "synchronous": "true"}
    assert server.manage("POST", "/models", params=params).status_code == 200
    # workers: model-config.yaml's minWorkers wins over initial_workers at registration; scaling sets them
    scale = {"min_worker": 2, "max_worker": 2, "synchronous": "true"}
    assert server.manage("PUT", f"/models/{MODEL}/2.0", params=scale).status_code == 200
    assert server.manage("PUT", f"/models/{MODEL}/2.0/set-default").status_code == 200
    before = model_state(server)
    assert before["default"] == "2.0" and before["versions"]["2.0"]["workers"] == 2

    started = time.monotonic()
    server = own.restart()
    record("restart from snapshot", seconds=round(time.monotonic() - started, 1), state=before)

    assert "resuming the models of snapshot" in (own.workdir / "serve.out").read_text()
    assert model_state(server) == before
    for version in ("1.0", "2.0"):
        assert server.predict(f"{MODEL}/{version}", data=PHOTO).status_code == 200


def test_a_frontend_out_of_heap_ends_the_server_as_a_failure(tmp_path):
    """The shipped `vmargs=-XX:+ExitOnOutOfMemoryError` (docs/security.md): a Java heap exhausted by
    one form of a million fields (TorchServe decodes every field before it looks the model up) ends
    the server with a failure status a restart policy acts on, not a frontend serving on with the
    threads the error killed. The heap is made small here; in a 4 GiB container it is 1 GiB."""
    store = tmp_path / "store"
    store.mkdir()
    server = TorchServe.start(tmp_path, store, "", until="ping", env={"JAVA_TOOL_OPTIONS": "-Xmx64m"})
    try:
        form = b"&".join([b"f=x"] * 1_000_000)
        with pytest.raises(requests.ConnectionError):
            requests.post(server.url("inference", "/predictions/any"), data=form, timeout=120,
                          headers={**server.auth("inference"), "Content-Type": "application/x-www-form-urlencoded"})
        code = server.process.wait(timeout=60)
    finally:
        if server.process.poll() is None:
            server.stop()
    console = (tmp_path / "serve.out").read_text(errors="replace")
    assert "Terminating due to java.lang.OutOfMemoryError" in console, console[-2000:]
    assert code != 0 and "serve: TorchServe exited on its own" in console, console[-2000:]

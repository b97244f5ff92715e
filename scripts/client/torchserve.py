"""The client of a running TorchServe: attach to one (URLs + key file) or start one on free ports.

    client = Client.attach("http://127.0.0.1:8080", "http://127.0.0.1:8081", Path("key_file.json"))
    client.predict("efficientnet_lite0", data=Path("samples/cat.jpg").read_bytes()).json()

    server = TorchServe.start(workdir, model_store, "minilm=minilm.mar")   # as `make serve` does
    server.predict("minilm", json={"text": "hello"}); server.stop()

Keys come from key_file.json through scripts/serving/keyfile.py (the one reader of its format); every
wait for the server goes through `poll_until` (scripts/serving/readiness.py), which has a deadline
and says what it waited for. The benchmark, the load client and the tests all talk to TorchServe here;
the running server's own code (scripts/serving/) does not import this module (requests, the harness).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import requests

from scripts.serving import readiness
from scripts.serving.keyfile import auth_header, read_keys
from scripts.serving.readiness import poll_until

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240
BIND_ATTEMPTS = 3
"""free_port's port can be taken by another process before TorchServe binds it (seen: its gRPC
port); TorchServe then exits, and is started again on fresh ports."""
APIS = ("inference", "management", "metrics")
SAMPLE = re.compile(r"^(\w+)\{(.*)\} ([0-9.eE+-]+|NaN)$")
METRIC_KEY_LABELS = ("Code", "le")  # labels besides the model's own that tell its series apart

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """A TorchServe's URLs ({"inference": ..., "management": ..., "metrics": ...}) and its key file."""

    def __init__(self, urls: dict[str, str], key_file: Path) -> None:
        self.urls = {api: url.rstrip("/") for api, url in urls.items()}
        self.key_file = Path(key_file)

    @classmethod
    def attach(cls, inference_url: str, management_url: str, key_file: Path, metrics_url: str | None = None) -> "Client":
        """A server someone else started (`make serve`): nothing is started or stopped here."""
        urls = {"inference": inference_url, "management": management_url}
        return cls({**urls, "metrics": metrics_url} if metrics_url else urls, key_file)

    @property
    def keys(self) -> dict[str, str]:
        """{"inference": key, "management": key, "API": key}, read afresh: TorchServe rewrites the file."""
        return read_keys(self.key_file)

    def auth(self, api: str) -> dict[str, str]:
        """The Authorization header for "inference" or "management" ({} with token auth off)."""
        return auth_header(self.key_file, api)

    def url(self, api: str, path: str) -> str:
        return f"{self.urls[api]}/{path.lstrip('/')}"

    def prediction_url(self, model: str) -> str:
        return self.url("inference", f"/predictions/{model}")

    def predict(self, model: str, data=None, headers: dict | None = None, timeout_s: float = 120,
                **kwargs) -> requests.Response:
        """POST /predictions/<model> (a "name/version" picks a version)."""
        return requests.post(self.prediction_url(model), data=data, headers={**self.auth("inference"), **(headers or {})},
                             timeout=timeout_s, **kwargs)

    def ping(self) -> bool:
        """/ping answers Healthy (it needs the inference key)."""
        response = requests.get(self.url("inference", "/ping"), headers=self.auth("inference"), timeout=2)
        return response.status_code == 200 and response.json().get("status") == "Healthy"

    def manage(self, method: str, path: str, timeout_s: float = 240, **kwargs) -> requests.Response:
        """Any management API call, e.g. manage("PUT", "/models/m", params={"min_worker": 2})."""
        return requests.request(method, self.url("management", path), headers=self.auth("management"),
                                timeout=timeout_s, **kwargs)

    def describe(self, model: str) -> requests.Response:
        """GET /models/<model> (a "name/version", or "name/all")."""
        return self.manage("GET", f"/models/{model}")

    def register(self, mar: str, timeout_s: float = 240, **params) -> requests.Response:
        """POST /models?url=<mar>&<params> (model_name, batch_size, synchronous ...)."""
        return self.manage("POST", "/models", params={"url": mar, **params}, timeout_s=timeout_s)

    def unregister(self, model: str) -> requests.Response:
        """DELETE /models/<model> (a "name/version" removes that version only)."""
        return self.manage("DELETE", f"/models/{model}")

    def metric_samples(self) -> list[tuple[str, dict[str, str], float]]:
        """(name, labels, value) of every sample at :8082/metrics (no key)."""
        text = requests.get(self.url("metrics", "/metrics"), timeout=10).text
        found = []
        for line in text.splitlines():
            match = SAMPLE.match(line)
            if match:
                name, labels, value = match.groups()
                found.append((name, dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value)))
        return found

    def metrics(self, model: str) -> dict[str, float]:
        """One model's samples, summed over its versions: name -> value, with the label that tells
        its series apart when it has one (HandlerItemErrors{Code="..."}, ..._bucket{le="..."})."""
        values: dict[str, float] = {}
        for name, labels, value in self.metric_samples():
            if model not in (labels.get("ModelName"), labels.get("model_name")):
                continue
            kept = [f'{key}="{labels[key]}"' for key in METRIC_KEY_LABELS if key in labels]
            key = name + (f"{{{kept[0]}}}" if kept else "")
            values[key] = values.get(key, 0.0) + value
        return values

    def register_workflow(self, war: str, timeout_s: float = 240) -> requests.Response:
        return self.manage("POST", "/workflows", params={"url": war}, timeout_s=timeout_s)

    def unregister_workflow(self, name: str) -> requests.Response:
        return self.manage("DELETE", f"/workflows/{name}")


def write_config(path: Path, model_store: Path, load_models: str) -> dict[str, str]:
    """The repo's config.properties with free ports, this model store and these models."""
    ports = {name: free_port() for name in APIS}
    text = (REPO / "config.properties").read_text()
    for name, port in ports.items():
        text = re.sub(rf"^{name}_address=.*$", f"{name}_address=http://127.0.0.1:{port}", text, flags=re.M)
    text = re.sub(r"^model_store=.*$", f"model_store={model_store}", text, flags=re.M)
    text = re.sub(r"^load_models=.*$", f"load_models={load_models}", text, flags=re.M)
    # TorchServe binds gRPC (default 7070/7071) even unused: free ports keep servers side by side.
    text += f"\ngrpc_inference_port={free_port()}\ngrpc_management_port={free_port()}\n"
    path.write_text(text)
    return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


class TorchServe(Client):
    """A server this process started (or whose process it holds): the client plus start and stop."""

    def __init__(self, workdir: Path, urls: dict[str, str], process: subprocess.Popen, workflows: tuple[str, ...] = ()) -> None:
        super().__init__(urls, workdir / "key_file.json")  # TorchServe writes it in its working directory
        self.workdir = workdir
        self.process = process
        self.workflows = workflows

    @classmethod
    def start(cls, workdir: Path, model_store: Path, load_models: str,
              workflow_store: Path | None = None, workflows: tuple[str, ...] = (),
              extra_args: tuple[str, ...] = (), until: str = "ready", env: Mapping[str, str] | None = None,
              timeout_s: float = START_TIMEOUT_S) -> "TorchServe":
        """Start as `make serve` does: scripts/serving/serve.py, registering `workflows` once up; return once
        it is ready (`until="ping"`: once /ping answers, models still loading: a cold start's clock), or
        raise after `timeout_s`.

        `extra_args` go to scripts/serving/serve.py as they are (e.g. --snapshots --log-dir DIR); `env` is
        added to this process's environment for the server and its workers (e.g. MPS's pipe folder).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "scripts.serving.serve", "--config", "config.properties",
                   "--model-store", str(model_store), "--run-dir", str(workdir / "run"), *extra_args]
        if workflow_store is not None:
            command += ["--workflow-store", str(workflow_store), "--workflows", *workflows]
        for attempt in range(1, BIND_ATTEMPTS + 1):
            urls = write_config(workdir / "config.properties", model_store, load_models)
            log_path = workdir / "serve.out"
            logged_before = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:  # a restart in the same workdir keeps the first run's log
                process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                                           env={**os.environ, **env} if env else None)
            server = cls(workdir, urls, process, tuple(workflows))
            try:
                server.wait_until_answering(timeout_s) if until == "ping" else server.wait_until_ready(timeout_s)
                return server
            except BaseException as failed:
                lost_a_port = isinstance(failed, RuntimeError) and "Address already in use" in \
                    log_path.read_bytes()[logged_before:].decode(errors="replace")
                if not lost_a_port or attempt == BIND_ATTEMPTS:
                    server.stop()  # a server that never got ready is not left running, its workers restarting
                    raise
        raise RuntimeError(f"TorchServe could not bind its ports in {BIND_ATTEMPTS} attempts")  # not reached: the last one raised

    def wait_until_answering(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the key file exists and /ping answers Healthy: up, some workers may still be loading."""
        poll_until(lambda: self._alive() and self.key_file.is_file() and self.ping(), timeout_s,
                   f"TorchServe to answer /ping Healthy; see {self.workdir}",
                   ignore=(requests.ConnectionError, json.JSONDecodeError, KeyError))

    def wait_until_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until ready as scripts/serving/readiness.py defines it for `make serve`'s `ready:` line and the
        probes: every model's workers READY and every workflow registered (/ping is Healthy with one
        worker up); fail fast if the server died."""
        target = readiness.Server(self.urls["management"], self.key_file,
                                  workflows=[readiness.workflow_name(w) for w in self.workflows])
        poll_until(lambda: self._alive() and self.key_file.is_file() and not readiness.missing(target), timeout_s,
                   f"TorchServe to be ready (every worker READY, every workflow registered); see {self.workdir}")

    def _alive(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"TorchServe exited early; see {self.workdir / 'serve.out'}")
        return True

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

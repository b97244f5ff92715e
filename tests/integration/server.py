"""A real TorchServe for the tests: started through scripts/serve.py on free loopback ports."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(path: Path, model_store: Path, load_models: str) -> dict[str, str]:
    """The repo's config.properties with free ports, this model store and these models."""
    ports = {name: free_port() for name in ("inference", "management", "metrics")}
    text = (REPO / "config.properties").read_text()
    for name, port in ports.items():
        text = re.sub(rf"^{name}_address=.*$", f"{name}_address=http://127.0.0.1:{port}", text, flags=re.M)
    text = re.sub(r"^model_store=.*$", f"model_store={model_store}", text, flags=re.M)
    text = re.sub(r"^load_models=.*$", f"load_models={load_models}", text, flags=re.M)
    # TorchServe binds gRPC (default 7070/7071) even unused: free ports keep servers side by side.
    text += f"\ngrpc_inference_port={free_port()}\ngrpc_management_port={free_port()}\n"
    path.write_text(text)
    return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


@dataclass
class TorchServe:
    workdir: Path
    urls: dict[str, str]
    process: subprocess.Popen

    @classmethod
    def start(cls, workdir: Path, model_store: Path, load_models: str,
              workflow_store: Path | None = None, workflows: tuple[str, ...] = (),
              extra_args: tuple[str, ...] = ()) -> "TorchServe":
        """Start as `make serve` does: scripts/serve.py, registering `workflows` once up.

        `extra_args` go to scripts/serve.py as they are (e.g. --snapshots --log-dir DIR).
        """
        workdir.mkdir(parents=True, exist_ok=True)
        urls = write_config(workdir / "config.properties", model_store, load_models)
        command = [sys.executable, "-m", "scripts.serve", "--config", "config.properties",
                   "--model-store", str(model_store), "--run-dir", str(workdir / "run"), *extra_args]
        if workflow_store is not None:
            command += ["--workflow-store", str(workflow_store), "--workflows", *workflows]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        log = open(workdir / "serve.out", "ab")  # a restart in the same workdir keeps the first run's log
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = cls(workdir, urls, process)
        server.wait_until_ready()
        return server

    @property
    def keys(self) -> dict[str, str]:
        data = json.loads((self.workdir / "key_file.json").read_text())
        return {"inference": data["inference"]["key"], "management": data["management"]["key"]}

    def auth(self, api: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[api]}"}

    def wait_until_ready(self) -> None:
        """Poll until the key file exists and /ping answers 200 (models loaded)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"TorchServe exited early; see {self.workdir / 'serve.out'}")
            if (self.workdir / "key_file.json").is_file():
                try:
                    response = requests.get(f"{self.urls['inference']}/ping", headers=self.auth("inference"), timeout=2)
                    if response.status_code == 200 and response.json().get("status") == "Healthy":
                        return
                except (requests.ConnectionError, json.JSONDecodeError, KeyError):
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"TorchServe not ready after {START_TIMEOUT_S}s; see {self.workdir}")

    def predict(self, model: str, data=None, headers: dict | None = None, **kwargs) -> requests.Response:
        return requests.post(
            f"{self.urls['inference']}/predictions/{model}",
            data=data, headers={**self.auth("inference"), **(headers or {})}, timeout=120, **kwargs,
        )

    def manage(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.urls['management']}{path}",
                                headers=self.auth("management"), timeout=240, **kwargs)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=90)

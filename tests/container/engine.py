"""The container engine for the container tier: podman or docker, run as the Makefile runs them.

Standard library only; every call goes through `engine()` so the tier runs the real commands a
user would (`make docker`, `podman run ...`) and nothing mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from scripts.client.torchserve import free_port

REPO = Path(__file__).resolve().parents[2]
IMAGE = "torchserve-bundle:cpu"
READY_TIMEOUT_S = 600
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "docker" / "containers.conf")}


def which_engine() -> str | None:
    """podman, else docker with a daemon that answers; None when neither (the tier then skips)."""
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    return None


def engine(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([which_engine(), *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{which_engine()} {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def cgroup_memory(name: str) -> dict[str, int]:
    """The container's memory cgroup (v1 or v2): its limit, peak and OOM kills so far, in bytes."""
    script = ("cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max memory.peak; "
              "grep -w oom_kill memory.events | cut -d' ' -f2; else cat memory/memory.limit_in_bytes "
              "memory/memory.max_usage_in_bytes; grep -w oom_kill memory/memory.oom_control | cut -d' ' -f2; fi")
    limit, peak, kills = engine("exec", name, "sh", "-c", script).stdout.split()
    return {"limit": int(limit), "peak": int(peak), "oom_kills": int(kills)}


def memory_quantity(text: str) -> int:
    """A Kubernetes memory quantity in bytes (the binary suffixes the manifests use)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def http(method: str, url: str, key: str | None = None, data: bytes | None = None,
         headers: dict | None = None, timeout: float = 120) -> tuple[int, object, float]:
    """(status, JSON body or text, seconds)."""
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}),
               **({"Content-Type": "application/octet-stream"} if data is not None else {}), **(headers or {})}
    started = time.monotonic()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body), time.monotonic() - started
    except ValueError:
        return status, body.decode(errors="replace"), time.monotonic() - started


@dataclass
class Container:
    """One `podman run -d` of the image, inference, management and metrics published on loopback."""

    name: str
    image: str = IMAGE
    run_args: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> "Container":
        self.ports = {"inference": free_port(), "management": free_port(), "metrics": free_port()}
        engine("run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.ports['inference']}:8080",
               "-p", f"127.0.0.1:{self.ports['management']}:8081", "-p", f"127.0.0.1:{self.ports['metrics']}:8082",
               *self.run_args, self.image)
        return self

    def url(self, api: str) -> str:
        return f"http://127.0.0.1:{self.ports[api]}"

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return engine("exec", self.name, *command, check=check)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll the image's own readiness check (docker/healthcheck.py) until it passes; seconds taken."""
        started = time.monotonic()
        while True:
            state = engine("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip()
            assert state == "true", f"{self.name} exited:\n{self.logs()}"
            if self.exec("python", "/app/docker/healthcheck.py", check=False).returncode == 0:
                return time.monotonic() - started
            assert time.monotonic() - started < timeout_s, f"{self.name} not ready in {timeout_s} s:\n{self.logs()[-4000:]}"
            time.sleep(1)

    def keys(self) -> dict[str, str]:
        workdir = self.exec("sh", "-c", 'echo "${SERVE_WORKDIR:-/home/model-server}"').stdout.strip()
        data = json.loads(self.exec("cat", f"{workdir}/key_file.json").stdout)
        return {api: entry["key"] for api, entry in data.items()}

    def predict(self, path: str, data: bytes, headers: dict | None = None) -> tuple[int, object, float]:
        return http("POST", f"{self.url('inference')}/{path}", self.keys()["inference"], data, headers)

    def manage(self, method: str, path: str) -> tuple[int, object, float]:
        return http(method, f"{self.url('management')}{path}", self.keys()["management"])

    def logs(self) -> str:
        result = engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def inference_requests(self) -> float:
        """ts_inference_requests_total over every model: requests TorchServe has received (no key on :8082)."""
        status, text, _ = http("GET", f"{self.url('metrics')}/metrics")
        return sum(float(line.rsplit(" ", 1)[1]) for line in str(text).splitlines() if line.startswith("ts_inference_requests_total{"))

    def stop(self, timeout_s: int = 10) -> tuple[int, float]:
        """`stop -t`: SIGTERM, SIGKILL after timeout_s. (exit code, seconds)."""
        started = time.monotonic()
        engine("stop", "-t", str(timeout_s), self.name, timeout=timeout_s + 60)
        seconds = time.monotonic() - started
        return int(engine("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()), seconds

    def remove(self) -> None:
        engine("rm", "-f", self.name, check=False)

"""A real Prometheus (Debian's `prometheus` package) scraping a test server on loopback.

`Prometheus.start(workdir, targets)` writes a config that scrapes each metrics URL every second,
starts the binary on a free port with its data in `workdir`, and polls until every target is up.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar
from urllib.parse import urlparse

import requests
import yaml

from scripts.client.torchserve import free_port, poll_until

SCRAPE_INTERVAL_S = 1
START_TIMEOUT_S = 60
T = TypeVar("T")


def binary() -> str | None:
    return shutil.which("prometheus")


def poll(probe: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.2) -> T:
    """probe() until it returns something truthy (scripts.client.torchserve.poll_until, polled faster)."""
    return poll_until(probe, timeout_s, what, interval_s=every_s)


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen
    workdir: Path

    @classmethod
    def start(cls, workdir: Path, targets: dict[str, str], rule_files: tuple[Path, ...] = ()) -> "Prometheus":
        """targets: job name -> metrics base URL (http://127.0.0.1:PORT)."""
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S}s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [urlparse(url).netloc]}]}
                               for job, url in targets.items()],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        command = [binary(), f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{port}"]
        log = open(workdir / "prometheus.out", "ab")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        prometheus = cls(f"http://127.0.0.1:{port}", process, workdir)
        try:
            poll(prometheus.ready, START_TIMEOUT_S, f"Prometheus ready (see {workdir / 'prometheus.out'})")
            poll(lambda: len(prometheus.query("up == 1")) == len(targets), START_TIMEOUT_S, "every target up")
        except BaseException:
            prometheus.stop()
            raise
        return prometheus

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited ({self.process.returncode}); see {self.workdir / 'prometheus.out'}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>; the `data` of a success, else an AssertionError with Prometheus's error."""
        body = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10).json()
        assert body["status"] == "success", f"{path} {params}: {body.get('errorType')}: {body.get('error')}"
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query's result: [{"metric": {...}, "value": [t, "v"]}, ...] (a vector)."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", f"{promql}: a {data['resultType']}, not a vector"
        return data["result"]

    def value(self, promql: str) -> float | None:
        """The one value of a query that returns one series (None when it returns none)."""
        result = self.query(promql)
        assert len(result) <= 1, f"{promql}: {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

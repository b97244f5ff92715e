"""A bounded load client for the bundle's own server: loopback only, a fixed number of requests.

    python -m scripts.measure.bench.load_client --requests 2000 --concurrency 64 --file samples/cat.jpg \
        --url http://127.0.0.1:8080/predictions/efficientnet_lite0 --key-file key_file.json

It never runs open-ended and refuses non-loopback hosts, so it cannot be pointed at someone
else's service by accident. Every request is accounted for: answered (by status) or failed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import requests

from scripts.serving.keyfile import auth_header

if TYPE_CHECKING:
    from scripts.client.torchserve import Client


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    elapsed_s: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    """Requests with no HTTP answer (connection reset, timeout), by exception type."""
    error_bodies: Counter = field(default_factory=Counter)
    """First line of each distinct non-200 body, to show *why* (e.g. a queue-full 503)."""

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def lost(self) -> int:
        return self.requests - self.answered

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "answered": self.answered,
            "lost": self.lost,
            "statuses": dict(sorted(self.statuses.items())),
            "failures": dict(self.failures),
            "throughput_rps": round(self.answered / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p90_ms": percentile(self.latencies_ms, 90),
            "p99_ms": percentile(self.latencies_ms, 99),
            "elapsed_s": round(self.elapsed_s, 2),
        }


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (0 for no values): the value below which pct% of samples fall."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats
    return round(ordered[int(rank) - 1], 2)


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        addresses = {ipaddress.ip_address(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise ValueError(f"cannot resolve {host!r}") from None
    if not all(address.is_loopback for address in addresses):
        raise ValueError(f"refusing to load {host!r}: the load client only targets loopback servers")


def run_load(url: str, body: bytes, headers: dict[str, str], total: int, concurrency: int,
             timeout_s: float = 60.0) -> LoadResult:
    """Send `total` POSTs with at most `concurrency` in flight; return when all are accounted for."""
    require_loopback(url)
    result = LoadResult(total, concurrency)
    lock = threading.Lock()
    sessions = threading.local()

    def session() -> requests.Session:  # one keep-alive connection per client thread
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        return sessions.session

    def one(_: int) -> None:
        start = time.perf_counter()
        try:
            response = session().post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            with lock:
                result.failures[type(exc).__name__] += 1
            return
        elapsed_ms = (time.perf_counter() - start) * 1000
        with lock:
            result.statuses[response.status_code] += 1
            result.latencies_ms.append(elapsed_ms)
            if response.status_code != 200:
                result.error_bodies[f"{response.status_code} {response.text.strip()[:160]}"] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(total)))
    result.elapsed_s = time.perf_counter() - started
    return result


def load_model(client: Client, model: str, body: bytes, content_type: str, total: int, concurrency: int) -> LoadResult:
    """run_load on /predictions/<model> of the server `client` talks to, with its inference key."""
    headers = {**client.auth("inference"), "Content-Type": content_type}
    return run_load(client.prediction_url(model), body, headers, total, concurrency)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080/predictions/efficientnet_lite0")
    parser.add_argument("--file", type=Path, default=Path("samples/cat.jpg"))
    parser.add_argument("--content-type", default="application/octet-stream")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="TorchServe's key file")
    args = parser.parse_args(argv)
    headers = {**auth_header(args.key_file, "inference"), "Content-Type": args.content_type}
    result = run_load(args.url, args.file.read_bytes(), headers, args.requests, args.concurrency)
    print(json.dumps(result.summary(), indent=2))
    for line, count in result.error_bodies.most_common(5):
        print(f"{count:6d} x {line}")
    return 0 if result.lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""scripts/measure/bench/load_client.py: percentiles, the loopback guard, and accounting against a tiny local server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.measure.bench.load_client import percentile, require_loopback, run_load


@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [([], 50, 0.0), ([5.0], 99, 5.0), ([1, 2, 3, 4], 50, 2), ([1, 2, 3, 4], 99, 4), (list(range(1, 101)), 90, 90)],
)
def test_percentile_nearest_rank(values, pct, expected):
    assert percentile(values, pct) == expected


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080/x", "http://8.8.8.8/x", "http://no-such-host.invalid/x"])
def test_non_loopback_targets_are_refused(url):
    with pytest.raises(ValueError):
        require_loopback(url)


def test_loopback_names_are_accepted():
    require_loopback("http://127.0.0.1:8080/x")
    require_loopback("http://localhost:8080/x")


class _EveryThirdFails(BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            type(self).count += 1
            status = 503 if self.count % 3 == 0 else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b'{"code": 503, "message": "queue full"}' if status == 503 else b"{}")

    def log_message(self, *args):
        pass


def test_every_request_is_accounted_for():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EveryThirdFails)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run_load(f"http://127.0.0.1:{server.server_port}/p", b"x", {}, total=90, concurrency=8)
    finally:
        server.shutdown()
    assert result.lost == 0
    assert result.statuses == {200: 60, 503: 30}
    assert result.summary()["p99_ms"] >= result.summary()["p50_ms"] > 0
    assert any("queue full" in line for line in result.error_bodies)

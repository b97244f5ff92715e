"""scripts/measure/bench/http_load.py: how clients are spread over processes, and real load against a tiny local server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.client.torchserve import free_port
from scripts.measure.bench.http_load import LoadProcesses, default_processes, shares


@pytest.mark.parametrize(("concurrency", "processes", "expected"),
                         [(128, 4, [32, 32, 32, 32]), (5, 4, [2, 1, 1, 1]), (1, 4, [1]), (3, 8, [1, 1, 1]), (64, 1, [64])])
def test_clients_are_spread_over_processes(concurrency, processes, expected):
    assert shares(concurrency, processes) == expected


def test_a_quarter_of_the_cores_loads_at_least_one_process():
    assert (default_processes(16), default_processes(2), default_processes(1)) == (4, 1, 1)


class _Recorder(BaseHTTPRequestHandler):
    """200 on /ok, 503 on anything else; remembers the Authorization headers it saw."""
    seen: set[str] = set()

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.add(self.headers.get("Authorization", ""))
        self.send_response(200 if self.path == "/ok" else 503)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(scope="module")
def load():
    with LoadProcesses(2) as pool:
        yield pool


def test_every_process_loads_from_a_common_start(load, server_url):
    cell = load.run(f"{server_url}/ok", b"x", {"Authorization": "Bearer k"}, concurrency=4, seconds=0.6)
    assert cell.processes == 2 and cell.cpu_s > 0
    assert len(cell.records) > 4 and {status for _, _, status in cell.records} == {200}
    assert all(0 <= begin < 0.6 and latency > 0 for begin, latency, _ in cell.records)
    assert _Recorder.seen == {"Bearer k"}


def test_statuses_are_recorded_as_answered(load, server_url):
    cell = load.run(f"{server_url}/busy", b"x", {}, concurrency=2, seconds=0.3)
    assert cell.records and {status for _, _, status in cell.records} == {503}


def test_no_answer_is_status_0(load):
    cell = load.run(f"http://127.0.0.1:{free_port()}/ok", b"x", {}, concurrency=1, seconds=0.2)
    assert cell.records and {status for _, _, status in cell.records} == {0}


def test_only_this_host_is_loaded(load):
    with pytest.raises(ValueError):
        load.run("http://10.0.0.1:8080/ok", b"x", {}, concurrency=1, seconds=0.1)

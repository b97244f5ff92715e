"""`make stop` (scripts/serving/stop.py) on a real server with the front: it returns once the server has
exited, so `make stop && make serve` finds every port free. `torchserve --stop`, which it replaced,
returned at once while the front held its port for about 3 s more, and the next server ran without it."""

from __future__ import annotations

import socket
import subprocess
import sys
from urllib.parse import urlsplit

import requests

from scripts.client.torchserve import TorchServe, free_port


def bindable(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (as TorchServe and aiohttp do, SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_stop_returns_once_the_server_and_its_front_have_let_go_of_their_ports(tmp_path, model_store):
    front_port = free_port()
    server = TorchServe.start(tmp_path, model_store, "minilm=minilm.mar", extra_args=("--front", f"127.0.0.1:{front_port}"))
    try:
        run_dir = tmp_path / "run"
        assert (run_dir / "serve.pid").read_text().strip() == str(server.process.pid)
        assert requests.get(f"http://127.0.0.1:{front_port}/v2/health/live", timeout=10).status_code == 200
        ports = [front_port, *(urlsplit(url).port for url in server.urls.values())]
        assert not any(bindable(port) for port in ports)

        done = subprocess.run([sys.executable, "-m", "scripts.serving.stop", "--run-dir", str(run_dir)],
                              capture_output=True, text=True, timeout=120)

        assert done.returncode == 0 and "stopped in" in done.stdout, done.stdout + done.stderr
        assert server.process.poll() == 0, "serve.py had not exited (cleanly) when stop returned"
        assert [port for port in ports if not bindable(port)] == []
        assert not (run_dir / "serve.pid").exists()
    finally:
        if server.process.poll() is None:
            server.stop()

"""The `ready:` line of scripts/serving/serve.py (make serve) on the session server: it comes once, after
the workflow is registered, and what it promises holds (every model's workers READY)."""

from __future__ import annotations

import time

from scripts.serving import readiness

READY_LINE_TIMEOUT_S = 300


def serve_lines(server) -> list[str]:
    return (server.workdir / "serve.out").read_text(errors="replace").splitlines()


def test_ready_line_comes_after_the_workflow_and_means_ready(server):
    deadline = time.monotonic() + READY_LINE_TIMEOUT_S
    while not any(line.startswith("ready: ") for line in serve_lines(server)):
        assert time.monotonic() < deadline, f"no ready: line; see {server.workdir / 'serve.out'}"
        time.sleep(0.5)
    lines = serve_lines(server)
    ready = [n for n, line in enumerate(lines) if line.startswith("ready: ")]
    registered = [n for n, line in enumerate(lines) if line.startswith("workflows: ")]
    assert len(ready) == 1 and registered and registered[-1] < ready[0]
    assert "efficientnet_lite0" in lines[ready[0]] and "workflows: photo_embedding" in lines[ready[0]]
    check = readiness.Server.from_config(server.workdir / "config.properties", server.workdir / "key_file.json",
                                         ["photo_embedding.war"])
    assert readiness.missing(check) == []
    assert server.manage("GET", "/workflows/photo_embedding").status_code == 200

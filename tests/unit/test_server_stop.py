"""scripts/serving/server_stop.py on real processes and sockets: the drain waits for open connections, and
what a server leaves behind is ended, with SIGKILL only for what ignores SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import psutil

from scripts.client.torchserve import poll_until
from scripts.serving import server_stop


def test_drain_waits_for_the_connections_to_the_port_then_gives_up():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        assert server_stop.drain(os.getpid(), port, timeout_s=1) == 0  # nothing in flight: at once
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        started = time.monotonic()
        assert server_stop.drain(os.getpid(), port, timeout_s=0.5) == 1  # a request in flight, waited for
        assert time.monotonic() - started >= 0.5
        client.close()
        accepted.close()
        assert server_stop.drain(os.getpid(), port, timeout_s=1) == 0


def group(script: str) -> subprocess.Popen:
    """A process group like the launcher's: sh and its two children, once both run (after any trap)."""
    process = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    poll_until(lambda: len(psutil.Process(process.pid).children()) == 2, 10, "sh's two children")
    return process


def test_leftovers_get_sigterm():
    process = group("sleep 60 & sleep 60 & wait")
    assert server_stop.end_group(process.pid, grace_s=5) is True
    assert process.wait(timeout=5) != 0
    assert not server_stop.running(process.pid)


def test_leftovers_that_ignore_sigterm_are_killed_after_the_grace():
    process = group("trap '' TERM; sleep 60 & sleep 60 & wait")
    started = time.monotonic()
    assert server_stop.end_group(process.pid, grace_s=0.5) is False
    assert time.monotonic() - started >= 0.5
    assert process.wait(timeout=5) == -signal.SIGKILL


def test_an_empty_group_needs_nothing():
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    assert server_stop.end_group(process.pid) is True


def test_the_stopping_marker_is_written_and_cleared(tmp_path):
    server_stop.mark_stopping(tmp_path, "a test")
    assert (tmp_path / "serve.stopping").read_text() == "a test"
    server_stop.clear_stopping(tmp_path)
    server_stop.clear_stopping(tmp_path)  # twice: a start with no marker
    assert not (tmp_path / "serve.stopping").exists()

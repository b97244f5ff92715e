"""`make stop` (scripts/serving/stop.py) signals only the serve.py that wrote the pid file: a pid file left
by a killed server may name a process that has nothing to do with it since."""

from __future__ import annotations

import os
import subprocess
import sys

from scripts.serving import stop


def test_the_pid_file_names_this_process(tmp_path):
    path = stop.write_pid(tmp_path)
    assert path == tmp_path / stop.PID_FILE and int(path.read_text()) == os.getpid()  # make stop signals it


def test_an_unwritable_run_dir_leaves_no_pid_file_and_serves_on(tmp_path, capsys):
    assert stop.write_pid(tmp_path / "missing") is None
    assert "could not write" in capsys.readouterr().err


def test_a_pid_that_is_not_serve_py_is_not_signalled(tmp_path):
    """A stale pid file whose pid another process has taken: that process lives on, and the stop asks
    TorchServe's own pid file instead (none here: 'not currently running', exit 0)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / stop.PID_FILE).write_text(f"{other.pid}\n")
        assert stop.serve_pid(tmp_path) is None
        assert stop.stop(tmp_path, timeout_s=5) == 0
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_an_unreadable_pid_file_counts_as_none(tmp_path):
    (tmp_path / stop.PID_FILE).write_text("not a pid\n")
    assert stop.serve_pid(tmp_path) is None
    assert stop.serve_pid(tmp_path / "missing") is None

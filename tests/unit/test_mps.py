"""scripts/measure/bench/mps.py: the private MPS daemon a sweep candidate runs under.

nvidia-cuda-mps-control comes with the NVIDIA driver, which no machine here has: a stand-in on PATH
records how it is called (start as a daemon, `quit` on stdin, both with the candidate's folders), which is
what this module owns; whether MPS then speeds the workers up is the GPU sweep's to measure.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from scripts.measure.bench.mps import CONTROL, mps_daemon

RECORDER = """#!/usr/bin/env python3
import json, os, sys
with open(os.environ["RECORD"], "a") as out:
    out.write(json.dumps({"argv": sys.argv[1:], "stdin": "" if sys.argv[1:] else sys.stdin.read(),
                          "pipe": os.environ.get("CUDA_MPS_PIPE_DIRECTORY"), "log": os.environ.get("CUDA_MPS_LOG_DIRECTORY")}) + "\\n")
"""


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / CONTROL
    control.write_text(RECORDER)
    control.chmod(control.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    return lambda: [json.loads(line) for line in record.read_text().splitlines()]


def test_the_daemon_runs_for_the_block_with_the_candidates_folders(tmp_path, recorded):
    pipe, log = tmp_path / "mps", tmp_path / "server" / "mps-log"
    with mps_daemon(pipe, log) as env:
        assert env == {"CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(log)}
        assert pipe.is_dir() and log.is_dir()
        assert [call["argv"] for call in recorded()] == [["-d"]]
    calls = recorded()
    assert [(call["argv"], call["stdin"]) for call in calls] == [(["-d"], ""), ([], "quit\n")]
    assert all((call["pipe"], call["log"]) == (str(pipe), str(log)) for call in calls)


def test_the_daemon_is_quit_when_the_candidate_fails(tmp_path, recorded):
    with pytest.raises(TimeoutError):
        with mps_daemon(tmp_path / "mps", tmp_path / "log"):
            raise TimeoutError("the candidate's workers never got READY")
    assert [call["stdin"] for call in recorded()][-1] == "quit\n"


def test_without_the_driver_utilities_it_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match=f"{CONTROL} is not on PATH"):
        with mps_daemon(tmp_path / "mps", tmp_path / "log"):
            pass

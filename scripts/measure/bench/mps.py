"""NVIDIA's Multi-Process Service for one `bench-gpu --sweep` candidate.

Without MPS, the worker processes on one GPU time-slice it: one process's kernels at a time. Under MPS
their kernels run side by side, which may let more workers per GPU pay off (issue #20 asks for MPS
measured if more than one worker per GPU wins). The daemon here is private to the candidate: its pipe
folder is its own, so only the processes given `env` (the candidate's TorchServe and its workers)
become MPS clients, and it is shut down with the candidate.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

CONTROL = "nvidia-cuda-mps-control"
COMMAND_TIMEOUT_S = 30


@contextlib.contextmanager
def mps_daemon(pipe_dir: Path, log_dir: Path) -> Iterator[dict[str, str]]:
    """An MPS control daemon for the block; yields the environment its clients need."""
    control = shutil.which(CONTROL)
    if control is None:
        raise RuntimeError(f"{CONTROL} is not on PATH: MPS comes with the NVIDIA driver's utilities")
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe_dir), "CUDA_MPS_LOG_DIRECTORY": str(log_dir)}
    for folder in (pipe_dir, log_dir):
        folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([control, "-d"], env={**os.environ, **env}, check=True, timeout=COMMAND_TIMEOUT_S)
    try:
        yield env
    finally:
        subprocess.run([control], input="quit\n", text=True, env={**os.environ, **env}, check=False, timeout=COMMAND_TIMEOUT_S)

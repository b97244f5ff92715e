"""What the numbers were measured on, and how busy it was: a benchmark on a shared machine says so."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path
from typing import Callable

import torch

from scripts.doctor import cpu_flags


def cpu_model(cpuinfo_text: str) -> str:
    match = re.search(r"^model name\s*:\s*(.+)$", cpuinfo_text, flags=re.M)
    return match.group(1).strip() if match else platform.processor() or "unknown CPU"


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def machine_info() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = cpu_flags(cpuinfo)
    return {
        "cpu": cpu_model(cpuinfo),
        "cores": len(os.sched_getaffinity(0)),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "vnni": "avx512_vnni" in flags,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def wait_until_quiet(threshold: float, max_wait_s: float, poll_s: float = 60.0,
                     load: Callable[[], list[float]] = load_average, sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait (up to max_wait_s) for the 1-minute load average to drop to `threshold`; return it."""
    waited = 0.0
    current = load()[0]
    while current > threshold and waited < max_wait_s:
        sleep(poll_s)
        waited += poll_s
        current = load()[0]
    return current

"""GPU utilisation and memory through a benchmark cell, from nvidia-smi (none without it)."""

from __future__ import annotations

import shutil
import subprocess
import threading


class GpuSampler:
    """nvidia-smi every `interval_s` while the block runs: mean utilisation, peak memory per GPU."""

    def __init__(self, interval_s: float = 0.5) -> None:
        self.interval_s, self.samples, self._stop = interval_s, [], threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def __enter__(self) -> "GpuSampler":
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join()

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        while not self._stop.wait(self.interval_s):
            lines = subprocess.run(query, capture_output=True, text=True, check=False).stdout.splitlines()
            self.samples.append([tuple(float(v) for v in line.split(",")) for line in lines if line.strip()])

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_pct": None, "gpu_mem_mb": None}
        return {"gpu_util_pct": round(sum(s[0][0] for s in self.samples) / len(self.samples), 1),
                "gpu_mem_mb": max(s[0][1] for s in self.samples)}

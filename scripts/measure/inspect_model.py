"""Resource estimates for one model: `make inspect MODEL=efficientnet_lite0`.

    python -m scripts.measure.inspect_model efficientnet_lite0
    python -m scripts.measure.inspect_model minilm --batch-sizes 1 8 64 --json

Parameters and weights, activations by batch size (models/resources.py, also in the export's
metadata.json), and what one worker really takes: its RSS, measured in a fresh process that
loads the handler as TorchServe would (shipped settings, warm-up included) and runs a batch of
each size; on a GPU also CUDA's allocated and reserved memory. Ends with how many workers fit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import torch

from handlers.architectures import build_module
from handlers.weights import read_metadata
from models.resources import MB, estimate, workers_that_fit

REPO = Path(__file__).resolve().parents[2]


def memory_now() -> dict:
    """This process's RSS and peak RSS (psutil; the peak from getrusage), and CUDA's memory, in MiB."""
    rss = psutil.Process().memory_info().rss
    peak = max(rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # kB on Linux, updated lazily
    memory = {"rss_mb": round(rss / MB, 1), "peak_rss_mb": round(peak / MB, 1)}
    if torch.cuda.is_available():
        memory |= {"cuda_allocated_mb": round(torch.cuda.max_memory_allocated() / MB, 1),
                   "cuda_reserved_mb": round(torch.cuda.memory_reserved() / MB, 1)}
    return memory


def measure_worker(name: str, model_dir: Path, batch_sizes: list[int]) -> dict:
    """In this (fresh) process: memory after loading the handler, then after a batch of each size."""
    from scripts.measure.in_process import load_handler

    handler = load_handler(name, model_dir, gpu_id=0 if torch.cuda.is_available() else None)
    measured = {"loaded": memory_now(), "batches": {}}
    item = handler.decode_request(handler.example_request())
    for batch in sorted(batch_sizes):
        handler.predict([item] * batch)
        measured["batches"][str(batch)] = memory_now()
    return measured


def worker_memory(name: str, model_dir: Path, batch_sizes: list[int]) -> dict:
    """measure_worker in a child process, so nothing this process loaded is counted."""
    command = [sys.executable, "-m", "scripts.measure.inspect_model", name, "--model-dir", str(model_dir),
               "--batch-sizes", *map(str, batch_sizes), "--measure-worker"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def guidance(peak_rss_mb: float, cuda_reserved_mb: float | None) -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    fit = workers_that_fit(memory, int(peak_rss_mb * MB), len(os.sched_getaffinity(0)))
    fit["machine_memory_gb"] = round(memory / 2**30, 1)
    if cuda_reserved_mb:
        gpu = torch.cuda.get_device_properties(0).total_memory
        fit["by_gpu_memory"] = int(gpu * 0.9 // (cuda_reserved_mb * MB))
    return fit


def report(name: str, model_dir: Path, batch_sizes: list[int]) -> dict:
    metadata = read_metadata(model_dir)
    static = estimate(build_module(metadata["architecture"], model_dir), metadata["input"], batch_sizes)
    worker = worker_memory(name, model_dir, batch_sizes)
    peak = worker["batches"][str(max(batch_sizes))]
    return {"model": name, **static, "worker": worker,
            "guidance": guidance(peak["peak_rss_mb"], peak.get("cuda_reserved_mb"))}


def print_report(result: dict) -> None:
    print(f"{result['model']}: {result['parameters']:,} parameters, {result['weights_mb']} MiB of weights")
    print(f"activations ({result['activation_note']}):")
    for batch, mb in (result["activation_mb"] or {}).items():
        print(f"  batch {batch:>4}: {mb} MiB")
    worker = result["worker"]
    print(f"one worker (shipped settings, warmed up): RSS {worker['loaded']['rss_mb']} MiB after loading")
    for batch, memory in worker["batches"].items():
        cuda = f", CUDA allocated {memory['cuda_allocated_mb']} / reserved {memory['cuda_reserved_mb']} MiB" if "cuda_reserved_mb" in memory else ""
        print(f"  after a batch of {batch:>4}: RSS {memory['rss_mb']} MiB, peak {memory['peak_rss_mb']} MiB{cuda}")
    g = result["guidance"]
    print(f"workers that fit: {g['fit']} (memory: {g['by_memory']} in {g['machine_memory_gb']} GB keeping 20% free; "
          f"cores: {g['by_cores']} at one thread each)" + (f"; GPU memory: {g['by_gpu_memory']}" if "by_gpu_memory" in g else ""))
    print("  On CPU, workers x threads should equal the cores (threads: 0 does this per model); one worker with all")
    print("  cores and batching is usually fastest; more workers trade memory for overlap of decoding and inference.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a registered model, e.g. efficientnet_lite0")
    parser.add_argument("--model-dir", type=Path, help="its export (default build/weights/<name>)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--measure-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    model_dir = args.model_dir or Path("build/weights") / args.name
    if args.measure_worker:
        print(json.dumps(measure_worker(args.name, model_dir, args.batch_sizes)))
        return 0
    result = report(args.name, model_dir, args.batch_sizes)
    print(json.dumps(result, indent=2)) if args.json else print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

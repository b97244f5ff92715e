"""Rewrite model-config.yaml files into their GPU variant, in place: the GPU image's builder stage.

    python docker/gpu_config.py models/configs/*.yaml      # before `make archive` (Dockerfile)

- deviceType: gpu
- minWorkers/maxWorkers dropped: TorchServe then starts default_workers_per_model workers, which
  docker/config.properties leaves at 0, its rule for one worker per visible GPU. Workers are spread
  round-robin over the GPUs, so TS_DEFAULT_WORKERS_PER_MODEL=2x#GPUs gives each GPU two.
- handler precision fp16: autocast on CUDA (the handler refuses fp16 where there is no GPU), on
  runtime torch (onnxruntime, the CPU default, runs fp32; the image has no onnxruntime-gpu).

Everything else stays as models/configs says: the CPU files remain the one place of truth, and a
GPU variant derived at build time cannot drift from them. (Comments are not kept.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

GPU_PRECISION = "fp16"


def gpu_variant(config: dict) -> dict:
    variant = {key: value for key, value in config.items() if key not in ("minWorkers", "maxWorkers")}
    variant["deviceType"] = "gpu"
    variant["handler"] = {**config.get("handler", {}), "precision": GPU_PRECISION, "runtime": "torch"}
    return variant


def main(paths: list[str]) -> int:
    for path in map(Path, paths):
        path.write_text(yaml.safe_dump(gpu_variant(yaml.safe_load(path.read_text())), sort_keys=False))
        print(f"gpu_config: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Rewrite model-config.yaml files into their GPU variant, in place: the GPU image's builder stage.

    ts-bundle-gpu-config models/configs/*.yaml      # before `make archive` (the Dockerfile's builder)

- the file's own `gpu:` section is applied over the rest: top-level keys (batchSize, maxBatchDelay)
  replaced, `handler:` settings merged. The GPU settings are chosen per model by measurement
  (docs/gpu.md) and live beside the CPU ones, in the same file; the section is dropped here.
- deviceType: gpu
- minWorkers/maxWorkers dropped: TorchServe then starts default_workers_per_model workers, which
  docker/config.properties leaves at 0, its rule for one worker per visible GPU; the entrypoint
  raises it to SERVE_WORKERS_PER_GPU per GPU. Workers are spread round-robin over the GPUs.
- handler precision fp16 and runtime torch unless the section says otherwise: autocast on CUDA
  (the handler refuses fp16 where there is no GPU); the image has no onnxruntime-gpu.

Everything else stays as models/configs says: the CPU files remain the one place of truth, and a
GPU variant derived at build time cannot drift from them. (Comments are not kept.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

GPU_PRECISION = "fp16"


def gpu_variant(config: dict) -> dict:
    gpu = dict(config.get("gpu") or {})
    gpu_handler = gpu.pop("handler", {})
    variant = {key: value for key, value in config.items() if key not in ("minWorkers", "maxWorkers", "gpu")}
    variant.update(gpu)
    variant["deviceType"] = "gpu"
    variant["handler"] = {**config.get("handler", {}), "precision": GPU_PRECISION, "runtime": "torch", **gpu_handler}
    return variant


def main(argv: list[str] | None = None) -> int:
    for path in map(Path, sys.argv[1:] if argv is None else argv):
        path.write_text(yaml.safe_dump(gpu_variant(yaml.safe_load(path.read_text())), sort_keys=False))
        print(f"gpu_config: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

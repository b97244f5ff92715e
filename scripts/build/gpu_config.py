"""A model-config.yaml's GPU variant: what `make archive VARIANT=gpu` builds archives with, for the GPU
image (no worker count: its entrypoint sets one per visible GPU) and for `make serve VARIANT=gpu`
(the workers for this host's GPUs).

    ts-bundle-gpu-config models/configs/minilm.yaml --out build/gpu-configs/minilm.yaml [--workers-per-gpu 2]

- the config's own `gpu:` section is applied over the rest: top-level keys (batchSize, maxBatchDelay)
  replaced, `handler:` settings merged. The GPU settings are chosen per model by measurement
  (docs/gpu.md) and live beside the CPU ones, in the same file; the section is dropped here.
- deviceType: gpu
- minWorkers/maxWorkers dropped: TorchServe then starts default_workers_per_model workers, which
  docker/config.properties leaves at 0, its rule for one worker per visible GPU; the entrypoint
  raises it to SERVE_WORKERS_PER_GPU per GPU. With --workers-per-gpu they are set instead, for the
  GPUs torch sees here. Workers are spread round-robin over the GPUs.
- handler precision fp16 and runtime torch unless the section says otherwise: autocast on CUDA
  (the handler refuses fp16 where there is no GPU); the image has no onnxruntime-gpu.

Everything else stays as models/configs says: the CPU files remain the one place of truth, and a
GPU variant derived at build time cannot drift from them. (Comments are not kept.)
"""

from __future__ import annotations

import argparse
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


def with_workers(variant: dict, workers_per_gpu: int, gpus: int) -> dict:
    """`workers_per_gpu` workers of the model on each of `gpus` GPUs (one when none is seen):
    TorchServe hands a model's workers out round-robin over the GPUs it sees."""
    workers = workers_per_gpu * max(1, gpus)
    return {**variant, "minWorkers": workers, "maxWorkers": workers}


def visible_gpus() -> int:
    import torch  # only with --workers-per-gpu: the image's variant needs no GPU count

    return torch.cuda.device_count()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="the model's model-config.yaml (models/configs/)")
    parser.add_argument("--out", type=Path, required=True, help="where its GPU variant goes")
    parser.add_argument("--workers-per-gpu", type=int, help="fix the worker count for this host's GPUs "
                        "(without it the count is left to TorchServe's default_workers_per_model, as in the image)")
    args = parser.parse_args(argv)
    variant = gpu_variant(yaml.safe_load(args.config.read_text()))
    workers = ""
    if args.workers_per_gpu:
        gpus = visible_gpus()
        variant = with_workers(variant, args.workers_per_gpu, gpus)
        workers = f", {variant['minWorkers']} workers ({gpus or 'no'} GPU{'s' * (gpus != 1)} seen here)"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(variant, sort_keys=False))
    print(f"gpu_config: {args.config} -> {args.out}{workers}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where and how a worker computes: its device, precision, runtime and threads, decided once at load.

Pure functions of what TorchServe and the machine say (the worker's gpu_id, CUDA, the CPU's
instructions, the model's worker count), so each rule is tested without a GPU.
"""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)


def select_device(gpu_id: int | None, cuda_available: bool) -> torch.device:
    """TorchServe assigns `gpu_id` per worker; honour it only when CUDA is really there."""
    if gpu_id is not None and cuda_available:
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def autocast_for(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 matmuls and convolutions run in hardware, not emulated."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def effective_precision(requested: str, device: torch.device, native_bf16: bool) -> str:
    """bf16 only where the hardware has it: emulated on a CPU, it is slower than fp32."""
    if requested == "bf16" and device.type == "cpu" and not native_bf16:
        log.warning("precision bf16 asked for, but this CPU has no native bf16: running fp32")
        return "fp32"
    return requested


def effective_runtime(requested: str, device: torch.device, precision: str, cuda_provider: bool) -> str:
    """onnxruntime on CPU (fp32 only); on a GPU worker only with onnxruntime-gpu, else torch.
    `precision` is the one the config asks for, so that a config onnxruntime cannot run fails to
    load on every machine, not only on CPUs with native bf16."""
    if requested == "onnxruntime" and device.type == "cuda" and not cuda_provider:
        log.info("runtime onnxruntime asked for on %s without onnxruntime-gpu: running torch", device)
        return "torch"
    if requested == "onnxruntime" and precision != "fp32":
        raise ValueError(f"runtime onnxruntime runs fp32; precision {precision} needs runtime: torch")
    return requested


def thread_count(configured: int, cores: int, workers: int) -> int:
    """`configured`, or (0) an equal share of the cores per worker: workers never oversubscribe."""
    return configured if configured > 0 else max(1, cores // max(1, workers))

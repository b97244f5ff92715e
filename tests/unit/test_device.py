"""handlers.device: device choice per worker, the autocast context for each precision, precision
fallback, the runtime per device, threads."""

from __future__ import annotations

import contextlib

import pytest
import torch

from handlers.device import (
    autocast_for,
    effective_precision,
    effective_runtime,
    select_device,
    thread_count,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda:0")


@pytest.mark.parametrize(
    "requested, device, native, expected",
    [
        ("bf16", CPU, True, "bf16"),
        ("bf16", CPU, False, "fp32"),  # emulated bf16 is slower than fp32: not worth it
        ("bf16", CUDA, False, "bf16"),  # the CPU's instructions do not matter on a GPU
        ("fp32", CPU, False, "fp32"),
        ("fp16", CUDA, False, "fp16"),
    ],
)
def test_effective_precision(requested, device, native, expected):
    assert effective_precision(requested, device, native) == expected


@pytest.mark.parametrize(
    "configured, cores, workers, expected",
    [(0, 2, 1, 2), (0, 2, 2, 1), (0, 2, 4, 1), (0, 16, 4, 4), (3, 2, 1, 3), (0, 8, 0, 8)],
)
def test_thread_count(configured, cores, workers, expected):
    assert thread_count(configured, cores, workers) == expected


@pytest.mark.parametrize(
    "gpu_id, cuda_available, expected",
    [
        (None, False, "cpu"),
        (None, True, "cpu"),  # no gpu_id from TorchServe: a CPU worker even on a GPU host
        (0, False, "cpu"),  # gpu_id but a CPU-only build or no driver
        (0, True, "cuda:0"),
        (1, True, "cuda:1"),
        (1, False, "cpu"),
        ("1", True, "cuda:1"),  # TorchServe may pass it as a string
    ],
)
def test_select_device(gpu_id, cuda_available, expected):
    assert select_device(gpu_id, cuda_available) == torch.device(expected)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fp32_is_no_autocast(device):
    assert isinstance(autocast_for(torch.device(device), "fp32"), contextlib.nullcontext)


def test_bf16_on_cpu_autocasts_matmuls():
    layer = torch.nn.Linear(8, 8)
    with autocast_for(torch.device("cpu"), "bf16"):
        out = layer(torch.randn(2, 8))
    assert out.dtype == torch.bfloat16


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        autocast_for(torch.device("cpu"), "fp16")


@pytest.mark.filterwarnings("ignore:.*CUDA is not available.*:UserWarning")
@pytest.mark.parametrize("precision, dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_cuda_autocast_dtype(precision, dtype):
    context = autocast_for(torch.device("cuda:0"), precision)
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == dtype and context.device == "cuda"


@pytest.mark.parametrize(
    "requested, device, precision, cuda_provider, expected",
    [
        ("onnxruntime", CPU, "fp32", False, "onnxruntime"),
        ("onnxruntime", CUDA, "fp16", False, "torch"),  # the GPU path: torch, unless onnxruntime-gpu is there
        ("onnxruntime", CUDA, "fp32", True, "onnxruntime"),
        ("torch", CPU, "bf16", False, "torch"),
        ("torch", CUDA, "fp16", True, "torch"),
    ],
)
def test_effective_runtime(requested, device, precision, cuda_provider, expected):
    assert effective_runtime(requested, device, precision, cuda_provider) == expected


def test_onnxruntime_refuses_a_lower_precision():
    with pytest.raises(ValueError, match="precision bf16 needs runtime: torch"):
        effective_runtime("onnxruntime", CPU, "bf16", False)

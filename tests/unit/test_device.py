"""handlers.base: device choice per worker and the autocast context for each precision."""

from __future__ import annotations

import contextlib

import pytest
import torch

from handlers.base import autocast_for, select_device

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

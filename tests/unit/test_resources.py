"""Resource estimates: parameters, weights, activations by batch size, workers that fit."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.resources import MB, activation_mb, estimate, example_batch, parameter_count, weights_mb, workers_that_fit
from scripts.measure.inspect_model import memory_now

IMAGE_INPUT = {"tensor": {"shape": [3, 32, 32]}}


def net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32 * 32, 10))


def test_parameters_and_weights():
    model = net()
    assert parameter_count(model) == 3 * 16 * 9 + 16 + 2 * 16 + 16 * 32 * 32 * 10 + 10
    buffers = 2 * 16 * 4 + 8  # running mean and var (fp32), num_batches_tracked (int64)
    assert weights_mb(model) == round((parameter_count(model) * 4 + buffers) / MB, 2)


def test_activations_grow_with_the_batch():
    model = net().eval()
    one, eight = (activation_mb(model, *example_batch(IMAGE_INPUT, b)) for b in (1, 8))
    layer = 2 * 16 * 32 * 32 * 4 / MB  # batch norm's (or ReLU's) input + output, fp32
    assert one == pytest.approx(layer, abs=0.01)
    assert eight == pytest.approx(8 * layer, abs=0.01)


def test_example_batch_for_text():
    args, kwargs = example_batch({"max_tokens": 64}, 3)
    assert args == () and kwargs["input_ids"].shape == (3, 64) and kwargs["attention_mask"].dtype == torch.long


def test_estimate_for_the_metadata():
    result = estimate(net(), IMAGE_INPUT, (1, 4))
    assert set(result["activation_mb"]) == {"1", "4"} and result["parameters"] == parameter_count(net())


def test_estimate_survives_a_model_that_takes_another_input():
    result = estimate(nn.Linear(2, 3), IMAGE_INPUT)
    assert result["activation_mb"] is None and "did not run" in result["activation_note"]
    assert result["parameters"] == 9


@pytest.mark.parametrize(
    "memory_gb, worker_mb, cores, fit",
    [(8, 1200, 2, 2), (2, 1200, 16, 1), (64, 1200, 16, 16), (1, 1200, 2, 0)],
)
def test_workers_that_fit(memory_gb, worker_mb, cores, fit):
    result = workers_that_fit(memory_gb * 2**30, worker_mb * MB, cores)
    assert result["fit"] == fit and result["by_cores"] == cores


def test_memory_now_sees_an_allocation():
    before = memory_now()
    block = b"\x01" * (64 * MB)  # written, so its pages are resident
    after = memory_now()
    assert after["rss_mb"] - before["rss_mb"] >= 48 and len(block) == 64 * MB
    assert after["peak_rss_mb"] >= after["rss_mb"]

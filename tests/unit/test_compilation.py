"""handlers.compilation: compile_model's modes against the eager model."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from handlers.compilation import compile_model


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.mark.parametrize("mode", ["none", "trace"])
def test_compiled_model_matches_eager_at_every_batch_size(mode):
    torch.manual_seed(0)
    model = ConvNet().eval()
    with torch.no_grad():
        model.features[1].running_mean.uniform_(-1, 1)  # batch norm statistics that freezing folds
    compiled = compile_model(model, mode, torch.zeros(4, 3, 16, 16), contextlib.nullcontext)
    assert (compiled is model) == (mode == "none")
    for batch in (1, 3, 4, 9):  # the trace was on 4; the batch dimension stays free
        x = torch.randn(batch, 3, 16, 16)
        with torch.inference_mode():
            torch.testing.assert_close(compiled(x), model(x), atol=1e-5, rtol=1e-4)


def test_unknown_compile_mode():
    with pytest.raises(ValueError, match="compile mode"):
        compile_model(ConvNet(), "tensorrt", torch.zeros(1, 3, 8, 8), contextlib.nullcontext)


def test_cudagraphs_is_refused_on_a_cpu_worker():
    with pytest.raises(ValueError, match="cudagraphs needs a CUDA worker"):
        compile_model(ConvNet(), "cudagraphs", torch.zeros(1, 3, 8, 8), contextlib.nullcontext, (1, 2))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("precision", [None, torch.float16])
def test_cuda_graphs_replay_what_eager_computes(precision):
    """Each warmed size replays its own graph with fresh inputs (no stale buffer, no freed autocast cast);
    another size runs eagerly."""
    torch.manual_seed(0)
    model = ConvNet().eval().cuda()
    autocast = (lambda: torch.autocast("cuda", dtype=precision)) if precision else contextlib.nullcontext
    graphed = compile_model(model, "cudagraphs", torch.zeros(4, 3, 16, 16, device="cuda"), autocast, (4, 2, 1))
    for batch in (4, 2, 1, 4, 3, 2):
        x = torch.randn(batch, 3, 16, 16, device="cuda")
        with torch.inference_mode(), autocast():
            got, expected = graphed(x), model(x)
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=2e-3)
    assert sorted(key[0][0] for key in graphed.graphs) == [1, 2, 4]

"""The model replayed from one CUDA graph per batch size the worker warms (`compile: cudagraphs`).

Why: eager PyTorch launches each of the model's kernels from Python, one by one; at small batches
the GPU waits on those launches (batch 1 took 2.6 ms in process on an H200, most of it launching,
docs/gpu.md). A CUDA graph records the launches once and replays them in one call. The graphs
are captured during the handler's warm-up, which runs every batch size the worker will meet
(padded buckets, or every size up to batchSize), so no client meets a capture.

What a graph needs, and how it is given it here:
- fixed shapes and addresses: one graph per input shape, each with its own input buffer that a
  batch is copied into; the output is cloned before the next replay overwrites it;
- no autocast weight cache: autocast caches the fp16 copies of weights that require grad, and frees
  them when its context exits, which would leave a graph reading freed memory. The weights here
  do not require grad, so every replay casts them afresh (a few MB, microseconds);
- warm runs on a side stream before capture (cuDNN picks its algorithms, lazy initialisation);
- one memory pool shared by the graphs: they never run at the same time in a worker.
A batch size that was never warmed (a v2 request carrying more images than batchSize) runs eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

log = logging.getLogger(__name__)

WARM_RUNS = 3
"""Eager runs on a side stream before each capture (PyTorch's CUDA graphs docs use three)."""


@dataclass
class Captured:
    graph: torch.cuda.CUDAGraph
    input: torch.Tensor
    output: torch.Tensor


class CudaGraphs(nn.Module):
    """`model` on a CUDA device, each batch size in `batch_sizes` captured on first use and replayed."""

    def __init__(self, model: nn.Module, batch_sizes: Iterable[int]) -> None:
        super().__init__()
        self.model = model.requires_grad_(False)  # no autocast weight cache (module docstring)
        self.batch_sizes = frozenset(batch_sizes)
        self.graphs: dict[tuple, Captured] = {}
        self.pool = None

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[0] not in self.batch_sizes:
            return self.model(batch)
        key = (tuple(batch.shape), batch.dtype, torch.is_autocast_enabled(batch.device.type))
        with torch.cuda.device(batch.device):  # a worker on cuda:1 captures and replays there (TorchServe sets no current device)
            captured = self.graphs.get(key)
            if captured is None:
                captured = self.graphs[key] = self._capture(batch)
            captured.input.copy_(batch)
            captured.graph.replay()
            return captured.output.clone()

    def _capture(self, batch: torch.Tensor) -> Captured:
        log.info("capturing a CUDA graph for a batch of shape %s", tuple(batch.shape))
        static_input = batch.clone()  # keeps the batch's memory format (channels_last)
        side = torch.cuda.Stream(device=batch.device)
        side.wait_stream(torch.cuda.current_stream(batch.device))
        with torch.cuda.stream(side):
            for _ in range(WARM_RUNS):
                self.model(static_input)
        torch.cuda.current_stream(batch.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            static_output = self.model(static_input)
        self.pool = graph.pool()
        return Captured(graph, static_input, static_output)


def cuda_graphs(model: nn.Module, device: torch.device, batch_sizes: Iterable[int]) -> CudaGraphs:
    """`model` wrapped for CUDA graphs; refused at load on a CPU worker, as fp16 is."""
    if device.type != "cuda":
        raise ValueError(f"compile cudagraphs needs a CUDA worker (this one runs on {device}); on a CPU use trace")
    return CudaGraphs(model, batch_sizes)

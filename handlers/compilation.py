"""Compile the model for serving: a TorchScript trace (frozen), torch.compile with inductor, or
CUDA graphs per warmed batch size on a GPU worker (handlers.cuda_graphs).

Both specialise under the worker's autocast, so the compiled graph holds the precision casts.
Measured on 2 CPU cores (docs/performance.md): trace + freeze takes under a second and folds
batch norms into the convolutions; inductor takes tens of seconds per worker start (and again
for a new batch shape), which a cold start of a few seconds cannot afford. torch 2.14 marks
TorchScript deprecated (a FutureWarning, silenced here); it still runs, and is chosen by measurement.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterable

import torch
from torch import nn

from handlers.cuda_graphs import cuda_graphs


def compile_model(
    model: nn.Module, mode: str, example: torch.Tensor, autocast: Callable[[], contextlib.AbstractContextManager],
    batch_sizes: Iterable[int] = (),
) -> nn.Module:
    """`model` compiled as `mode` says (none, trace, inductor, cudagraphs); `example` is a batch as
    served, on the worker's device; `batch_sizes` the sizes the warm-up runs (cudagraphs captures those)."""
    if mode == "none":
        return model
    if mode == "trace":
        return trace_frozen(model, example, autocast)
    if mode == "inductor":
        return inductor(model)
    if mode == "cudagraphs":
        return cuda_graphs(model, example.device, batch_sizes)
    raise ValueError(f"unknown compile mode {mode!r}; expected none, trace, inductor or cudagraphs")


def trace_frozen(
    model: nn.Module, example: torch.Tensor, autocast: Callable[[], contextlib.AbstractContextManager]
) -> nn.Module:
    """Trace on `example` and freeze: weights become constants, batch norms fold into convolutions.

    A trace records one path through the model: right for networks without data-dependent
    control flow (convolutional classifiers); the batch dimension stays free.
    """
    with torch.inference_mode(), autocast(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="torch.jit")  # deprecated, see above
        return torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))


def inductor(model: nn.Module) -> nn.Module:
    """torch.compile with weight freezing; compiles on the first call (the handler's warm-up)."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return torch.compile(model, backend="inductor")

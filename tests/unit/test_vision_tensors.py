"""image_to_tensor, normalize_batch and top_k_labels: the tensor half of handlers.vision."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from handlers.config import IMAGENET_MEAN, IMAGENET_STD
from handlers.vision import image_to_tensor, normalize_batch, top_k_labels

@pytest.mark.parametrize(
    "size, resize, crop",
    [((451, 300), 256, 224), ((300, 451), 256, 224), ((1, 1), 256, 224), ((4000, 10), 32, 32), ((224, 224), 224, 224)],
)
def test_image_to_tensor_shape_and_dtype(size, resize, crop):
    tensor = image_to_tensor(Image.new("RGB", size, (10, 20, 30)), resize, crop)
    assert tensor.shape == (3, crop, crop)
    assert tensor.dtype == torch.uint8
    assert tensor[:, crop // 2, crop // 2].tolist() == [10, 20, 30]


def test_image_to_tensor_resizes_the_shorter_side_then_centre_crops():
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 60, 200))  # a white strip on the left: cropped away
    image.paste((255, 0, 0), (160, 60, 240, 140))  # a red square in the middle: kept, halved
    tensor = image_to_tensor(image, 100, 100)  # -> 200x100, centre crop keeps x in [50, 150)
    assert tensor[1:].max().item() == 0  # no white anywhere
    red = tensor[0] > 128
    assert red.sum().item() == pytest.approx(40 * 40, rel=0.1)
    assert red[50, 50] and not red[50, 20]


def test_normalize_batch_matches_torchvision():
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch.float() / 255)
    result = normalize_batch(batch, IMAGENET_MEAN, IMAGENET_STD)
    assert result.dtype == torch.float32 and result.shape == batch.shape
    torch.testing.assert_close(result, reference)


def test_normalize_batch_per_channel():
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    result = normalize_batch(batch, (0.0, 0.5, 1.0), (1.0, 0.5, 2.0))
    assert result[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]


LABELS = ["cat", "dog", "bird", "fish"]


@pytest.mark.parametrize(
    "probabilities, labels, k, expected",
    [
        ([0.1, 0.6, 0.2, 0.1], LABELS, 2, [("dog", 0.6), ("bird", 0.2)]),
        ([0.1, 0.6, 0.3], LABELS[:3], 1, [("dog", 0.6)]),
        ([0.7, 0.3], ["cat", "dog"], 5, [("cat", 0.7), ("dog", 0.3)]),  # k above the class count
        ([0.25, 0.5, 0.25], ["crane", "x", "crane"], 3, [("x", 0.5), ("crane", 0.25), ("crane (2)", 0.25)]),
        ([0.2, 0.8], ["only-one"], 2, [("1", 0.8), ("only-one", 0.2)]),  # fewer labels than classes
        ([0.2, 0.8], [], 2, [("1", 0.8), ("0", 0.2)]),
    ],
)
def test_top_k_labels(probabilities, labels, k, expected):
    result = top_k_labels(torch.tensor(probabilities), labels, k)
    assert list(result) == [label for label, _ in expected]  # most probable first
    assert list(result.values()) == pytest.approx([p for _, p in expected])


def test_top_k_values_are_json_floats_in_descending_order():
    probabilities = torch.softmax(torch.randn(1000, generator=torch.Generator().manual_seed(1)), 0)
    result = top_k_labels(probabilities, [f"c{i}" for i in range(1000)], 5)
    values = list(result.values())
    assert len(result) == 5 and values == sorted(values, reverse=True)
    assert all(type(v) is float for v in values)
    assert next(iter(result)) == f"c{probabilities.argmax().item()}"

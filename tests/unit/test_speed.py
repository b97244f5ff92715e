"""Speed settings: precision fallback, threads, warm-up sizes, compilation, one-pass resize+crop, JPEG draft."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from handlers.base import effective_precision, thread_count, warmup_sizes
from handlers.compilation import compile_model
from handlers.config import ImageSettings, parse_settings
from handlers.vision import centre_crop_box, decode_image, image_to_tensor

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


@pytest.mark.parametrize("batch, expected", [(8, (8, 1, 8, 1)), (1, (1, 1)), (2, (2, 1, 2, 1))])
def test_warmup_sizes(batch, expected):
    assert warmup_sizes(batch) == expected


@pytest.mark.parametrize(
    "raw, message",
    [({"compile": "jit"}, "compile"), ({"threads": -1}, "threads"), ({"channels_last": "yes"}, "channels_last"),
     ({"jpeg_draft": 1}, "jpeg_draft")],
    ids=repr,
)
def test_speed_settings_are_checked(raw, message):
    with pytest.raises(ValueError, match=message):
        parse_settings(ImageSettings, raw)


def test_speed_setting_defaults():
    settings = ImageSettings()
    assert (settings.compile, settings.channels_last, settings.jpeg_draft, settings.threads) == ("none", False, True, 0)


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


def torchvision_resize_crop(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    resized = F.resize(image, [resize], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return F.pil_to_tensor(F.center_crop(resized, [crop, crop]))


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (600, 400), (257, 256), (1000, 999), (37, 500)])
def test_one_pass_resize_crop_matches_torchvision(chelsea, size):
    image = chelsea.resize(size)
    ours, theirs = image_to_tensor(image, 256, 224).int(), torchvision_resize_crop(image, 256, 224).int()
    assert (ours - theirs).abs().max().item() <= 2
    assert (ours - theirs).abs().float().mean().item() < 0.5


@pytest.mark.parametrize("size, resize, crop", [((400, 200), 100, 100), ((200, 400), 100, 50), ((300, 300), 256, 224)])
def test_centre_crop_box_is_the_kept_region(size, resize, crop):
    left, top, right, bottom = centre_crop_box(size, resize, crop)
    scale = min(size) / resize
    assert right - left == pytest.approx(crop * scale) and bottom - top == pytest.approx(crop * scale)
    assert left + right == pytest.approx(size[0], abs=scale * 1.01)  # centred, up to one rounded pixel
    assert top + bottom == pytest.approx(size[1], abs=scale * 1.01)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "size, min_side, expected",
    [
        ((2400, 1600), 512, (1200, 800)),  # 1/2: at 1/4 the shorter side would be 400 < 512
        ((4800, 3200), 512, (1200, 800)),  # 1/4
        ((2400, 1600), 0, (2400, 1600)),  # no draft asked
        ((1000, 700), 512, (1000, 700)),  # 1/2 would go below 512
        ((4096, 3072), 256, (512, 384)),  # 1/8 at most
    ],
)
def test_jpeg_draft_never_goes_below_min_side(chelsea, size, min_side, expected):
    decoded = decode_image(jpeg(chelsea.resize(size)), 40_000_000, min_side=min_side)
    assert decoded.size == expected and decoded.mode == "RGB"


def test_draft_leaves_other_formats_alone(chelsea, encode):
    png = encode(chelsea.resize((1200, 800)), "PNG")
    assert decode_image(png, 40_000_000, min_side=256).size == (1200, 800)

"""handlers.jpeg_batch: which JPEGs the batch decoder takes, one bad JPEG in a list, and its pixels
against the CPU path's (torchvision's decoder runs on the CPU too; on a GPU it is nvjpeg)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from handlers.jpeg_batch import batch_decodable, decode_jpegs, resize_and_crop
from handlers.vision import decode_image, image_to_tensor, open_header

CPU = torch.device("cpu")
ORIENTATION = 0x0112


def header(raw: bytes) -> Image.Image:
    return open_header(raw, max_pixels=50_000_000)


def with_orientation(image: Image.Image, encode, value: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = value
    return encode(image, "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(
    "variant, expected",
    [
        (lambda im, enc: enc(im, "JPEG"), True),
        (lambda im, enc: enc(im.convert("L"), "JPEG"), True),
        (lambda im, enc: with_orientation(im, enc, 1), True),  # "upright" needs no turning
        (lambda im, enc: with_orientation(im, enc, 6), False),  # nvjpeg does not apply EXIF orientation
        (lambda im, enc: enc(im.convert("CMYK"), "JPEG"), False),
        (lambda im, enc: enc(im, "JPEG", progressive=True), False),  # nvjpeg decodes those slowly
        (lambda im, enc: enc(im, "PNG"), False),
        (lambda im, enc: enc(im, "WEBP"), False),
    ],
    ids=["baseline", "grey", "exif-upright", "exif-rotated", "cmyk", "progressive", "png", "webp"],
)
def test_batch_decodable(chelsea, encode, variant, expected):
    assert batch_decodable(header(variant(chelsea, encode)), max_decoded_pixels=16_000_000) is expected


def test_over_max_decoded_pixels_stays_on_the_cpu_path(chelsea, encode):
    """The CPU path drafts a large JPEG at reduced scale; the batch decoder would decode it whole."""
    raw = encode(chelsea, "JPEG")  # 451x300
    assert batch_decodable(header(raw), max_decoded_pixels=451 * 300)
    assert not batch_decodable(header(raw), max_decoded_pixels=451 * 300 - 1)


def test_one_corrupt_jpeg_fails_alone(chelsea, coffee, encode):
    """torchvision fails a whole list on one bad image; the good ones still come back, in order."""
    good, other = encode(chelsea, "JPEG"), encode(coffee, "JPEG")
    decoded = decode_jpegs([good, good[: len(good) // 2], other], CPU)
    assert decoded[1] is None
    assert tuple(decoded[0].shape) == (3, 300, 451) and tuple(decoded[2].shape) == (3, 400, 600)
    assert decoded[0].dtype == torch.uint8 and decoded[0].device == CPU


def test_grey_jpegs_come_back_rgb(chelsea, encode):
    (image,) = decode_jpegs([encode(chelsea.convert("L"), "JPEG")], CPU)
    assert image.shape[0] == 3 and torch.equal(image[0], image[1])


def test_empty_list():
    assert decode_jpegs([], CPU) == []


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (1200, 800), (257, 256)])
def test_pixels_match_the_cpu_path(chelsea, encode, size):
    """The batch path (decode whole, antialiased resize, crop) against PIL's (one box resample):
    the same crop, a few grey levels apart on average (the classifier agrees on >= 99% of crops:
    scripts/measure/agreement.py)."""
    raw = encode(chelsea.resize(size), "JPEG", quality=95)
    (decoded,) = decode_jpegs([raw], CPU)
    batch = resize_and_crop(decoded, 256, 224)
    cpu = image_to_tensor(decode_image(raw, max_pixels=50_000_000), 256, 224)
    assert batch.shape == cpu.shape == (3, 224, 224) and batch.dtype == torch.uint8
    assert (batch.float() - cpu.float()).abs().mean() < 2.0

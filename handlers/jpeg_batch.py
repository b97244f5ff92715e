"""A batch's JPEGs decoded in one call on the worker's device: nvjpeg on a GPU, libjpeg on a CPU.

Pure functions, no TorchServe imports. On a GPU worker, decoding each photo with PIL on one CPU
thread (2.5-9 ms a photo) left the GPU 98% idle; `torchvision.io.decode_jpeg(list, device="cuda")`
decodes a batch of 64 at about 13,000 images/s (docs/gpu.md). Its limits decide what it is given:

- it fails the whole list on one bad image, so a failed list is decoded again one image at a time,
  and an image that still fails is left to the caller (the CPU path answers it, or refuses it);
- it takes baseline and progressive JPEGs in YCbCr or grey (progressive ones slowly), no CMYK,
  and does not apply EXIF orientation: `batch_decodable` keeps those on the CPU path;
- it decodes at full size, with no reduced-scale (draft) decoding: images over
  `max_decoded_pixels` stay on the CPU path, which drafts them, so the bound on what one request
  may make the worker decode holds on both paths.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

ORIENTATION = 0x0112
BATCH_MODES = frozenset({"RGB", "L"})
"""PIL's names for a JPEG stored as YCbCr and as grey: what the batch decoder turns into RGB."""


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG whose header passed the request checks, left encoded for the batch decoder."""

    raw: bytes
    size: tuple[int, int]
    """(width, height) from the header."""


def batch_decodable(header: Image.Image, max_decoded_pixels: int) -> bool:
    """Whether the batch decoder gives this JPEG the pixels the CPU path would (from its header alone)."""
    width, height = header.size
    return (
        header.format == "JPEG"
        and header.mode in BATCH_MODES
        and not (header.info.get("progressive") or header.info.get("progression"))
        and width * height <= max_decoded_pixels
        and header.getexif().get(ORIENTATION, 1) == 1
    )


def decode_jpegs(raws: list[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """RGB uint8 CHW tensors on `device`, one per JPEG in order; None for one that does not decode.

    One call for the whole list; when it fails (a single corrupt image fails them all), each image
    is decoded alone so the good ones still come back.
    """
    if not raws:
        return []
    data = [torch.frombuffer(bytearray(raw), dtype=torch.uint8) for raw in raws]
    try:
        return list(_decode(data, device))
    except RuntimeError:
        return [_decode_alone(one, device) for one in data]


def _decode_alone(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    try:
        return _decode([data], device)[0]
    except RuntimeError:
        return None


def _decode(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    with warnings.catch_warnings():  # torchvision 0.29 marks its codecs deprecated; TorchCodec is not a dependency yet
        warnings.filterwarnings("ignore", message="The image decoding", category=DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def resize_and_crop(image: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Shorter side to `resize` (antialiased bilinear), then the centre `crop` square, on the image's
    device: torchvision's Resize + CenterCrop, the pixels the CPU path's `image_to_tensor` matches."""
    return F.center_crop(F.resize(image, [resize], antialias=True), [crop, crop])

"""Pure image functions: request payload -> encoded bytes -> RGB image -> tensors -> labels.

No TorchServe imports: everything here is unit-tested without a server.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import math
from typing import Any, Mapping, Sequence

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2 import functional as F

from handlers.errors import (
    EmptyPayload,
    InvalidPayload,
    PayloadTooLarge,
    UndecodableInput,
    UnsupportedDimensions,
    UnsupportedMediaType,
)
from handlers.payload import json_type, request_payload

SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
SEND_AN_IMAGE = (
    "send the image bytes with an image or octet-stream Content-Type "
    "(curl -T photo.jpg, or --data-binary @photo.jpg -H 'Content-Type: image/jpeg'), "
    "multipart field 'data' (curl -F data=@photo.jpg), or JSON {\"data\": \"<base64>\"}"
)


def extract_image_bytes(request: Mapping[str, Any], max_bytes: int) -> bytes:
    """Find the encoded image in one TorchServe request dict (`data` or `body`)."""
    payload = request_payload(request)
    if payload is None:
        raise UnsupportedMediaType(f"no image in the request body; {SEND_AN_IMAGE}")
    if isinstance(payload, (bytes, bytearray)):
        raw = bytes(payload)
    elif isinstance(payload, Mapping):
        raw = _base64_field(payload)
    elif isinstance(payload, str):
        raw = decode_base64(payload)
    else:
        raise InvalidPayload(f"a JSON {json_type(payload)} is not an image request; {SEND_AN_IMAGE}")
    return check_encoded_size(raw, max_bytes, SEND_AN_IMAGE)


def check_encoded_size(raw: bytes, max_bytes: int, how_to_send: str) -> bytes:
    """`raw`, unless it is empty (400, saying `how_to_send` one) or over `max_bytes` (413)."""
    if not raw:
        raise EmptyPayload(f"the image is empty; {how_to_send}")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the image is {len(raw)} bytes; the limit is {max_bytes}")
    return raw


def _base64_field(payload: Mapping[str, Any]) -> bytes:
    value = payload.get("data")
    if not isinstance(value, str):
        raise InvalidPayload('JSON input must look like {"data": "<base64-encoded image>"}')
    return decode_base64(value)


def decode_base64(text: str) -> bytes:
    """Strict base64 (a data: URL prefix is allowed); garbage is a 400, not a silent mess."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPayload(f"the image is not valid base64: {exc}") from None


def decode_image(raw: bytes, max_pixels: int, min_side: int = 0, max_decoded_pixels: int | None = None) -> Image.Image:
    """Decode a photo as cameras and phones make them: first frame, EXIF orientation, RGB.

    With `min_side`, a JPEG is decoded at 1/2, 1/4 or 1/8 scale in the DCT when both sides stay
    at least `min_side` (PIL's draft mode): a 12-megapixel photo decodes about 8x faster.
    `max_decoded_pixels` bounds what is really decoded, after that reduction: the worker's time
    and memory follow it, not the bytes on the wire (a 0.2 MB PNG can hold 40 megapixels).
    """
    image = open_header(raw, max_pixels)
    try:
        image.seek(0)
        if min_side > 0:
            image.draft(None, (min_side, min_side))  # a no-op for formats other than JPEG
        _check_decoded_size(image, max_pixels if max_decoded_pixels is None else max_decoded_pixels)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UndecodableInput(f"the {image.format} image is corrupt or truncated ({exc})") from None
    return to_rgb(apply_exif_orientation(image))


def open_header(raw: bytes, max_pixels: int) -> Image.Image:
    """Read only the header, so size limits apply before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"the image has too many pixels: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise UndecodableInput(
            "the body is not an image this server decodes (JPEG, PNG, WebP, GIF, BMP, TIFF)"
        ) from None
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"{image.format} images are not supported; send JPEG, PNG, WebP, GIF, BMP or TIFF")
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLarge(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    if min(width, height) < 1:
        raise UndecodableInput(f"the image has no pixels ({width}x{height})")
    return image


def _check_decoded_size(image: Image.Image, max_decoded_pixels: int) -> None:
    width, height = image.size
    if width * height > max_decoded_pixels:
        raise PayloadTooLarge(
            f"the {image.format} image is {width}x{height} pixels, decoded at full size; the limit for that is "
            f"{max_decoded_pixels} pixels (max_decoded_pixels; a JPEG is decoded at reduced scale: send a JPEG "
            "or a smaller image)")


def check_proportions(size: tuple[int, int], resize: int, max_upscale: float, max_aspect_ratio: float) -> None:
    """Refuse shapes with nothing to classify: a tracking pixel, or a 100000x1 strip whose
    centre crop would be a sliver stretched a thousandfold."""
    width, height = size
    short, long = min(size), max(size)
    if short * max_upscale < resize:
        raise UnsupportedDimensions(
            f"the image is {width}x{height} pixels; its shorter side must be at least "
            f"{math.ceil(resize / max_upscale)} pixels")
    if long > short * max_aspect_ratio:
        raise UnsupportedDimensions(
            f"the image is {width}x{height} pixels, {long / short:.0f}:1; the longest side may be "
            f"at most {max_aspect_ratio:g} times the shortest")


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate as the EXIF Orientation tag says; broken EXIF leaves the image as stored.

    In place: the freshly decoded image is ours, and without an orientation to apply a copy
    of every pixel would be made for nothing."""
    with contextlib.suppress(OSError, SyntaxError, ValueError, TypeError, KeyError, ZeroDivisionError):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any mode to 8-bit RGB: 16-bit scaled down, transparency composited on white."""
    if image.mode.startswith("I;16") or (image.mode == "I" and image.getextrema()[1] > 255):
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image


def image_to_tensor(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    """Resize the shorter side to `resize`, centre-crop `crop`; uint8 CHW (normalised later, batched).

    One resampling of only the region that survives the crop (PIL's `box`): the pixels of
    torchvision's Resize + CenterCrop, without computing the ones the crop throws away.
    """
    box = centre_crop_box(image.size, resize, crop)
    return F.pil_to_tensor(image.resize((crop, crop), Image.Resampling.BILINEAR, box=box))


def centre_crop_box(size: tuple[int, int], resize: int, crop: int) -> tuple[float, float, float, float]:
    """The source region that Resize(resize) then CenterCrop(crop) keeps, with torchvision's
    rounding (long side truncated, crop offsets rounded)."""
    width, height = size
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    left, top = int(round((new_w - crop) / 2.0)), int(round((new_h - crop) / 2.0))
    scale_x, scale_y = width / new_w, height / new_h
    return (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)


def normalize_batch(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NCHW -> float NCHW, scaled to [0, 1] and standardised: (x / 255 - mean) / std as one
    multiply and one subtract in place (2.6 -> 0.9 ms for 8 photos on one CPU thread; within 5e-7)."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=batch.device).view(1, -1, 1, 1)
    return batch.float().mul_(1.0 / (255.0 * std_t)).sub_(mean_t / std_t)


def top_k_labels(probabilities: torch.Tensor, labels: Sequence[str], k: int) -> dict[str, float]:
    """{label: probability} for the k most probable classes, highest first.

    A label that repeats in a user's label file gets its class index appended, so no entry is
    lost to a dict key collision.
    """
    values, indices = probabilities.topk(min(k, probabilities.numel()))
    result: dict[str, float] = {}
    for value, index in zip(values.tolist(), indices.tolist(), strict=True):
        label = labels[index] if index < len(labels) else str(index)
        if label in result:
            label = f"{label} ({index})"
        result[label] = round(value, 6)
    return result

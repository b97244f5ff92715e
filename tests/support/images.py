"""Images made in memory for the tests: one encoder, one noise image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_image(image: Image.Image, fmt: str, **save_args) -> bytes:
    """`image` encoded as `fmt` (PIL's format name), with PIL's save options."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def noise_png(megabytes: float) -> bytes:
    """An uncompressed PNG of random pixels, about `megabytes` large: a body no codec shrinks."""
    side = int((megabytes * 1e6 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode_image(Image.fromarray(pixels), "PNG", compress_level=0)

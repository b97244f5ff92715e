"""Fixtures shared by the unit and handler tiers: two real photos and an in-memory encoder."""

from __future__ import annotations

import io
from typing import Callable

import pytest
from PIL import Image


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    """A tabby cat, 451x300 RGB (scikit-image's bundled data: no download)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    """A cup of espresso, 600x400 RGB."""
    from skimage import data

    return Image.fromarray(data.coffee())


def encode_image(image: Image.Image, fmt: str, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(image, "PNG", **save_args) -> the encoded bytes."""
    return encode_image

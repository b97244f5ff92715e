"""Real photos through the real server: labels, input encodings, formats and orientation."""

from __future__ import annotations

import base64
import json

import pytest
from PIL import Image

from tests.integration.conftest import encode

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}
MODEL = "efficientnet_lite0"


def top1(response) -> str:
    assert response.status_code == 200, response.text
    return next(iter(response.json()))


def test_cat_photo_from_samples_is_a_cat(server):
    """The README's curl: `curl -T samples/cat.jpg` (a PUT-style raw body)."""
    from scripts.client.torchserve import REPO

    response = server.predict(MODEL, data=(REPO / "samples" / "cat.jpg").read_bytes())
    labels = response.json()
    assert top1(response) in CATS
    assert len(labels) == 5
    assert list(labels.values()) == sorted(labels.values(), reverse=True)
    assert 0.5 < sum(labels.values()) <= 1.0 + 1e-6


def test_coffee_is_espresso(server, coffee):
    assert top1(server.predict(MODEL, data=encode(coffee, "PNG"))) == "espresso"


def test_base64_json(server, coffee):
    payload = {"data": base64.b64encode(encode(coffee, "JPEG")).decode()}
    assert top1(server.predict(MODEL, json=payload)) == "espresso"


def test_base64_json_with_a_byte_order_mark(server, coffee):
    """PowerShell writes JSON files with a BOM; TorchServe's json.loads refuses it and the handler reads it."""
    body = b"\xef\xbb\xbf" + json.dumps({"data": base64.b64encode(encode(coffee, "JPEG")).decode()}).encode()
    assert top1(server.predict(MODEL, data=body, headers={"Content-Type": "application/json"})) == "espresso"


def test_multipart_form_field(server, chelsea):
    response = server.predict(MODEL, files={"data": ("cat.jpg", encode(chelsea, "JPEG"), "image/jpeg")})
    assert top1(response) in CATS


@pytest.mark.parametrize(
    "variant",
    ["jpeg", "png", "webp", "rgba-png", "grayscale-jpeg", "cmyk-jpeg", "exif-rotated-jpeg", "gif"],
)
def test_label_does_not_depend_on_format_mode_or_orientation(server, coffee, variant):
    assert top1(server.predict(MODEL, data=_variant(coffee, variant))) == "espresso"


def _variant(image: Image.Image, variant: str) -> bytes:
    if variant == "exif-rotated-jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated; viewers turn it 90 degrees clockwise back upright
        return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=92)
    converted = {
        "rgba-png": lambda: image.convert("RGBA"),
        "grayscale-jpeg": lambda: image.convert("L"),
        "cmyk-jpeg": lambda: image.convert("CMYK"),
    }.get(variant, lambda: image)()
    fmt = {"png": "PNG", "rgba-png": "PNG", "webp": "WEBP", "gif": "GIF"}.get(variant, "JPEG")
    return encode(converted, fmt)


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"", {"Content-Type": "application/octet-stream"}, 400, "empty_payload"),
        (b"<html>not an image</html>", {"Content-Type": "image/jpeg"}, 422, "undecodable_input"),
        # curl --data-binary without -H sends this type; TorchServe parses the body away as a form
        (b"hello", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ],
)
def test_bad_input_gets_json_4xx_and_the_worker_survives(server, coffee, body, headers, status, error):
    response = server.predict(MODEL, data=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert top1(server.predict(MODEL, data=encode(coffee, "JPEG"))) == "espresso"

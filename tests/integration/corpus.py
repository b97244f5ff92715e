"""The bad-input corpus: hostile, broken and malformed requests, each with the answer it must get
from the image endpoint (and, in its body, from the workflow) and from the text endpoint.

Each entry builds its request lazily (requests' `data`/`headers` or `files`), so collecting the
tests costs nothing. An expectation is (status, error code); (200, None) marks an input that is
valid there (an animated GIF is a photo; an HTML page is text to the text endpoint), and
FRONTEND_413 a body TorchServe's frontend refuses before any handler sees it.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

from PIL import Image

from scripts.client.torchserve import REPO
from tests.support.images import encode_image

Expect = tuple[int, str | None]

OK: Expect = (200, None)
EMPTY: Expect = (400, "empty_payload")
INVALID: Expect = (400, "invalid_payload")
TOO_LARGE: Expect = (413, "payload_too_large")
MEDIA: Expect = (415, "unsupported_media_type")
UNDECODABLE: Expect = (422, "undecodable_input")
DIMENSIONS: Expect = (422, "unsupported_dimensions")
FRONTEND_413: Expect = (413, "")
"""max_request_size: Netty's aggregator answers 413 with an empty body; no handler runs."""

MAX_REQUEST_SIZE = 20971520  # config.properties
JSON = "application/json"
OCTETS = "application/octet-stream"


@dataclass(frozen=True)
class BadInput:
    name: str
    build: Callable[[], dict]
    """requests.post keyword arguments: data and headers, or files."""
    image: Expect
    """/predictions/efficientnet_lite0; the workflow answers it in its body."""
    text: Expect
    """/predictions/minilm."""


# ---- builders --------------------------------------------------------------------------------
def photo() -> bytes:
    return (REPO / "samples" / "coffee.jpg").read_bytes()


def raw(content_type: str, make: Callable[[], bytes]) -> Callable[[], dict]:
    return lambda: {"data": make(), "headers": {"Content-Type": content_type}}


def as_json(value) -> Callable[[], dict]:
    return raw(JSON, lambda: json.dumps(value).encode())


def png_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit side x side PNG of zeros: 110 KB on the wire, 2.7 GB once decoded to RGB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row, stream = b"\x00" + bytes((side + 7) // 8), zlib.compressobj(9)
    idat = b"".join(stream.compress(row) for _ in range(side)) + stream.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) claims width x height."""
    data = bytearray(encode_image(Image.new("RGB", (64, 64), (200, 100, 50)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode_image(Image.new("P", (4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    return bytes(data)


def png_with_broken_data() -> bytes:
    data = bytearray(encode_image(Image.new("RGB", (64, 64), (200, 100, 50)), "PNG"))
    data[data.find(b"IDAT") + 10] ^= 0xFF
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.open(io.BytesIO(photo())).convert("RGB"), Image.new("RGB", (600, 400), (0, 0, 255))]
    return encode_image(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def corrupt_exif_jpeg() -> bytes:
    """The photo with an EXIF block whose IFD offset points far past its end."""
    return encode_image(Image.open(io.BytesIO(photo())), "JPEG", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")


def blank(width: int, height: int, fmt: str = "PNG") -> bytes:
    return encode_image(Image.new("L", (width, height), 128), fmt)


def nested(depth: int) -> bytes:
    return b'{"text": ' + b"[" * depth + b"]" * depth + b"}"


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n%%EndComments\n0 0 moveto 100 100 lineto stroke\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><circle r="40"/></svg>'
HTML = b"<!doctype html><html><body><h1>404 Not Found</h1></body></html>"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ---- the corpus ------------------------------------------------------------------------------
CORPUS: list[BadInput] = [
    # nothing, or nothing where the handler looks
    BadInput("empty-body", raw(OCTETS, lambda: b""), EMPTY, EMPTY),
    BadInput("empty-body-json", raw(JSON, lambda: b""), EMPTY, EMPTY),  # empty, not JSON that does not parse
    BadInput("json-null", raw(JSON, lambda: b"null"), MEDIA, MEDIA),
    BadInput("form-urlencoded", raw("application/x-www-form-urlencoded", lambda: b"hello"), MEDIA, MEDIA),
    BadInput("multipart-wrong-field", lambda: {"files": {"file": ("x.jpg", photo(), "image/jpeg")}}, MEDIA, MEDIA),
    # broken images
    BadInput("truncated-jpeg", raw("image/jpeg", lambda: photo()[: len(photo()) // 3]), UNDECODABLE, UNDECODABLE),
    BadInput("truncated-png", raw("image/png", lambda: blank(300, 200)[:60]), UNDECODABLE, UNDECODABLE),
    BadInput("jpeg-header-only", raw("image/jpeg", lambda: photo()[:200]), UNDECODABLE, UNDECODABLE),
    BadInput("truncated-webp", raw("image/webp", lambda: encode_image(Image.open(io.BytesIO(photo())), "WEBP")[:300]),
             UNDECODABLE, UNDECODABLE),
    BadInput("png-broken-data", raw("image/png", png_with_broken_data), UNDECODABLE, UNDECODABLE),
    BadInput("random-bytes", raw(OCTETS, lambda: random.Random(0).randbytes(4096)), UNDECODABLE, UNDECODABLE),
    BadInput("nul-bytes", raw(OCTETS, lambda: bytes(64)), UNDECODABLE, INVALID),
    # not images at all, or images of a kind not served
    BadInput("html-as-jpeg", raw("image/jpeg", lambda: HTML), UNDECODABLE, OK),
    BadInput("text-as-png", raw("image/png", lambda: b"just some words"), UNDECODABLE, OK),
    BadInput("svg", raw("image/svg+xml", lambda: SVG), UNDECODABLE, OK),
    BadInput("pdf", raw("application/pdf", lambda: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
             UNDECODABLE, UNDECODABLE),
    BadInput("eps-never-reaches-ghostscript", raw("application/postscript", lambda: EPS), MEDIA, OK),
    BadInput("ico", raw("image/x-icon", lambda: encode_image(Image.new("RGB", (32, 32)), "ICO")), MEDIA, UNDECODABLE),
    BadInput("tga", raw(OCTETS, lambda: encode_image(Image.new("RGB", (32, 32), (9, 9, 9)), "TGA")), MEDIA, INVALID),  # ASCII bytes, NULs
    # sizes and shapes
    BadInput("png-bomb-30000x30000", raw("image/png", png_bomb), TOO_LARGE, UNDECODABLE),
    BadInput("jpeg-header-65500x65500", raw("image/jpeg", lambda: jpeg_claiming(65500, 65500)), TOO_LARGE, UNDECODABLE),
    BadInput("gif-screen-65535x65535", raw("image/gif", lambda: gif_claiming(65535, 65535)), TOO_LARGE, UNDECODABLE),
    BadInput("over-max-request-size", raw(OCTETS, lambda: b"\xff" * (MAX_REQUEST_SIZE + 1)), FRONTEND_413, FRONTEND_413),
    BadInput("one-pixel", raw("image/png", lambda: blank(1, 1)), DIMENSIONS, UNDECODABLE),
    BadInput("icon-8x8", raw("image/png", lambda: blank(8, 8)), DIMENSIONS, UNDECODABLE),
    BadInput("strip-100000x1", raw("image/png", lambda: blank(100_000, 1)), DIMENSIONS, UNDECODABLE),
    BadInput("strip-1x100000", raw("image/png", lambda: blank(1, 100_000)), DIMENSIONS, UNDECODABLE),
    BadInput("strip-20000x100", raw("image/png", lambda: blank(20_000, 100)), DIMENSIONS, UNDECODABLE),
    # valid photos with odd parts: served (README: GIF first frame; broken EXIF leaves the image as stored)
    BadInput("animated-gif", raw("image/gif", animated_gif), OK, UNDECODABLE),
    BadInput("corrupt-exif", raw("image/jpeg", corrupt_exif_jpeg), OK, UNDECODABLE),
    # base64 and JSON
    BadInput("invalid-base64", as_json({"data": "!!not base64!!"}), INVALID, INVALID),
    BadInput("base64-of-text", as_json({"data": b64(b"hello, world")}), UNDECODABLE, INVALID),
    BadInput("json-data-number", as_json({"data": 42}), INVALID, INVALID),
    BadInput("json-text-number", as_json({"text": 42}), INVALID, INVALID),
    BadInput("json-text-null", as_json({"text": None}), INVALID, INVALID),
    BadInput("json-texts-not-a-list", as_json({"texts": "not a list"}), INVALID, INVALID),
    BadInput("json-texts-of-numbers", as_json({"texts": [1, 2]}), INVALID, INVALID),
    BadInput("json-labels-not-a-list", as_json({"text": "a", "labels": "sports"}), INVALID, INVALID),
    BadInput("json-array", as_json([1, 2, 3]), INVALID, INVALID),
    BadInput("json-number", as_json(42), INVALID, INVALID),
    BadInput("json-true", as_json(True), INVALID, INVALID),
    BadInput("json-nan", raw(JSON, lambda: b'{"text": NaN}'), INVALID, INVALID),
    BadInput("json-unknown-keys", as_json({"image": "x", "prompt": "y"}), INVALID, INVALID),
    BadInput("json-malformed", raw(JSON, lambda: b'{"text": '), INVALID, INVALID),  # sent as JSON: the parser's reason
    BadInput("json-array-malformed", raw(JSON, lambda: b'["a", "b"'), INVALID, INVALID),  # was embedded as text (200)
    BadInput("json-nested-500", raw(JSON, lambda: nested(500)), INVALID, INVALID),
    BadInput("json-nested-100000", raw(JSON, lambda: nested(100_000)), INVALID, INVALID),
    BadInput("json-array-nested-5000", raw(JSON, lambda: b"[" * 5000 + b"]" * 5000), INVALID, INVALID),  # was embedded as text
    # text
    BadInput("invalid-utf8", raw("text/plain", lambda: b"caf\xe9 au lait"), UNDECODABLE, UNDECODABLE),
    BadInput("text-with-nul", as_json({"text": "before\x00after"}), INVALID, INVALID),
    BadInput("plain-text-with-nul", raw("text/plain; charset=utf-8", lambda: b"before\x00after"), INVALID, INVALID),
    BadInput("lone-surrogate", raw(JSON, lambda: b'{"text": "a\\ud800b"}'), INVALID, UNDECODABLE),
    BadInput("whitespace-text", as_json({"text": " \n\t "}), INVALID, EMPTY),
    BadInput("text-100k-chars", as_json({"text": "x" * 100_000}), INVALID, TOO_LARGE),
    BadInput("empty-texts-list", as_json({"texts": []}), INVALID, EMPTY),
    BadInput("texts-10k", as_json({"texts": ["a sentence"] * 10_000}), INVALID, TOO_LARGE),
]


def refused(endpoint: str) -> list[BadInput]:
    """The entries an endpoint answers with a 4xx ("image" covers the workflow too)."""
    return [case for case in CORPUS if getattr(case, endpoint)[0] >= 400]


# What a photo of a cat may be called (ImageNet has several cats).
CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


def raw_bytes(case) -> bytes | None:
    request = case.build()
    content_type = request.get("headers", {}).get("Content-Type", "")
    if set(request) != {"data", "headers"} or not content_type.startswith(("image/", OCTETS)):
        return None
    return bytes(request["data"])


# Corpus kinds that are raw bytes with an image or octet-stream type: over HTTP the handler gets
# them as bytes, just as over gRPC, so the same code is expected. (Kinds whose meaning depends on
# HTTP headers, forms or JSON parsing by the frontend have no gRPC equivalent.)
BYTE_KINDS = [case for case in CORPUS if case.image != FRONTEND_413 and raw_bytes(case) is not None]

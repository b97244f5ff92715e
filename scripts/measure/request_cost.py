"""The worst request each endpoint accepts, and what it costs a worker end to end (docs/reliability.md).

    python -m scripts.measure.request_cost [--weights-dir build/weights]

Each case is sized just inside (or just over) the shipped limits (models/configs/*.yaml): what
one client can make a worker do with one request. Timed through the real handler in this process
(scripts/measure/in_process.py), one worker's threads as served, median of 3: decode alone, and the whole
path a worker runs for it alone (decode, forward pass, response). A decode-only figure once
hid 5.6 s of encoder work behind "31-109 ms" (issue 21). tests/integration/test_request_cost.py
sends the same requests to a real server and records the time the client waits.
"""

from __future__ import annotations

import argparse
import base64
import functools
import io
import json
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from handlers import oip
from handlers.errors import RequestError
from scripts.measure.bench.raw import median_seconds
from scripts.measure.in_process import load_handler

REPO = Path(__file__).resolve().parents[2]


def gradient(width: int, height: int) -> Image.Image:
    """A smooth gradient: compresses to almost nothing as PNG, so it is cheap to send."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                    np.broadcast_to((x + y) / 2, (height, width))], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def image_cases() -> list[tuple[str, bytes]]:
    return [
        ("PNG 4000x4000 gradient (16 Mpx: max_decoded_pixels)", encoded(gradient(4000, 4000), "PNG")),
        ("WebP 4000x4000 gradient", encoded(gradient(4000, 4000), "WEBP")),
        ("PNG 6300x6300 gradient (refused)", encoded(gradient(6300, 6300), "PNG")),
        ("JPEG 8160x6120 gradient (50 Mpx phone: max_pixels)", encoded(gradient(8160, 6120), "JPEG")),
    ]


def v2_images(image: bytes, count: int) -> dict:
    """A v2 infer body with `count` copies of one image (max_images is the most one request holds)."""
    data = [base64.b64encode(image).decode()] * count
    return {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [count], "data": data}]}


def v2_image_cases(max_images: int = 16) -> list[tuple[str, dict]]:
    return [(f"v2: {max_images} x WebP 4000x4000 gradient (max_images)", v2_images(encoded(gradient(4000, 4000), "WEBP"), max_images))]


def long_texts(count: int, chars: int) -> list[str]:
    """`count` different passages of this README, `chars` long each: real prose, code and tables."""
    readme = (REPO / "README.md").read_text()
    text = readme * (chars * count // len(readme) + 2)
    return [text[i * 997: i * 997 + chars] for i in range(count)]


def sentences(count: int) -> list[str]:
    lines = [line for line in (REPO / "samples" / "sentences.txt").read_text().splitlines() if line.strip()]
    return (lines * (count // len(lines) + 1))[:count]


def text_cases(max_texts: int = 64, max_chars: int = 20_000) -> list[tuple[str, dict]]:
    """The text endpoint's cases as JSON bodies: the worst accepted first."""
    return [
        ('{"texts": [16 x 2,560 characters]} (16 x 256 tokens: max_request_tokens)', {"texts": long_texts(16, 2560)}),
        (f'{{"texts": [{max_texts} sentences]}} (samples/sentences.txt)', {"texts": sentences(max_texts)}),
        (f'{{"text": 2,560 characters, "labels": [{max_texts} labels]}}',
         {"text": long_texts(1, 2560)[0], "labels": [f"topic number {n}" for n in range(max_texts)]}),
        (f'{{"texts": [{max_texts} x {max_chars:,} characters]}} (refused)', {"texts": long_texts(max_texts, max_chars)}),
        ('{"texts": [17 x 2,560 characters]} (refused)', {"texts": long_texts(17, 2560)}),
    ]


def answer(handler, body) -> str:
    """What the handler answers one request alone: 200, or the error's status and code."""
    try:
        handler.encode_response(handler.predict([handler.decode_request({"body": body})])[0])
    except RequestError as error:
        return f"{error.status_code} {error.code}"
    return "200"


def answer_v2(handler, body: bytes) -> str:
    """The same for a v2 request (several items, one answer)."""
    try:
        handler.encode_v2(handler.predict(handler.decode_v2(oip.parse(body, None))))
    except RequestError as error:
        return f"{error.status_code} {error.code}"
    return "200"


def decode_only(handler, body, v2: bool = False) -> None:
    try:
        handler.decode_v2(oip.parse(body, None)) if v2 else handler.decode_request({"body": body})
    except RequestError:
        pass


def timed(call: Callable[[], object]) -> float:
    return median_seconds(call, min_calls=3, warmup=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=Path("build/weights"))
    args = parser.parse_args()
    image = load_handler("efficientnet_lite0", args.weights_dir / "efficientnet_lite0")
    text = load_handler("minilm", args.weights_dir / "minilm")
    print("| endpoint | request | size on the wire | answer | decode | whole worker path |")
    print("|---|---|---|---|---|---|")
    cases = [("efficientnet_lite0", image, label, raw, False) for label, raw in image_cases()]
    cases += [("efficientnet_lite0", image, label, json.dumps(body).encode(), True) for label, body in v2_image_cases()]
    cases += [("minilm", text, label, json.dumps(body).encode(), False) for label, body in text_cases()]
    for name, handler, label, raw, v2 in cases:
        body = raw if v2 else bytearray(raw)
        run = functools.partial(answer_v2 if v2 else answer, handler, body)
        decode, whole = timed(functools.partial(decode_only, handler, body, v2)), timed(run)
        print(f"| {name} | {label} | {len(raw) / 1e6:.2f} MB | {run()} | {decode * 1000:.0f} ms | {whole * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

"""The worst request each endpoint accepts, and what it costs a worker (docs/reliability.md).

    python -m scripts.request_cost [--weights-dir build/weights]

Each case is sized just inside the shipped limits (models/configs/*.yaml): what one client can
make a worker do with one request. Timed through the real handler's decode step, in this
process (scripts/in_process.py), median of 3; the model's own forward pass is bounded by crop
and max_tokens and is measured by `make bench`.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from handlers.errors import RequestError
from scripts.bench.raw import median_seconds
from scripts.in_process import load_handler, model_config


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


def answer(handler, body) -> str:
    """What decode_request answers: ok, or the error's status and code."""
    try:
        handler.decode_request({"body": body})
    except RequestError as error:
        return f"{error.status_code} {error.code}"
    return "ok"


def cost(handler, body) -> tuple[float, str]:
    """Median seconds of decode_request over 3 calls, and what it answered."""
    return median_seconds(lambda: answer(handler, body), min_calls=3, warmup=0), answer(handler, body)


def image_cases() -> list[tuple[str, bytes]]:
    return [
        ("PNG 4000x4000 gradient (16 Mpx: max_decoded_pixels)", encoded(gradient(4000, 4000), "PNG")),
        ("WebP 4000x4000 gradient", encoded(gradient(4000, 4000), "WEBP")),
        ("PNG 6300x6300 gradient (refused)", encoded(gradient(6300, 6300), "PNG")),
        ("JPEG 8160x6120 gradient (50 Mpx phone: max_pixels)", encoded(gradient(8160, 6120), "JPEG")),
    ]


def text_cases(handler) -> list[tuple[str, bytes]]:
    s = handler.settings
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()  # a real document
    words = (readme * (s.max_chars // len(readme) + 1))[: s.max_chars]
    return [(f'{{"texts": [{s.max_texts} x {s.max_chars} characters]}}',
             json.dumps({"texts": [words] * s.max_texts}).encode())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=Path("build/weights"))
    args = parser.parse_args()
    image = load_handler("efficientnet_lite0", args.weights_dir / "efficientnet_lite0")
    text = load_handler("minilm", args.weights_dir / "minilm")
    print("| endpoint | request | size on the wire | answer | worker time (decode) |")
    print("|---|---|---|---|---|")
    # The same text request with the character cut off (budget above max_chars): what it saves.
    uncut = load_handler("minilm", args.weights_dir / "minilm", model_config("minilm", {"chars_per_token": 100}))
    rows = (("efficientnet_lite0", image, image_cases()), ("minilm", text, text_cases(text)),
            ("minilm, chars_per_token 100 (no cut)", uncut, text_cases(uncut)))
    for name, handler, cases in rows:
        for label, body in cases:
            seconds, answer = cost(handler, bytearray(body))
            print(f"| {name} | {label} | {len(body) / 1e6:.2f} MB | {answer} | {seconds * 1000:.0f} ms |")


if __name__ == "__main__":
    main()

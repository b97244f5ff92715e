"""decode_image: formats, modes, EXIF orientation, corrupt and hostile inputs, all made in memory."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from handlers.errors import PayloadTooLarge, UndecodableInput, UnsupportedDimensions, UnsupportedMediaType
from handlers.vision import check_proportions, decode_image

MAX_PIXELS = 40_000_000
ORIENTATION = 0x0112


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@pytest.fixture(scope="module")
def photo(chelsea) -> Image.Image:
    """Half-size chelsea (225x150): enough detail, fast to encode."""
    return chelsea.resize((chelsea.width // 2, chelsea.height // 2))


@pytest.mark.parametrize(
    "fmt, save_args, tolerance",
    [
        ("JPEG", {"quality": 95}, 4.0),
        ("PNG", {}, 0.0),
        ("WEBP", {"lossless": True}, 0.0),
        ("WEBP", {"quality": 90}, 6.0),
        ("BMP", {}, 0.0),
        ("TIFF", {}, 0.0),
        ("TIFF", {"compression": "tiff_deflate"}, 0.0),
        ("GIF", {}, 12.0),  # 256-colour palette
    ],
)
def test_formats_decode_to_the_same_rgb_picture(photo, encode, fmt, save_args, tolerance):
    decoded = decode_image(encode(photo, fmt, **save_args), MAX_PIXELS)
    assert decoded.mode == "RGB"
    assert decoded.size == photo.size
    assert mean_abs_diff(decoded, photo) <= tolerance


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "CMYK", "1", "I", "F"])
def test_modes_become_rgb(photo, encode, mode):
    fmt = {"CMYK": "JPEG", "F": "TIFF"}.get(mode, "TIFF" if mode == "I" else "PNG")
    decoded = decode_image(encode(photo.convert(mode), fmt), MAX_PIXELS)
    assert decoded.mode == "RGB"
    assert decoded.size == photo.size


def test_cmyk_jpeg_keeps_its_colours(photo, encode):
    decoded = decode_image(encode(photo.convert("CMYK"), "JPEG", quality=95), MAX_PIXELS)
    assert mean_abs_diff(decoded, photo) < 5  # an inverted-CMYK bug would be off by ~100


def test_grayscale_keeps_its_levels(photo, encode):
    gray = photo.convert("L")
    decoded = decode_image(encode(gray, "PNG"), MAX_PIXELS)
    assert mean_abs_diff(decoded, gray.convert("RGB")) == 0


@pytest.mark.parametrize("mode, fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP")])
def test_transparent_pixels_are_composited_on_white(encode, mode, fmt):
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # transparent black ...
    image.paste((200, 10, 10, 255), (0, 0, 4, 8))  # ... except an opaque left half
    decoded = decode_image(encode(image.convert(mode), fmt, **({"lossless": True} if fmt == "WEBP" else {})), 100)
    assert decoded.getpixel((6, 4)) == (255, 255, 255)
    expected_left = (200, 10, 10) if mode == "RGBA" else (image.convert("L").getpixel((1, 1)),) * 3
    assert decoded.getpixel((1, 4)) == expected_left


def test_palette_transparency_is_composited_on_white(encode):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)  # index 0 black, index 1 green
    image.paste(1, (0, 0, 4, 8))
    decoded = decode_image(encode(image, "PNG", transparency=0), 100)
    assert decoded.getpixel((6, 4)) == (255, 255, 255)  # transparent black -> white, not black
    assert decoded.getpixel((1, 4)) == (10, 200, 10)


def test_sixteen_bit_png_is_scaled_not_clipped(encode):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    raw = encode(Image.fromarray(ramp), "PNG")
    decoded = np.asarray(decode_image(raw, MAX_PIXELS))[:, :, 0].astype(np.float32)
    expected = ramp / 257.0
    assert np.abs(decoded - expected).max() <= 1.0  # clipping would make most pixels 255
    assert 120 < decoded.mean() < 135


def test_animated_gif_uses_the_first_frame(encode):
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    raw = encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert Image.open(io.BytesIO(raw)).n_frames == 2
    assert decode_image(raw, MAX_PIXELS).getpixel((8, 8)) == (255, 0, 0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP"])
def test_one_pixel_image(encode, fmt):
    decoded = decode_image(encode(Image.new("RGB", (1, 1), (0, 128, 255)), fmt), MAX_PIXELS)
    assert decoded.size == (1, 1) and decoded.mode == "RGB"


# ---- EXIF ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "orientation, transposed",
    [(1, False), (2, False), (3, False), (5, True), (6, True), (8, True)],
)
def test_exif_orientation_is_applied(photo, encode, orientation, transposed):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    decoded = decode_image(encode(photo, "JPEG", exif=exif.tobytes()), MAX_PIXELS)
    width, height = photo.size
    assert decoded.size == ((height, width) if transposed else (width, height))


def test_exif_rotation_recovers_the_upright_picture(photo, encode):
    """Pixels stored rotated 90 degrees clockwise, Orientation=8 says turn them back."""
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    stored = photo.transpose(Image.Transpose.ROTATE_270)  # 90 degrees clockwise
    decoded = decode_image(encode(stored, "PNG", exif=exif.tobytes()), MAX_PIXELS)
    assert decoded.size == photo.size
    assert mean_abs_diff(decoded, photo) == 0


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns "Corrupt EXIF data"
@pytest.mark.parametrize(
    "exif",
    [
        b"Exif\x00\x00" + b"\xff" * 40,
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12",  # IFD cut short after one tag id
        b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # IFD offset far past the end
    ],
)
def test_corrupt_exif_does_not_crash(photo, encode, exif):
    decoded = decode_image(encode(photo, "JPEG", exif=exif), MAX_PIXELS)
    assert decoded.size == photo.size and decoded.mode == "RGB"


# ---- broken and hostile input --------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "TIFF"])
def test_truncated_image_is_undecodable(photo, encode, fmt):
    raw = encode(photo, fmt)
    with pytest.raises(UndecodableInput) as caught:
        decode_image(raw[: len(raw) // 2], MAX_PIXELS)
    assert caught.value.status_code == 422


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(np.random.default_rng(0).bytes(4096), id="random-bytes"),
        pytest.param(b"<!doctype html><html><body>not found</body></html>", id="html"),
        pytest.param(b'{"data": "aGVsbG8="}', id="json-text"),
        pytest.param(b"\xff\xd8\xff", id="jpeg-magic-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", id="pdf"),
    ],
)
def test_non_images_are_undecodable(raw):
    with pytest.raises(UndecodableInput) as caught:
        decode_image(raw, MAX_PIXELS)
    assert caught.value.status_code == 422


@pytest.mark.parametrize("fmt", ["PPM", "ICO", "TGA", "PCX"])
def test_formats_outside_the_list_are_unsupported(photo, encode, fmt):
    with pytest.raises(UnsupportedMediaType, match=fmt) as caught:
        decode_image(encode(photo, fmt), MAX_PIXELS)
    assert caught.value.status_code == 415


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels, with one compressed row of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + bytes((width + 7) // 8)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "width, height, max_pixels",
    [
        pytest.param(30000, 30000, MAX_PIXELS, id="bomb-pillow-refuses"),  # over Pillow's own bomb limit
        pytest.param(8000, 8000, MAX_PIXELS, id="over-max-pixels"),  # 64 Mpx: Pillow would open it
        pytest.param(101, 100, 10_000, id="just-over-a-small-limit"),
    ],
)
def test_too_many_pixels_refused_from_the_header(width, height, max_pixels):
    raw = png_header_only(width, height)
    assert len(raw) < 64 * 1024
    with pytest.raises(PayloadTooLarge) as caught:
        decode_image(raw, max_pixels)
    assert caught.value.status_code == 413


@pytest.mark.reliability
@pytest.mark.parametrize("side, message", [(30000, "too many pixels"), (8000, "8000x8000 pixels; the limit")])
def test_bomb_is_refused_before_any_pixel_is_decoded(monkeypatch, side, message):
    def decode_pixels(image):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode_pixels)
    with pytest.raises(PayloadTooLarge, match=message):
        decode_image(png_header_only(side, side), MAX_PIXELS)


def test_pixel_limit_is_inclusive(encode):
    assert decode_image(encode(Image.new("RGB", (100, 100)), "PNG"), 10_000).size == (100, 100)


@pytest.mark.parametrize(
    "size, refused",
    [
        ((1, 1), "1x1 pixels; its shorter side must be at least 16 pixels"),
        ((400, 15), "at least 16"),
        ((100000, 1), "at least 16"),
        ((100000, 20), "100000x20 pixels, 5000:1; the longest side may be at most 20 times the shortest"),
        ((20, 401), "20x401 pixels, 20:1"),
        ((16, 16), None),
        ((16, 320), None),
        ((451, 300), None),
        ((4000, 3000), None),
    ],
)
def test_images_with_nothing_to_classify_are_refused(size, refused):
    """resize 256, max_upscale 16, max_aspect_ratio 20: the shipped defaults."""
    if refused is None:
        check_proportions(size, 256, 16.0, 20.0)
        return
    with pytest.raises(UnsupportedDimensions, match=refused) as caught:
        check_proportions(size, 256, 16.0, 20.0)
    assert caught.value.status_code == 422

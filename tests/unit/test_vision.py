"""handlers.vision: decode_image (formats, modes, EXIF orientation, corrupt and hostile inputs, all
made in memory), extract_image_bytes (every payload shape TorchServe hands a handler), the tensor
half (image_to_tensor, normalize_batch, top_k_labels) and the speed path (one-pass resize+crop,
JPEG draft)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision.transforms import v2
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from handlers.config import IMAGENET_MEAN, IMAGENET_STD
from handlers.errors import (
    EmptyPayload,
    InvalidPayload,
    PayloadTooLarge,
    UndecodableInput,
    UnsupportedDimensions,
    UnsupportedMediaType,
)
from handlers.vision import (
    apply_exif_orientation,
    centre_crop_box,
    check_proportions,
    decode_base64,
    decode_image,
    extract_image_bytes,
    image_to_tensor,
    normalize_batch,
    to_rgb,
    top_k_labels,
)
from tests.support.images import encode_image

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


def test_an_upright_rgb_image_is_not_copied(photo, encode):
    """Decoding cost: neither the orientation step nor the RGB step copies the pixels for nothing."""
    image = Image.open(io.BytesIO(encode(photo, "JPEG")))
    image.load()
    assert apply_exif_orientation(image) is image and to_rgb(image) is image


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


@pytest.mark.reliability
def test_full_size_decoding_is_bounded_before_any_pixel_is_decoded(monkeypatch, encode):
    raw = encode(Image.new("RGB", (200, 200)), "PNG")
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail("pixels were decoded"))
    with pytest.raises(PayloadTooLarge, match="200x200 pixels, decoded at full size; the limit for that is "
                                              "10000 pixels [(]max_decoded_pixels") as caught:
        decode_image(raw, MAX_PIXELS, max_decoded_pixels=10_000)
    assert caught.value.status_code == 413


@pytest.mark.parametrize("min_side, accepted", [(100, True), (0, False)])
def test_a_jpeg_counts_at_its_reduced_decoding_scale(encode, min_side, accepted):
    """800x800 at 1/8 scale is 100x100: inside a 10,000-pixel budget; at full size it is not."""
    raw = encode(Image.new("RGB", (800, 800), (200, 40, 40)), "JPEG")
    if accepted:
        assert decode_image(raw, MAX_PIXELS, min_side=min_side, max_decoded_pixels=10_000).size == (100, 100)
    else:
        with pytest.raises(PayloadTooLarge, match="max_decoded_pixels"):
            decode_image(raw, MAX_PIXELS, min_side=min_side, max_decoded_pixels=10_000)


# ---- extract_image_bytes: every payload shape TorchServe hands a handler ------------------
IMAGE = b"\x89PNG\r\n\x1a\n not really, but bytes are bytes"
B64 = base64.b64encode(IMAGE).decode()
LIMIT = 1024


@pytest.mark.parametrize(
    "request_dict",
    [
        pytest.param({"body": bytearray(IMAGE)}, id="raw-body"),  # curl -T / --data-binary
        pytest.param({"data": bytearray(IMAGE)}, id="multipart-data"),  # curl -F data=@...
        pytest.param({"body": IMAGE}, id="bytes-body"),
        pytest.param({"body": {"data": B64}}, id="json-base64"),  # application/json, parsed by TorchServe
        pytest.param({"body": B64}, id="base64-string"),
        pytest.param({"body": f"data:image/png;base64,{B64}"}, id="data-url"),
        pytest.param({"body": B64[:10] + "\n" + B64[10:]}, id="base64-with-newline"),
        pytest.param({"data": bytearray(IMAGE), "body": b"ignored"}, id="data-wins-over-body"),
    ],
)
def test_payload_shapes_yield_the_image_bytes(request_dict):
    raw = extract_image_bytes(request_dict, LIMIT)
    assert raw == IMAGE
    assert isinstance(raw, bytes)


@pytest.mark.parametrize(
    "request_dict, error",
    [
        pytest.param({}, UnsupportedMediaType, id="no-body"),
        pytest.param({"body": None}, UnsupportedMediaType, id="body-none"),
        pytest.param({"body": bytearray()}, EmptyPayload, id="empty-bytes"),
        pytest.param({"data": b""}, EmptyPayload, id="empty-data"),
        pytest.param({"body": ""}, EmptyPayload, id="empty-string"),
        pytest.param({"body": {"data": ""}}, EmptyPayload, id="empty-json-data"),
        pytest.param({"body": bytearray(LIMIT + 1)}, PayloadTooLarge, id="over-limit"),
        pytest.param({"body": {"data": 123}}, InvalidPayload, id="json-data-not-string"),
        pytest.param({"body": {"image": B64}}, InvalidPayload, id="json-wrong-key"),
        pytest.param({"body": {"data": [B64]}}, InvalidPayload, id="json-data-list"),
        pytest.param({"body": 42}, InvalidPayload, id="json-number"),
        pytest.param({"body": [B64]}, InvalidPayload, id="json-list"),
        pytest.param({"body": "not base64 at all!"}, InvalidPayload, id="invalid-base64"),
        pytest.param({"body": {"data": "abc"}}, InvalidPayload, id="bad-padding"),
    ],
)
def test_bad_payloads_raise_typed_errors(request_dict, error):
    with pytest.raises(error) as caught:
        extract_image_bytes(request_dict, LIMIT)
    assert caught.value.detail  # a message the client can act on


def test_exact_limit_is_accepted():
    assert len(extract_image_bytes({"body": bytearray(LIMIT)}, LIMIT)) == LIMIT


def test_limit_applies_to_decoded_base64_size():
    decoded = bytes(LIMIT + 1)
    with pytest.raises(PayloadTooLarge, match=str(LIMIT)):
        extract_image_bytes({"body": {"data": base64.b64encode(decoded).decode()}}, LIMIT)


def test_missing_body_hint_tells_how_to_send_an_image():
    with pytest.raises(UnsupportedMediaType) as caught:
        extract_image_bytes({}, LIMIT)
    assert caught.value.status_code == 415
    assert "curl" in caught.value.detail and '{"data"' in caught.value.detail


@pytest.mark.parametrize("prefix", ["", "data:image/jpeg;base64,", "data:application/octet-stream;base64,"])
def test_decode_base64_strips_data_url_prefix(prefix):
    assert decode_base64(prefix + B64) == IMAGE


# ---- image_to_tensor, normalize_batch and top_k_labels: the tensor half -------------------
@pytest.mark.parametrize(
    "size, resize, crop",
    [((451, 300), 256, 224), ((300, 451), 256, 224), ((1, 1), 256, 224), ((4000, 10), 32, 32), ((224, 224), 224, 224)],
)
def test_image_to_tensor_shape_and_dtype(size, resize, crop):
    tensor = image_to_tensor(Image.new("RGB", size, (10, 20, 30)), resize, crop)
    assert tensor.shape == (3, crop, crop)
    assert tensor.dtype == torch.uint8
    assert tensor[:, crop // 2, crop // 2].tolist() == [10, 20, 30]


def test_image_to_tensor_resizes_the_shorter_side_then_centre_crops():
    image = Image.new("RGB", (400, 200), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 60, 200))  # a white strip on the left: cropped away
    image.paste((255, 0, 0), (160, 60, 240, 140))  # a red square in the middle: kept, halved
    tensor = image_to_tensor(image, 100, 100)  # -> 200x100, centre crop keeps x in [50, 150)
    assert tensor[1:].max().item() == 0  # no white anywhere
    red = tensor[0] > 128
    assert red.sum().item() == pytest.approx(40 * 40, rel=0.1)
    assert red[50, 50] and not red[50, 20]


def test_normalize_batch_matches_torchvision():
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    reference = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch.float() / 255)
    result = normalize_batch(batch, IMAGENET_MEAN, IMAGENET_STD)
    assert result.dtype == torch.float32 and result.shape == batch.shape
    torch.testing.assert_close(result, reference)


def test_normalize_batch_per_channel():
    batch = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    result = normalize_batch(batch, (0.0, 0.5, 1.0), (1.0, 0.5, 2.0))
    assert result[0, :, 0, 0].tolist() == [1.0, 1.0, 0.0]


LABELS = ["cat", "dog", "bird", "fish"]


@pytest.mark.parametrize(
    "probabilities, labels, k, expected",
    [
        ([0.1, 0.6, 0.2, 0.1], LABELS, 2, [("dog", 0.6), ("bird", 0.2)]),
        ([0.1, 0.6, 0.3], LABELS[:3], 1, [("dog", 0.6)]),
        ([0.7, 0.3], ["cat", "dog"], 5, [("cat", 0.7), ("dog", 0.3)]),  # k above the class count
        ([0.25, 0.5, 0.25], ["crane", "x", "crane"], 3, [("x", 0.5), ("crane", 0.25), ("crane (2)", 0.25)]),
        ([0.2, 0.8], ["only-one"], 2, [("1", 0.8), ("only-one", 0.2)]),  # fewer labels than classes
        ([0.2, 0.8], [], 2, [("1", 0.8), ("0", 0.2)]),
    ],
)
def test_top_k_labels(probabilities, labels, k, expected):
    result = top_k_labels(torch.tensor(probabilities), labels, k)
    assert list(result) == [label for label, _ in expected]  # most probable first
    assert list(result.values()) == pytest.approx([p for _, p in expected])


def test_top_k_values_are_json_floats_in_descending_order():
    probabilities = torch.softmax(torch.randn(1000, generator=torch.Generator().manual_seed(1)), 0)
    result = top_k_labels(probabilities, [f"c{i}" for i in range(1000)], 5)
    values = list(result.values())
    assert len(result) == 5 and values == sorted(values, reverse=True)
    assert all(type(v) is float for v in values)
    assert next(iter(result)) == f"c{probabilities.argmax().item()}"


# ---- the speed path: one-pass resize+crop, JPEG draft -------------------------------------
def torchvision_resize_crop(image: Image.Image, resize: int, crop: int) -> torch.Tensor:
    resized = F.resize(image, [resize], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return F.pil_to_tensor(F.center_crop(resized, [crop, crop]))


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (600, 400), (257, 256), (1000, 999), (37, 500)])
def test_one_pass_resize_crop_matches_torchvision(chelsea, size):
    image = chelsea.resize(size)
    ours, theirs = image_to_tensor(image, 256, 224).int(), torchvision_resize_crop(image, 256, 224).int()
    assert (ours - theirs).abs().max().item() <= 2
    assert (ours - theirs).abs().float().mean().item() < 0.5


@pytest.mark.parametrize("size, resize, crop", [((400, 200), 100, 100), ((200, 400), 100, 50), ((300, 300), 256, 224)])
def test_centre_crop_box_is_the_kept_region(size, resize, crop):
    left, top, right, bottom = centre_crop_box(size, resize, crop)
    scale = min(size) / resize
    assert right - left == pytest.approx(crop * scale) and bottom - top == pytest.approx(crop * scale)
    assert left + right == pytest.approx(size[0], abs=scale * 1.01)  # centred, up to one rounded pixel
    assert top + bottom == pytest.approx(size[1], abs=scale * 1.01)


def jpeg(image: Image.Image) -> bytes:
    return encode_image(image, "JPEG", quality=90)


@pytest.mark.parametrize(
    "size, min_side, expected",
    [
        ((2400, 1600), 512, (1200, 800)),  # 1/2: at 1/4 the shorter side would be 400 < 512
        ((4800, 3200), 512, (1200, 800)),  # 1/4
        ((2400, 1600), 0, (2400, 1600)),  # no draft asked
        ((1000, 700), 512, (1000, 700)),  # 1/2 would go below 512
        ((4096, 3072), 256, (512, 384)),  # 1/8 at most
    ],
)
def test_jpeg_draft_never_goes_below_min_side(chelsea, size, min_side, expected):
    decoded = decode_image(jpeg(chelsea.resize(size)), 40_000_000, min_side=min_side)
    assert decoded.size == expected and decoded.mode == "RGB"


def test_draft_leaves_other_formats_alone(chelsea, encode):
    png = encode(chelsea.resize((1200, 800)), "PNG")
    assert decode_image(png, 40_000_000, min_side=256).size == (1200, 800)

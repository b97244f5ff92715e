"""extract_image_bytes: every payload shape TorchServe hands a handler, and the ways it goes wrong."""

from __future__ import annotations

import base64

import pytest

from handlers.errors import EmptyPayload, InvalidPayload, PayloadTooLarge, UnsupportedMediaType
from handlers.vision import decode_base64, extract_image_bytes

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

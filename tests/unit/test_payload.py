"""handlers.payload: where a request keeps its payload, and an earlier workflow node's error body."""

from __future__ import annotations

import json

import pytest

from handlers.errors import UndecodableInput
from handlers.payload import request_payload, status_for, upstream_error

ERROR_BODY = json.dumps({"error": "undecodable_input", "detail": "not an image"}, indent=2).encode()


@pytest.mark.parametrize(
    ("request_dict", "payload"),
    [
        ({"data": b"multipart"}, b"multipart"),
        ({"body": b"raw"}, b"raw"),
        ({"data": b"multipart", "body": b"ignored"}, b"multipart"),
        ({}, None),  # a form body TorchServe parsed away
    ],
)
def test_request_payload(request_dict, payload):
    assert request_payload(request_dict) == payload


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (ERROR_BODY, 422),
        (bytearray(ERROR_BODY), 422),
        ({"error": "payload_too_large", "detail": "x"}, 413),
        ({"error": "invalid_payload", "detail": "x", "status": 400}, 400),
        ({"error": "no_such_code", "detail": "x"}, 500),
    ],
)
def test_upstream_errors_are_recognised_with_their_status(payload, status):
    assert upstream_error(payload).status_code == status


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xd8\xff\xe0 jpeg", b'{"text": "an error was made"}', {"text": "x"}, {"error": "x"},
     {"error": 1, "detail": "x"}, b'{"error": broken', None, "plain text"],
)
def test_ordinary_payloads_are_not_upstream_errors(payload):
    assert upstream_error(payload) is None


def test_status_for_known_codes():
    assert status_for(UndecodableInput.code) == 422

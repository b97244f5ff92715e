"""scripts.client.grpc_client.error_in: a handler's error body over gRPC (which drops per-request
statuses) becomes a PredictionError with the bundle's code and its HTTP-equivalent status."""

from __future__ import annotations

import json

import pytest

from scripts.client.grpc_client import error_in


@pytest.mark.parametrize("body, code, status", [
    ({"error": "undecodable_input", "detail": "not an image"}, "undecodable_input", 422),
    ({"error": "payload_too_large", "detail": "too many pixels"}, "payload_too_large", 413),
    ({"error": "empty_payload", "detail": "the image is empty"}, "empty_payload", 400),
    ({"error": "undecodable_input", "detail": "x", "status": 422}, "undecodable_input", 422),  # a workflow body
    ({"error": "made_up", "detail": "x"}, "made_up", 500),
])
def test_error_bodies_raise_with_code_and_status(body, code, status):
    error = error_in(json.dumps(body).encode())
    assert (error.code, error.status, error.detail) == (code, status, body["detail"])


@pytest.mark.parametrize("body", [
    b'{"tabby": 0.45, "tiger cat": 0.2}', b'{"embedding": [0.1], "truncated": false}', b"[1, 2]", b"not json", b"\xff",
])
def test_predictions_are_not_errors(body):
    assert error_in(body) is None

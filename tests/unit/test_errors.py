"""handlers.errors: each request error maps to one HTTP status and a {"error", "detail"} body."""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest

from handlers import errors

TABLE = [
    (errors.RequestError, 400, "bad_request"),
    (errors.EmptyPayload, 400, "empty_payload"),
    (errors.InvalidPayload, 400, "invalid_payload"),
    (errors.UnsupportedMediaType, 415, "unsupported_media_type"),
    (errors.PayloadTooLarge, 413, "payload_too_large"),
    (errors.UndecodableInput, 422, "undecodable_input"),
    (errors.UnsupportedDimensions, 422, "unsupported_dimensions"),
    (errors.InferenceFailed, 500, "inference_failed"),
    (errors.OutOfResources, 507, "out_of_resources"),
]


@pytest.mark.parametrize("cls, status, code", TABLE, ids=[row[0].__name__ for row in TABLE])
def test_status_code_and_body(cls, status, code):
    err = cls("something specific")
    assert isinstance(err, errors.RequestError)
    assert err.status_code == status
    assert HTTPStatus(status).phrase  # a real status TorchServe can send
    body = err.to_body()
    assert body == {"error": code, "detail": "something specific"}
    assert json.loads(json.dumps(body)) == body
    assert str(err) == "something specific"


def test_codes_are_unique():
    codes = [cls.code for cls, _, _ in TABLE]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize("cls", [errors.InferenceFailed, errors.OutOfResources])
def test_server_side_errors_have_a_generic_default_detail(cls):
    detail = cls().to_body()["detail"]
    assert detail and "Traceback" not in detail

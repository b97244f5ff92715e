"""handlers.payload: where a request keeps its payload, an earlier workflow node's error body, and the
compact JSON text a response goes back as."""

from __future__ import annotations

import json
import math
import re

import pytest

from handlers.errors import InvalidPayload, UndecodableInput
from handlers.payload import (
    compact_json,
    declared_media_type,
    declares_json,
    is_json_media_type,
    json_type,
    parse_json,
    request_payload,
    status_for,
    upstream_error,
)

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


@pytest.mark.parametrize("body", [{"tabby": 0.5, "café": 0.25}, [0.1, -0.0, 2], {"error": "x", "detail": "y"},
                                  {"param": None, "null": "nullable"}])
def test_compact_json(body):
    """The bytes json.dumps would write compactly, UTF-8 encoded (a null, or "null" in a string, included)."""
    encoded = compact_json(body)
    assert json.loads(encoded) == body
    assert encoded.decode() == json.dumps(body, separators=(",", ":"), ensure_ascii=False)  # no indentation, no spaces
    assert b"\n" not in encoded


def test_compact_json_keeps_utf8():
    assert compact_json({"café": 1}) == '{"café":1}'.encode()  # not \\u escapes: TorchServe sends the bytes as they are


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_compact_json_refuses_what_is_not_json(value):
    """NaN and the infinities are not JSON (orjson would write null): the encoding fails, and the base
    handler answers that request 500."""
    with pytest.raises(ValueError):
        compact_json({"scores": [0.5, value]})


@pytest.mark.parametrize(
    "request_dict, headers, expected",
    [
        ({"body": b"x"}, {"body": {"content-type": "Application/JSON; charset=utf-8"}}, "application/json"),
        ({"data": b"x", "body": b"y"}, {"data": {"content-type": "text/plain"}, "body": {"content-type": "image/png"}}, "text/plain"),
        ({"body": b"x"}, {"Content-Type": "application/json"}, ""),  # the request's header, not the part's: not read
        ({"body": b"x"}, {}, ""),  # in-process callers give none
        ({"body": b"x"}, {"body": {"content-type": None}}, ""),
    ],
)
def test_declared_media_type_is_the_payload_parts(request_dict, headers, expected):
    assert declared_media_type(request_dict, headers) == expected


@pytest.mark.parametrize("media_type, expected", [("application/json", True), ("application/vnd.api+json", True),
                                                  ("text/plain", False), ("application/jsonl", False), ("", False)])
def test_is_json_media_type(media_type, expected):
    assert is_json_media_type(media_type) is expected


@pytest.mark.parametrize("value, name", [(None, "null"), (True, "boolean"), (3, "number"), (2.5, "number"), ("a", "string"),
                                         ([1], "array"), ({"a": 1}, "object")])
def test_json_type_uses_json_names(value, name):
    assert json_type(value) == name


@pytest.mark.parametrize(
    "text, reason",
    [('{"a": ', "does not parse as JSON (Expecting value: line 1 column 7 (char 6))"), ("[" * 100_000, "nested too deeply"),
     (b"\xff{}", "not UTF-8 JSON")],
)
def test_parse_json_refuses_with_the_parsers_reason(text, reason):
    with pytest.raises(InvalidPayload, match=re.escape(reason)) as caught:
        parse_json(text, "send JSON")
    assert caught.value.to_body()["detail"].endswith("; send JSON")


def test_parse_json_parses():
    assert parse_json(b'{"a": [1, null]}', "") == {"a": [1, None]}


def test_declares_json_reads_the_payload_parts_type():
    assert declares_json({"body": b"x"}, {"body": {"content-type": "application/json; charset=utf-8"}})
    assert not declares_json({"body": b"x"}, {"body": {"content-type": "text/plain"}})
    assert not declares_json({"body": b"x"}, {})

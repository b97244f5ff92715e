"""What a TorchServe request dict carries: its payload, and inside a workflow an earlier node's error;
and the JSON text a response goes back as."""

from __future__ import annotations

import json
from typing import Any, Mapping

import orjson

from handlers.errors import InvalidPayload, UpstreamError, error_statuses

ERROR_KEYS = {"error", "detail"}
"""The keys of RequestError.to_body(); `assemble` adds "status"."""


def request_payload(request: Mapping[str, Any]) -> Any:
    """`data` (multipart field) or `body` (raw, JSON or text body); None when TorchServe parsed it away."""
    payload = request.get("data")
    return request.get("body") if payload is None else payload


def declared_media_type(request: Mapping[str, Any], headers: Mapping[str, Any]) -> str:
    """The media type the client gave the payload (the `data` form field's, or the body's), lowercased,
    without parameters; "" when unknown (no headers: in-process callers, tests). TorchServe passes each
    part's type in the request's headers under the part's name."""
    part = headers.get("data" if request.get("data") is not None else "body")
    content_type = part.get("content-type") if isinstance(part, Mapping) else None
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(media_type: str) -> bool:
    """application/json, or a structured +json type (application/vnd.api+json)."""
    return media_type == "application/json" or media_type.endswith("+json")


def declares_json(request: Mapping[str, Any], headers: Mapping[str, Any]) -> bool:
    """Whether the client sent the payload as JSON: TorchServe parsed it then, unless it could not."""
    return is_json_media_type(declared_media_type(request, headers))


def parse_json(text: str | bytes, how_to_send: str) -> Any:
    """`text` parsed as JSON, or InvalidPayload (400) with the parser's reason and `how_to_send` it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"the body does not parse as JSON ({exc}); {how_to_send}") from None
    except RecursionError:  # json's parser recurses per nesting level: a 100000-deep array ends here
        raise InvalidPayload(f"the JSON is nested too deeply to parse; {how_to_send}") from None
    except UnicodeDecodeError as exc:
        raise InvalidPayload(f"the body is not UTF-8 JSON ({exc.reason} at byte {exc.start}); {how_to_send}") from None


def json_type(value: Any) -> str:
    """A parsed JSON value's type as JSON names it, for messages to clients who never saw Python's names."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


def upstream_error(payload: Any) -> UpstreamError | None:
    """The error an earlier node answered, if `payload` (a dict, or JSON bytes) is one."""
    if isinstance(payload, (bytes, bytearray)):
        head = bytes(payload[:64]).lstrip()
        if not (head.startswith(b"{") and b'"error"' in head):
            return None
        try:
            payload = json.loads(bytes(payload))
        except ValueError:
            return None
    if not (isinstance(payload, dict) and set(payload) in (ERROR_KEYS, ERROR_KEYS | {"status"})):
        return None
    if isinstance(payload["error"], str) and isinstance(payload["detail"], str):
        return UpstreamError(payload["error"], payload["detail"], status_for(payload["error"]))
    return None


def status_for(code: str) -> int:
    """The HTTP status of an error code (500 for a code this bundle does not define)."""
    return error_statuses().get(code, 500)


def compact_json(body: Any) -> bytes:
    """A response as TorchServe should send it: bytes go out as they are, where a dict or list would be
    re-serialised by the worker with json.dumps(indent=2) (an embedding: 384 lines). orjson writes an
    embedding in 12 us where json took 145-181 (docs/performance.md). NaN and the infinities are
    refused (ValueError): they are not JSON, and orjson would write them as null."""
    encoded = orjson.dumps(body)
    if b"null" in encoded:  # a None, or a non-finite float written as null: json tells them apart
        json.dumps(body, allow_nan=False)
    return encoded

"""Typed request errors: each carries the HTTP status and a short machine-readable code.

Handlers raise these for one request; the base handler turns them into that request's status
and a JSON body `{"error": code, "detail": message}`. Anything else is unexpected: it is logged,
and the client gets a generic message without internals.
"""

import json

ERROR_KEYS = {"error", "detail"}


class RequestError(Exception):
    """One request cannot be answered; the rest of the batch is unaffected."""

    status_code = 400
    code = "bad_request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def to_body(self) -> dict:
        return {"error": self.code, "detail": self.detail}


class EmptyPayload(RequestError):
    code = "empty_payload"


class InvalidPayload(RequestError):
    code = "invalid_payload"


class UnsupportedMediaType(RequestError):
    status_code = 415
    code = "unsupported_media_type"


class PayloadTooLarge(RequestError):
    status_code = 413
    code = "payload_too_large"


class UndecodableInput(RequestError):
    status_code = 422
    code = "undecodable_input"


class UnsupportedDimensions(RequestError):
    """A decodable image with nothing to classify in it: a tracking pixel, a 100000x1 strip."""

    status_code = 422
    code = "unsupported_dimensions"


class InferenceFailed(RequestError):
    status_code = 500
    code = "inference_failed"

    def __init__(self, detail: str = "the model failed on this input; the server log has details"):
        super().__init__(detail)


class OutOfResources(RequestError):
    status_code = 507
    code = "out_of_resources"

    def __init__(self, detail: str = "not enough memory to run this input even alone"):
        super().__init__(detail)


class UpstreamError(RequestError):
    """An error an earlier workflow node already gave; later nodes pass it on unchanged.

    TorchServe's workflow DAG hands each node the previous node's response body and ignores its
    status, so a failed request travels on as its error body; the code tells its status back.
    """

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code
        self.status_code = status_for(code)


def status_for(code: str) -> int:
    """The HTTP status of an error code (500 for a code this bundle does not define)."""
    pending, statuses = [RequestError], {}
    while pending:
        cls = pending.pop()
        statuses.setdefault(cls.code, cls.status_code)
        pending.extend(cls.__subclasses__())
    return statuses.get(code, 500)


def upstream_error(payload) -> UpstreamError | None:
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
        return UpstreamError(payload["error"], payload["detail"])
    return None

"""Typed request errors: each carries the HTTP status and a short machine-readable code.

Handlers raise these for one request; the base handler turns them into that request's status
and a JSON body `{"error": code, "detail": message}`. Anything else is unexpected: it is logged,
and the client gets a generic message without internals.
"""


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


class ProtocolError(RequestError):
    """Not a valid v2 (Open Inference Protocol) request: malformed JSON, a wrong datatype or shape,
    a missing input, an unknown output, binary lengths that do not add up (handlers.oip)."""

    code = "invalid_v2_request"


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
    status, so a failed request travels on as its error body (handlers.payload.upstream_error
    recognises it); the code tells its status back.
    """

    def __init__(self, code: str, detail: str, status_code: int):
        super().__init__(detail)
        self.code = code
        self.status_code = status_code


def error_statuses() -> dict[str, int]:
    """The registry: every code a RequestError class defines, with its HTTP status. The metrics'
    Code label and a workflow node's upstream error read their codes here, and nowhere else."""
    pending, statuses = [RequestError], {}
    while pending:
        cls = pending.pop()
        statuses.setdefault(cls.code, cls.status_code)
        pending.extend(cls.__subclasses__())
    return statuses

"""Where a TorchServe request dict keeps its payload."""

from __future__ import annotations

from typing import Any, Mapping


def request_payload(request: Mapping[str, Any]) -> Any:
    """`data` (multipart field) or `body` (raw, JSON or text body); None when TorchServe parsed it away."""
    payload = request.get("data")
    return request.get("body") if payload is None else payload

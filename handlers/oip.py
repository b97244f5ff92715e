"""The Open Inference Protocol (KServe v2) as the handlers speak it: pure codecs, no server imports.

A v2 request reaches a handler through TorchServe's `/v2/models/{m}/infer` route (or any
predictions route) as its body, in one of two forms:
- JSON, which TorchServe has already parsed into a dict when the Content-Type says JSON;
- the binary tensor extension, tritonclient's default: a JSON header of
  `Inference-Header-Content-Length` bytes, then each binary input's raw bytes in input order
  (`parameters.binary_data_size`). A BYTES tensor's elements are each a 4-byte little-endian
  length, then the bytes.
In JSON, BYTES elements are strings: text as it is, images base64. TorchServe's OIP gRPC bridge
(`ts_open_inference_protocol`) sends every BYTES element base64 and names the model in the body,
which is how `InferRequest.base64_bytes` tells it apart.

A response is JSON, or the binary extension when an output asks for binary data
(`parameters.binary_data`, or the request's `binary_data_output`, which tritonclient sets when
it names no outputs). Errors are `{"error": message}` with the request's own status.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from handlers.errors import ProtocolError, RequestError
from handlers.payload import compact_json

HEADER_LENGTH = "inference-header-content-length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
NUMPY_TYPES = {
    "BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8", "INT8": "i1", "INT16": "<i2",
    "INT32": "<i4", "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
DATATYPES = {*NUMPY_TYPES, "BYTES"}
LENGTH_PREFIX = struct.Struct("<I")
MAX_DATA_DEPTH = 32
"""Deepest nesting of an input's JSON "data" (a tensor of that many dimensions, or flat): deeper is
a 400, not a walk down a 50,000-deep list."""
TOO_DEEP = "malformed v2 request: the JSON is nested too deeply to parse"


@dataclass(frozen=True)
class Tensor:
    """One input or output: `data` is flat, row-major (bytes or str for BYTES, numbers otherwise)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any]


@dataclass(frozen=True)
class InferRequest:
    id: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[tuple[str, bool], ...]
    """The outputs asked for, each (name, binary); empty: all of them."""
    binary_output: bool
    """`binary_data_output`: outputs not named above go back binary."""
    base64_bytes: bool = False
    """JSON BYTES elements are base64 (TorchServe's gRPC bridge encodes every one)."""

    def input(self, name: str, datatype: str) -> Tensor:
        """The input called `name`, checked to be `datatype` and one-dimensional ([N], N >= 1)."""
        found = next((t for t in self.inputs if t.name == name), None)
        if found is None:
            named = ", ".join(repr(t.name) for t in self.inputs)
            raise ProtocolError(f"missing input {name!r} (the request has {named}); GET /v2/models/<model> lists the inputs")
        if found.datatype != datatype:
            raise ProtocolError(f"input {name!r} must be {datatype}, not {found.datatype}")
        if len(found.shape) != 1 or found.shape[0] < 1:
            raise ProtocolError(f"input {name!r} must have shape [N] with N >= 1, not {list(found.shape)}")
        return found


def header_length(headers: Mapping[str, str]) -> int | None:
    """The binary extension's JSON header length, from the request headers (any case); None without it."""
    value = next((v for k, v in headers.items() if k.lower() == HEADER_LENGTH), None)
    if value is None:
        return None
    try:
        length = int(value)
    except ValueError:
        raise ProtocolError(f"Inference-Header-Content-Length must be a number of bytes, not {value!r}") from None
    if length <= 0:
        raise ProtocolError(f"Inference-Header-Content-Length must be positive, not {length}")
    return length


def is_v2(payload: Any, headers: Mapping[str, str]) -> bool:
    """A v2 request: the binary extension's header (any case), or a JSON object with `inputs` (as a
    dict, or as JSON text TorchServe could not parse, which `parse` then refuses with the parser's reason)."""
    if any(k.lower() == HEADER_LENGTH for k in headers):
        return True
    if isinstance(payload, Mapping):
        return "inputs" in payload
    if isinstance(payload, (bytes, bytearray, str)):
        head = payload[:256].lstrip()
        key = '"inputs"' if isinstance(head, str) else b'"inputs"'
        return head[:1] in (b"{", "{") and key in head
    return False


def parse(payload: Any, json_length: int | None) -> InferRequest:
    """A v2 request from the body TorchServe hands over; ProtocolError (400) says what is wrong."""
    if json_length is None:
        document, binary = _json_object(payload), b""
    else:
        raw = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        if json_length > len(raw):
            raise ProtocolError(f"Inference-Header-Content-Length is {json_length} but the body has {len(raw)} bytes")
        document, binary = _json_object(raw[:json_length]), raw[json_length:]
    inputs = _inputs(document, binary)
    parameters = _mapping(document.get("parameters", {}), "parameters")
    return InferRequest(
        id=str(document.get("id", "")),
        inputs=inputs,
        outputs=_requested_outputs(document.get("outputs", [])),
        binary_output=bool(parameters.get("binary_data_output", False)),
        base64_bytes="model_name" in document,
    )


def _json_object(payload: Any) -> dict:
    if isinstance(payload, Mapping):
        return dict(payload)
    try:
        document = json.loads(payload)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed v2 request: the JSON does not parse ({exc})") from None
    except RecursionError:  # json's parser recurses per nesting level: {"inputs": [[[[...]]]]} 50,000 deep ends here
        raise ProtocolError(TOO_DEEP) from None
    return _mapping(document, "the request")


def _mapping(value: Any, what: str) -> dict:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what} must be a JSON object")
    return dict(value)


def _inputs(document: Mapping[str, Any], binary: bytes) -> tuple[Tensor, ...]:
    entries = document.get("inputs")
    if not isinstance(entries, list) or not entries:
        raise ProtocolError('a v2 request needs "inputs": a non-empty list of tensors')
    offset, tensors = 0, []
    for entry in entries:
        entry = _mapping(entry, "each input")
        name, datatype, shape = _signature(entry)
        size = _mapping(entry.get("parameters", {}), f"input {name!r} parameters").get("binary_data_size")
        if size is None:
            data = _json_data(entry, name, datatype, shape)
        else:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer, not {size!r}")
            if offset + size > len(binary):
                raise ProtocolError(f"input {name!r}: binary_data_size {size} runs past the {len(binary)} bytes after the JSON header")
            data = _binary_data(binary[offset:offset + size], name, datatype, shape)
            offset += size
        tensors.append(Tensor(name, datatype, shape, data))
    if offset != len(binary):
        raise ProtocolError(f"the binary inputs take {offset} bytes but {len(binary)} follow the JSON header")
    if len({t.name for t in tensors}) != len(tensors):
        raise ProtocolError("input names must be unique")
    return tuple(tensors)


def _signature(entry: Mapping[str, Any]) -> tuple[str, str, tuple[int, ...]]:
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError('each input needs a "name"')
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: datatype {datatype!r} is not a v2 datatype ({', '.join(sorted(DATATYPES))})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers, not {shape!r}")
    return name, datatype, tuple(shape)


def _json_data(entry: Mapping[str, Any], name: str, datatype: str, shape: tuple[int, ...]) -> list:
    if "data" not in entry:
        raise ProtocolError(f'input {name!r} has no "data" and no binary_data_size')
    data = _flatten(entry["data"], name)
    if len(data) != math.prod(shape):
        raise ProtocolError(f"input {name!r}: shape {list(shape)} holds {math.prod(shape)} elements but data has {len(data)}")
    wanted = str if datatype == "BYTES" else (bool if datatype == "BOOL" else (int, float))
    if not all(isinstance(x, wanted) and (datatype == "BOOL" or not isinstance(x, bool)) for x in data):
        raise ProtocolError(f"input {name!r}: {datatype} data must be {'strings' if datatype == 'BYTES' else 'numbers'}")
    return data


def _flatten(value: Any, name: str) -> list:
    """Row-major elements of nested lists, without recursion: TorchServe hands over JSON it parsed
    itself, up to Python's recursion limit deep, and a recursive walk would overflow on it."""
    if not isinstance(value, list):
        return [value]
    flat: list = []
    pending = [(iter(value), 1)]
    while pending:
        items, depth = pending[-1]
        item = next(items, _END)
        if item is _END:
            pending.pop()
        elif isinstance(item, list):
            if depth >= MAX_DATA_DEPTH:
                raise ProtocolError(f"input {name!r}: data is nested more than {MAX_DATA_DEPTH} deep")
            pending.append((iter(item), depth + 1))
        else:
            flat.append(item)
    return flat


_END = object()


def _binary_data(raw: bytes, name: str, datatype: str, shape: tuple[int, ...]) -> Sequence[Any]:
    count = math.prod(shape)
    if datatype != "BYTES":
        width = np.dtype(NUMPY_TYPES[datatype]).itemsize
        if len(raw) != count * width:
            raise ProtocolError(f"input {name!r}: {count} {datatype} elements take {count * width} bytes, not {len(raw)}")
        return np.frombuffer(raw, dtype=NUMPY_TYPES[datatype]).tolist()
    elements, offset = [], 0
    while offset < len(raw):
        if offset + LENGTH_PREFIX.size > len(raw):
            raise ProtocolError(f"input {name!r}: a BYTES element's 4-byte length is cut off at byte {offset}")
        (length,) = LENGTH_PREFIX.unpack_from(raw, offset)
        offset += LENGTH_PREFIX.size
        if offset + length > len(raw):
            raise ProtocolError(f"input {name!r}: a BYTES element of {length} bytes runs past the end of its data")
        elements.append(raw[offset:offset + length])
        offset += length
    if len(elements) != count:
        raise ProtocolError(f"input {name!r}: shape {list(shape)} holds {count} elements but the binary data has {len(elements)}")
    return elements


def _requested_outputs(entries: Any) -> tuple[tuple[str, bool], ...]:
    if not isinstance(entries, list):
        raise ProtocolError('"outputs" must be a list of {"name": ...}')
    asked = []
    for entry in entries:
        entry = _mapping(entry, "each requested output")
        if not isinstance(entry.get("name"), str):
            raise ProtocolError('each requested output needs a "name"')
        binary = _mapping(entry.get("parameters", {}), "output parameters").get("binary_data", False)
        asked.append((entry["name"], bool(binary)))
    return tuple(asked)


def check_outputs(request: InferRequest, names: Sequence[str]) -> None:
    """Every output the request asks for is one of `names`, the model's; else a ProtocolError."""
    unknown = [name for name, _ in request.outputs if name not in names]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0]!r}; this model has {', '.join(names)}")


def select_outputs(request: InferRequest, available: Sequence[Tensor]) -> list[tuple[Tensor, bool]]:
    """The outputs to send, each with whether it goes binary; an unknown name is a ProtocolError."""
    by_name = {t.name: t for t in available}
    check_outputs(request, list(by_name))
    if not request.outputs:
        return [(t, request.binary_output) for t in available]
    return [(by_name[name], binary or request.binary_output) for name, binary in request.outputs]


def encode(request: InferRequest, model_name: str, model_version: str, outputs: Sequence[tuple[Tensor, bool]]) -> tuple[bytes, int | None]:
    """The response body and, when some output is binary, the JSON header's length (else None)."""
    described, chunks = [], []
    for tensor, binary in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if binary:
            chunk = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = _to_json(tensor)
        described.append(entry)
    header = compact_json({"id": request.id, "model_name": model_name, "model_version": model_version, "outputs": described})
    return header + b"".join(chunks), (len(header) if chunks else None)


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        encoded = [x.encode() if isinstance(x, str) else bytes(x) for x in tensor.data]
        return b"".join(LENGTH_PREFIX.pack(len(x)) + x for x in encoded)
    return np.asarray(tensor.data, dtype=NUMPY_TYPES[tensor.datatype]).tobytes()


def _to_json(tensor: Tensor) -> list:
    if tensor.datatype == "BYTES":
        return [x if isinstance(x, str) else bytes(x).decode() for x in tensor.data]
    return np.asarray(tensor.data).reshape(-1).tolist()


def as_text(j: int, element: bytes | str, base64_encoded: bool) -> str:
    """BYTES element `j` as text: UTF-8 bytes (binary), a JSON string, or base64 (the gRPC bridge)."""
    try:
        if isinstance(element, str) and base64_encoded:
            element = base64.b64decode(element, validate=True)
        return element if isinstance(element, str) else bytes(element).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"element {j} is not UTF-8{' base64' if base64_encoded else ''} text: {exc}") from None


def error_body(error: RequestError) -> dict[str, str]:
    """v2's error body: the message under "error" (what tritonclient raises with), and the bundle's code."""
    return {"error": error.detail, "code": error.code}


def tensor_metadata(name: str, datatype: str, shape: Sequence[int]) -> dict[str, Any]:
    """One entry of a model's v2 metadata (`inputs` / `outputs`); -1 is a variable dimension."""
    return {"name": name, "datatype": datatype, "shape": list(shape)}

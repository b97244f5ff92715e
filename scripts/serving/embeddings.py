"""OpenAI's embeddings API over the text model, as pure transforms: a request checked and made one
TorchServe request (the handler's `{"texts": [...]}` form, so it batches like any other), the
handler's answer made OpenAI's response, and every refusal in OpenAI's error shape.

    POST /v1/embeddings  {"model": "minilm", "input": str | [str, ...], "encoding_format": "float" | "base64",
                          "dimensions"?: int, "user"?: str}
    -> {"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [...] | "<base64>"}],
        "model": "minilm", "usage": {"prompt_tokens": n, "total_tokens": n}}

The front (scripts/serving/front.py) serves it; docs/openai.md says more. base64 is what the
`openai` client asks for by default: the vector's float32 values, little-endian, base64-encoded.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from dataclasses import dataclass

from scripts.serving.overload import busy_message

FIELDS = frozenset({"model", "input", "encoding_format", "dimensions", "user"})
ENCODINGS = ("float", "base64")
OWNER = "torchserve"
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error", 429: "rate_limit_error"}


class OpenAIError(Exception):
    """A refusal in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status, "invalid_request_error" if self.status < 500 else "server_error")
        return {"error": {"message": str(self), "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class EmbeddingsRequest:
    model: str
    texts: tuple[str, ...]
    encoding_format: str = "float"
    dimensions: int | None = None


def parse_request(body: bytes) -> EmbeddingsRequest:
    """A checked request; OpenAIError 400 naming the field otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise OpenAIError(400, "the request body is not UTF-8") from None
    except RecursionError:
        raise OpenAIError(400, "the request JSON is nested too deeply to parse") from None
    except ValueError as error:
        raise OpenAIError(400, f"the request body is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise OpenAIError(400, f"unknown field {unknown[0]!r} (the fields: {', '.join(sorted(FIELDS))})", param=unknown[0])
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "'model' must be a model name (a non-empty string)", param="model")
    encoding = data.get("encoding_format", "float")
    if encoding not in ENCODINGS:
        raise OpenAIError(400, f"'encoding_format' must be one of {', '.join(ENCODINGS)}", param="encoding_format")
    dimensions = data.get("dimensions")
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)):
        raise OpenAIError(400, "'dimensions' must be an integer", param="dimensions")
    if "user" in data and not isinstance(data["user"], str):
        raise OpenAIError(400, "'user' must be a string", param="user")
    return EmbeddingsRequest(model, texts(data.get("input")), encoding, dimensions)


def texts(value: object) -> tuple[str, ...]:
    """`input` as texts: one string or a list of them, none empty; token-id arrays are refused by name."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise OpenAIError(400, "'input' must be a non-empty string or a non-empty list of strings", param="input")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value) or any(isinstance(item, list) for item in value):
        raise OpenAIError(400, "'input' as token ids is not supported: send the texts (the model tokenizes them with its own tokenizer; "
                               "LangChain's OpenAIEmbeddings sends texts with check_embedding_ctx_length=False)", param="input")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise OpenAIError(400, f"'input'[{index}] must be a string, not {type(item).__name__}", param="input")
        if not item:
            raise OpenAIError(400, f"'input'[{index}] is empty", param="input")
    return tuple(value)


def check_dimensions(request: EmbeddingsRequest, dimensions: int) -> None:
    """The model's vectors have one size; another one asked for is a 400 that says which."""
    if request.dimensions is not None and request.dimensions != dimensions:
        raise OpenAIError(400, f"'dimensions' {request.dimensions} is not supported: model {request.model} "
                               f"gives {dimensions}-dimensional vectors only", param="dimensions")


def torchserve_body(request: EmbeddingsRequest) -> bytes:
    """The one request to the text model: its `texts` form."""
    return json.dumps({"texts": list(request.texts)}).encode()


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def response(request: EmbeddingsRequest, answer: dict) -> dict:
    """OpenAI's response from the handler's `{"embeddings": [...], "tokens": [...]}`."""
    vectors, tokens = answer["embeddings"], sum(answer["tokens"])
    encode = encode_base64 if request.encoding_format == "base64" else list
    return {"object": "list", "model": request.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "data": [{"object": "embedding", "index": i, "embedding": encode(vector)} for i, vector in enumerate(vectors)]}


HANDLER_TEXTS = re.compile(r'"texts(\[\d+\])?"')
"""How the text handler names the texts of the request the front made for it ({"texts": [...]})."""


def as_input(detail: str) -> str:
    """The handler's message in the client's terms: what it calls "texts" the client sent as 'input'."""
    return HANDLER_TEXTS.sub(lambda match: "'input'" + (match.group(1) or ""), detail)


def torchserve_error(status: int, body: bytes) -> OpenAIError:
    """A refusal of TorchServe or of the handler in OpenAI's shape, with its status; TorchServe's
    wrong or missing key (400 InvalidKeyException) is OpenAI's 401."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("type") == "InvalidKeyException":
        return OpenAIError(401, f"wrong or missing API key: {data.get('message', '')}".strip(), code="invalid_api_key")
    if isinstance(data, dict) and isinstance(data.get("error"), str):  # the handler's {"error": code, "detail": ...}
        return OpenAIError(status, as_input(str(data.get("detail") or data["error"])), param="input", code=data["error"])
    if isinstance(data, dict) and "message" in data:  # TorchServe's {"code", "type", "message"}
        busy = busy_message(str(data["message"]))
        if busy:
            return OpenAIError(status, busy)
        return OpenAIError(status, str(data["message"]), code=str(data.get("type") or "") or None)
    text = body.decode("utf-8", errors="replace").strip()
    return OpenAIError(status, text or f"TorchServe answered {status}")


def model_object(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNER}


def models_list(names: list[str]) -> dict:
    return {"object": "list", "data": [model_object(name) for name in names]}

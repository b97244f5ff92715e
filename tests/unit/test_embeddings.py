"""scripts/serving/embeddings.py: OpenAI's embeddings request checked, the handler's answer made
OpenAI's response (float and base64), and refusals in OpenAI's error shape."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from scripts.serving.embeddings import (
    EmbeddingsRequest,
    OpenAIError,
    check_dimensions,
    models_list,
    parse_request,
    response,
    torchserve_body,
    torchserve_error,
)


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(("sent", "expected"), [
    (body(model="minilm", input="hello"), EmbeddingsRequest("minilm", ("hello",))),
    (body(model="minilm", input=["a", "b"], encoding_format="base64", user="u1"), EmbeddingsRequest("minilm", ("a", "b"), "base64")),
    (body(model="minilm", input="x", dimensions=384), EmbeddingsRequest("minilm", ("x",), dimensions=384)),
    ("{\"model\": \"minilm\", \"input\": \"caf\u00e9 \u2615\"}".encode(), EmbeddingsRequest("minilm", ("caf\u00e9 \u2615",))),
])
def test_a_request_is_checked_into_texts(sent, expected):
    assert parse_request(sent) == expected


@pytest.mark.parametrize(("sent", "param", "words"), [
    (b"{not json", None, "not JSON"),
    (b"\xff\xfe", None, "not UTF-8"),
    (b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", None, "nested too deeply"),
    (b"[1, 2]", None, "JSON object"),
    (body(model="minilm", input="x", temperature=1), "temperature", "unknown field"),
    (body(input="x"), "model", "'model'"),
    (body(model=3, input="x"), "model", "'model'"),
    (body(model="minilm"), "input", "non-empty"),
    (body(model="minilm", input=""), "input", "is empty"),
    (body(model="minilm", input=[]), "input", "non-empty"),
    (body(model="minilm", input=["a", ""]), "input", "'input'[1] is empty"),
    (body(model="minilm", input=["a", 3]), "input", "'input'[1] must be a string"),
    (body(model="minilm", input=[101, 2023, 102]), "input", "token ids"),
    (body(model="minilm", input=[[101, 2023], [102]]), "input", "token ids"),
    (body(model="minilm", input=[["nested"]]), "input", "token ids"),
    (body(model="minilm", input={"text": "x"}), "input", "non-empty"),
    (body(model="minilm", input="x", encoding_format="int8"), "encoding_format", "float, base64"),
    (body(model="minilm", input="x", dimensions="384"), "dimensions", "integer"),
    (body(model="minilm", input="x", dimensions=True), "dimensions", "integer"),
    (body(model="minilm", input="x", user=7), "user", "'user'"),
])
def test_bad_requests_are_400s_naming_the_field(sent, param, words):
    with pytest.raises(OpenAIError) as raised:
        parse_request(sent)
    error = raised.value.body()["error"]
    assert raised.value.status == 400 and error["type"] == "invalid_request_error"
    assert error["param"] == param and words in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_other_dimensions_than_the_models_are_refused():
    check_dimensions(EmbeddingsRequest("minilm", ("x",), dimensions=384), 384)
    check_dimensions(EmbeddingsRequest("minilm", ("x",)), 384)
    with pytest.raises(OpenAIError, match="'dimensions' 256 is not supported: model minilm gives 384-dimensional"):
        check_dimensions(EmbeddingsRequest("minilm", ("x",), dimensions=256), 384)


def test_one_openai_request_is_one_texts_request():
    assert json.loads(torchserve_body(EmbeddingsRequest("minilm", ("a", "b")))) == {"texts": ["a", "b"]}


ANSWER = {"embeddings": [[0.5, -0.25, 0.125], [1.0, 0.0, -1.0]], "truncated": [False, False], "tokens": [5, 7]}


def test_the_response_in_openais_shape_with_the_real_token_counts():
    assert response(EmbeddingsRequest("minilm", ("a", "b")), ANSWER) == {
        "object": "list", "model": "minilm", "usage": {"prompt_tokens": 12, "total_tokens": 12},
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 0.125]},
                 {"object": "embedding", "index": 1, "embedding": [1.0, 0.0, -1.0]}]}


def test_base64_is_little_endian_float32_as_the_openai_client_decodes_it():
    data = response(EmbeddingsRequest("minilm", ("a", "b"), "base64"), ANSWER)["data"]
    for item, vector in zip(data, ANSWER["embeddings"], strict=True):
        decoded = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")  # what openai's client does
        assert decoded.tolist() == vector

QUEUE_FULL = (b'{"code": 503, "type": "ServiceUnavailableException", "message": "Model \\"minilm\\" has no worker to serve inference '
              b'request. Please use scale workers API to add workers. If this is a sequence inference, please check if it is closed, '
              b'or expired; or exceeds maxSequenceJobQueueSize"}')
"""TorchServe 0.12's whole answer to a request its model's full job queue cannot take."""


@pytest.mark.parametrize(("status", "sent", "expected"), [
    (400, b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}',
     (401, "authentication_error", "invalid_api_key")),
    (413, b'{"error": "too_many_texts", "detail": "65 texts; the limit is 64"}', (413, "invalid_request_error", "too_many_texts")),
    (404, b'{"code": 404, "type": "ModelNotFoundException", "message": "Model not found: m"}',
     (404, "invalid_request_error", "ModelNotFoundException")),
    (503, b'{"code": 503, "type": "ServiceUnavailableException", "message": "Model \\"minilm\\" has no worker"}',
     (503, "server_error", "ServiceUnavailableException")),
    (500, b"Worker died.", (500, "server_error", None)),
    (503, QUEUE_FULL, (503, "server_error", None)),
])
def test_torchserves_refusals_keep_their_status_in_openais_shape(status, sent, expected):
    error = torchserve_error(status, sent)
    assert (error.status, error.body()["error"]["type"], error.body()["error"]["code"]) == expected
    assert error.body()["error"]["message"]


@pytest.mark.parametrize(("detail", "message"), [
    ('\\"texts\\" has 65 items; the limit is 64 per request', "'input' has 65 items; the limit is 64 per request"),
    ('\\"texts[3]\\" contains a NUL character (U+0000) at position 1', "'input'[3] contains a NUL character (U+0000) at position 1"),
    ("a request of 5000 tokens; the limit is 4096", "a request of 5000 tokens; the limit is 4096"),
])
def test_the_handlers_refusals_name_the_clients_field(detail, message):
    """The front sends the client's `input` as the handler's "texts"; its refusals say `input` again."""
    body = ('{"error": "payload_too_large", "detail": "' + detail + '"}').encode()
    assert torchserve_error(413, body).body()["error"]["message"] == message


def test_a_full_queue_is_said_plainly():
    """TorchServe's words speak of no worker and scaling workers; the queue is what is full."""
    message = torchserve_error(503, QUEUE_FULL).body()["error"]["message"]
    assert message == "model minilm cannot take this request now: its job queue is full (job_queue_size), or it has no worker; retry in 1 s"


def test_the_models_list():
    assert models_list(["minilm"]) == {"object": "list", "data": [{"id": "minilm", "object": "model", "created": 0, "owned_by": "torchserve"}]}

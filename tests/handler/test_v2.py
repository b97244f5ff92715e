"""v2 (Open Inference Protocol) requests through the real handlers, no server: bodies made and
responses read by tritonclient's own codec, mixed in one batch with plain requests."""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.http as httpclient
import yaml
from ts.context import RequestProcessor

from handlers.text_embedder import TextEmbedder
from models.registry import get_spec
from scripts.build.archives import REPO
from scripts.build.weights import export

CAT = (REPO / "samples" / "cat.jpg").read_bytes()
COFFEE = (REPO / "samples" / "coffee.jpg").read_bytes()
TEXTS = ["A man is eating food.", "Unicode survives: naïve café, 東京."]


def handle(handler, context, requests: list[tuple[dict, dict]]) -> list[tuple[int, dict, bytes | str]]:
    """One batch of (request, headers): each reply's (status, response headers + content type, body)."""
    context.request_ids = {idx: str(uuid.uuid4()) for idx in range(len(requests))}
    context.request_processor = [RequestProcessor(dict(headers)) for _, headers in requests]
    context.metrics.request_ids = context.request_ids
    bodies = handler.handle([request for request, _ in requests], context)
    assert len(bodies) == len(requests)
    return [(context.get_response_status(i)[0],
             {**context.get_response_headers(i), "content-type": context.get_response_content_type(i)}, body)
            for i, body in enumerate(bodies)]


def binary_request(inputs, outputs=None) -> tuple[dict, dict]:
    """What tritonclient.http sends by default: the binary tensor extension."""
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"Inference-Header-Content-Length": str(json_size)} if json_size else {}
    return {"body": bytearray(body)}, headers


def read_result(reply) -> httpclient.InferResult:
    """Our response through tritonclient's response codec."""
    status, headers, body = reply
    assert status == 200, body
    raw = body.encode() if isinstance(body, str) else body
    return httpclient.InferResult.from_response_body(raw, header_length=headers.get("Inference-Header-Content-Length"))


def bytes_input(name: str, elements: list[bytes], binary: bool = True) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, [len(elements)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_), binary_data=binary)
    return tensor


def json_images(*images: bytes, **extra) -> dict:
    return {"body": {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)],
                                 "data": [base64.b64encode(i).decode() for i in images]}], **extra}}


@pytest.fixture(scope="module")
def plain_top(classifier, classifier_context, serve):
    """The plain route's top-k for the cat and the coffee photo: what v2 must agree with."""
    replies = serve(classifier, classifier_context, [{"body": bytearray(CAT)}, {"body": bytearray(COFFEE)}])
    return [reply.body for reply in replies]


def test_two_images_in_one_binary_request_agree_with_the_plain_route(classifier, classifier_context, plain_top):
    reply = handle(classifier, classifier_context, [binary_request([bytes_input("image", [CAT, COFFEE])])])[0]
    assert reply[1]["content-type"] == "application/octet-stream"  # binary_data_output: tritonclient's default
    result = read_result(reply)
    labels, probabilities = result.as_numpy("labels"), result.as_numpy("probabilities")
    assert labels.shape == probabilities.shape == (2, 5) and probabilities.dtype == np.float32
    for row, expected in enumerate(plain_top):
        assert [x.decode() for x in labels[row]] == list(expected)
        assert np.allclose(probabilities[row], list(expected.values()), atol=1e-6)
    assert result.get_response()["model_name"] == "efficientnet_lite0"


def test_json_base64_images_and_named_outputs(classifier, classifier_context, plain_top):
    asked = json_images(CAT, outputs=[{"name": "labels"}])
    status, headers, body = handle(classifier, classifier_context, [(asked, {})])[0]
    assert status == 200 and headers["content-type"] == "application/json"
    response = json.loads(body)
    assert [o["name"] for o in response["outputs"]] == ["labels"]
    assert response["outputs"][0]["shape"] == [1, 5] and response["outputs"][0]["data"] == list(plain_top[0])


def test_one_batch_mixes_protocols_and_a_bad_request_fails_alone(classifier, classifier_context, plain_top):
    corrupt = CAT[: len(CAT) // 3]
    replies = handle(classifier, classifier_context, [
        ({"body": bytearray(CAT)}, {}),
        binary_request([bytes_input("image", [COFFEE])]),
        binary_request([bytes_input("image", [CAT, corrupt])]),
        (json_images(COFFEE), {}),
    ])
    assert [r[0] for r in replies] == [200, 200, 422, 200]
    assert json.loads(replies[0][2]) == plain_top[0]
    assert [x.decode() for x in read_result(replies[1]).as_numpy("labels")[0]] == list(plain_top[1])
    error = json.loads(replies[2][2])
    assert error["code"] == "undecodable_input" and error["error"].startswith("image 1 of 2:")
    assert json.loads(replies[3][2])["outputs"][0]["data"][:5] == list(plain_top[1])


@pytest.mark.parametrize("body, status, says", [
    ({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}, 400, "must be BYTES"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1, 1], "data": ["eA=="]}]}, 400, "shape [N]"),
    ({"inputs": [{"name": "picture", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}]}, 400, "missing input 'image'"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["eA=="]}]}, 400, "holds 2 elements"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(CAT).decode()]}],
      "outputs": [{"name": "logits"}]}, 400, "unknown output 'logits'"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["not base64!"]}]}, 400, "base64"),
    ({"inputs": []}, 400, "non-empty list"),
    (b'{"inputs": [{"name": "image",', 400, "does not parse"),
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [17], "data": ["eA=="] * 17}]}, 413, "max_images"),
    # v2's own words, not the v1 endpoint's curl advice
    ({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}]}, 400, "element of the BYTES input `image`"),
])
def test_bad_json_requests_get_a_v2_error_and_their_status(classifier, classifier_context, body, status, says):
    request = {"body": bytearray(body) if isinstance(body, bytes) else body}
    replies = handle(classifier, classifier_context, [(request, {}), ({"body": bytearray(CAT)}, {})])
    assert [r[0] for r in replies] == [status, 200]
    error = json.loads(replies[0][2])
    assert says in error["error"] and set(error) == {"error", "code"}


@pytest.mark.parametrize("cut, length, says", [
    (1, None, "runs past"),                # the body lost its last byte
    (0, "abc", "number of bytes"),
    (0, "99999", "the body has"),
])
def test_binary_requests_whose_lengths_do_not_add_up(classifier, classifier_context, cut, length, says):
    request, headers = binary_request([bytes_input("image", [CAT])])
    if cut:
        request["body"] = request["body"][:-cut]
    if length:
        headers = {"Inference-Header-Content-Length": length}
    status, _, body = handle(classifier, classifier_context, [(request, headers)])[0]
    assert status == 400 and says in json.loads(body)["error"]


def test_describe_returns_the_v2_signature(classifier, classifier_context):
    (body,) = classifier.handle([{"body": b""}], describe_context(classifier_context))
    v2 = json.loads(body)["v2"]
    assert v2["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in v2["outputs"]] == [("labels", "BYTES", [-1, 5]), ("probabilities", "FP32", [-1, 5])]


def describe_context(context):
    context.request_processor = [RequestProcessor({"describe": "True"})]
    return context


@pytest.fixture(scope="module")
def embedder(tmp_path_factory, make_context):
    folder: Path = export(get_spec("minilm"), tmp_path_factory.mktemp("minilm"))
    context = make_context(folder, yaml.safe_load(get_spec("minilm").config_path.read_text()))
    handler = TextEmbedder()
    handler.initialize(context)
    return handler, context


def test_texts_binary_and_json_embed_as_the_plain_route(embedder, serve):
    handler, context = embedder
    plain = torch.tensor(serve(handler, context, [{"body": {"texts": TEXTS}}])[0].body["embeddings"])
    binary = handle(handler, context, [binary_request([bytes_input("text", [t.encode() for t in TEXTS])])])[0]
    embedding = read_result(binary).as_numpy("embedding")
    assert embedding.shape == (2, 384) and torch.allclose(torch.tensor(embedding), plain, atol=1e-6)
    as_json = {"body": {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS}]}}
    status, _, body = handle(handler, context, [(as_json, {})])[0]
    output = json.loads(body)["outputs"][0]
    assert status == 200 and output["shape"] == [2, 384]
    assert torch.allclose(torch.tensor(output["data"]).reshape(2, 384), plain, atol=1e-6)


@pytest.mark.parametrize("data, status, says", [
    (["x"] * 65, 413, '"text" has 65 items; the limit is 64'),
    (["fine", " "], 400, '"text[1]" is empty'),
])
def test_text_errors_name_the_v2_input_not_the_v1_field(embedder, data, status, says):
    handler, context = embedder
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(data)], "data": data}]}
    reply_status, _, reply = handle(handler, context, [({"body": body}, {})])[0]
    error = json.loads(reply)["error"]
    assert reply_status == status and says in error and "texts" not in error


def test_text_that_is_not_utf8_fails_its_request(embedder):
    handler, context = embedder
    status, _, body = handle(handler, context, [binary_request([bytes_input("text", [b"\xff\xfe"])])])[0]
    assert status == 400 and "not UTF-8" in json.loads(body)["error"]


def test_the_grpc_bridge_sends_bytes_base64_and_gets_its_ids_back(embedder):
    """TorchServe's OIP gRPC service hands the handler JSON with id, model_name and base64 BYTES."""
    handler, context = embedder
    bridged = {"id": "req-7", "model_name": "minilm", "inputs": [
        {"name": "text", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(TEXTS[1].encode()).decode()]}]}
    status, _, body = handle(handler, context, [({"body": bridged}, {})])[0]
    response = json.loads(body)
    assert status == 200 and response["id"] == "req-7" and {"model_name", "model_version"} <= set(response)
    plain = handle(handler, context, [({"body": {"text": TEXTS[1]}}, {})])[0]
    assert torch.allclose(torch.tensor(response["outputs"][0]["data"]), torch.tensor(json.loads(plain[2])["embedding"]), atol=1e-6)

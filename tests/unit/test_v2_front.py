"""scripts/serving/v2_front.py without a server: path routing, where an infer goes, TorchServe's errors made
v2, the handler's v2 block read at either nesting, model metadata assembled, request bodies read."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from scripts.serving.v2_front import Body, Route, V2Error, infer_target, model_metadata, parse_listen, route, v2_block, wrapped_error

IMAGE_V2 = {"platform": "onnxruntime_onnx",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "labels", "datatype": "BYTES", "shape": [-1, 5]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 5]}]}


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "/v2", Route("server")),
    ("GET", "/v2/", Route("server")),
    ("GET", "/v2/health/live", Route("live")),
    ("GET", "/v2/health/ready?verbose=1", Route("ready")),
    ("GET", "/v2/models/minilm", Route("model", "minilm")),
    ("GET", "/v2/models/minilm/versions/1.0", Route("model", "minilm", "1.0")),
    ("GET", "/v2/models/minilm/ready", Route("model_ready", "minilm")),
    ("GET", "/v2/models/minilm/versions/2.0/ready", Route("model_ready", "minilm", "2.0")),
    ("POST", "/v2/models/minilm/infer", Route("infer", "minilm")),
    ("POST", "/v2/models/minilm/versions/1.0/infer", Route("infer", "minilm", "1.0")),
    ("GET", "/v2/models/versions/ready", Route("model_ready", "versions")),  # a model may be called "versions"
    ("GET", "/v2/models/my%20net", Route("model", "my net")),
    ("HEAD", "/v2/health/ready", Route("ready")),
])
def test_route(method, path, expected):
    assert route(method, path) == expected


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 404),
    ("GET", "/v2/health", 404),
    ("GET", "/v2/health/started", 404),
    ("GET", "/v2/models", 404),
    ("GET", "/v2/models/", 404),
    ("GET", "/v2/models//ready", 404),
    ("GET", "/v2/models/m/versions", 404),
    ("GET", "/v2/models/m/versions//ready", 404),
    ("POST", "/v2/models/m/explain", 404),
    ("GET", "/v2/models/m/ready/now", 404),
    ("GET", "/predictions/minilm", 404),
    ("GET", "/v2/models/m/infer", 405),
    ("POST", "/v2/health/ready", 405),
    ("DELETE", "/v2/models/m", 405),
])
def test_route_refusals_name_the_problem(method, path, status):
    with pytest.raises(V2Error) as raised:
        route(method, path)
    assert raised.value.status == status
    assert set(raised.value.body()) == {"error"} and path.split("?")[0] in raised.value.body()["error"]


@pytest.mark.parametrize(("found", "query", "target"), [
    (Route("infer", "minilm"), "", "/v2/models/minilm/infer"),
    (Route("infer", "minilm", "1.0"), "", "/predictions/minilm/1.0"),  # TorchServe's v2 route has no version
    (Route("infer", "a b/c"), "x=1", "/v2/models/a%20b%2Fc/infer?x=1"),
])
def test_infer_target(found, query, target):
    assert infer_target(found, query) == target


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}',
     "InvalidKeyException: Token Authorization failed."),
    (404, b'{\n  "code": 404,\n  "type": "ModelNotFoundException",\n  "message": "Model not found: nope"\n}',
     "ModelNotFoundException: Model not found: nope"),
    (503, b'{"code": 503, "message": "Model \\"m\\" has no worker to serve inference request."}',
     'Model "m" has no worker to serve inference request.'),
    (413, b"", "413 Request Entity Too Large"),  # Netty's own refusal has no body
    (500, b"Worker died.\n", "Worker died."),
    (599, b"", "599"),
    (422, b'{"code": "undecodable_input", "detail": "not an image"}', '{"code": "undecodable_input", "detail": "not an image"}'),
    (400, b'["not", "an", "object"]', '["not", "an", "object"]'),
    (400, b'{"error": 3}', '{"error": 3}'),  # "error" must be a string to be v2
])
def test_torchserve_errors_are_wrapped_with_what_it_said(status, body, error):
    assert json.loads(wrapped_error(status, body)) == {"error": error}


@pytest.mark.parametrize("body", [b'{"error": "input text: expected BYTES"}', b'{"error": "x", "code": "bad_input"}'])
def test_v2_errors_are_kept_as_they_are(body):
    assert wrapped_error(400, body) is None


@pytest.mark.parametrize("customized", [
    {"v2": IMAGE_V2},
    {"v2": json.dumps(IMAGE_V2)},
    json.dumps({"v2": IMAGE_V2}),
    json.dumps({"v2": json.dumps(IMAGE_V2)}),
    {"v2": IMAGE_V2, "other": 1},
])
def test_v2_block_as_object_or_string_at_either_level(customized):
    assert v2_block(customized) == IMAGE_V2


@pytest.mark.parametrize("customized", [None, {}, "", "not json", {"data1": "1"}, {"v2": "not json"}, {"v2": [1]}, ["v2"]])
def test_no_v2_block(customized):
    assert v2_block(customized) is None


def test_model_metadata_keeps_the_v2_fields_only():
    block = {**IMAGE_V2, "inputs": [{**IMAGE_V2["inputs"][0], "description": "JPEG or PNG bytes"}]}
    assert model_metadata("efficientnet_lite0", ["1.0", "2.0"], block) == {
        "name": "efficientnet_lite0", "versions": ["1.0", "2.0"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}], "outputs": IMAGE_V2["outputs"]}


def test_model_metadata_default_platform():
    block = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
             "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]}
    assert model_metadata("minilm", ["1.0"], block)["platform"] == "torchserve"


@pytest.mark.parametrize(("block", "problem"), [
    ({"outputs": []}, "inputs is not a list"),
    ({"inputs": [], "outputs": [{"name": "x", "datatype": "FP32"}]}, "outputs: "),
    ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, "k"]}], "outputs": []}, "inputs: "),
    ({"inputs": [{"name": 1, "datatype": "FP32", "shape": [-1]}], "outputs": []}, "inputs: "),
])
def test_malformed_v2_blocks_are_named(block, problem):
    with pytest.raises(ValueError, match=problem):
        model_metadata("m", ["1.0"], block)


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1:8090", ("127.0.0.1", 8090)), ("0.0.0.0:80", ("0.0.0.0", 80)), (":8090", ("0.0.0.0", 8090)),
])
def test_parse_listen(text, address):
    assert parse_listen(text) == address


@pytest.mark.parametrize("text", ["8090", "host:", "host:port"])
def test_parse_listen_refuses(text):
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):  # argparse prints its message
        parse_listen(text)


def read_all(body: Body, size: int) -> bytes:
    return b"".join(iter(lambda: body.read(size), b""))


@pytest.mark.parametrize("size", [1, 3, 65536])
def test_body_reads_content_length_bytes_and_no_further(size):
    stream = io.BytesIO(b'{"inputs": []}POST /next HTTP/1.1\r\n')
    body = Body(stream, 14)
    assert read_all(body, size) == b'{"inputs": []}' and body.done
    assert stream.read() == b"POST /next HTTP/1.1\r\n"  # the next request on the connection is left alone


@pytest.mark.parametrize("size", [1, 4, 65536])
def test_body_decodes_a_chunked_request(size):
    stream = io.BytesIO(b"5\r\nhello\r\nB;ext=1\r\n, v2 front!\r\n0\r\nTrailer: x\r\n\r\nNEXT")
    body = Body(stream, None)
    assert read_all(body, size) == b"hello, v2 front!" and body.done
    assert stream.read() == b"NEXT"


def test_an_empty_body_is_done_at_once():
    assert Body(io.BytesIO(b"GET"), 0).read() == b"" and Body(io.BytesIO(b""), 0).done


def test_a_body_cut_short_ends():
    body = Body(io.BytesIO(b"abc"), 10)
    assert read_all(body, 4) == b"abc" and body.done

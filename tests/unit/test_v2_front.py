"""scripts/serving/v2.py and the front (scripts/serving/front.py) without TorchServe: where an infer
goes, TorchServe's errors made v2, metadata assembly, listen addresses (pure), and the front's
aiohttp app served in process: its routes, its refusals, and the relay (streamed both ways) to a
stand-in upstream. tests/integration/test_v2_front.py runs the front against the real TorchServe."""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from scripts.serving import readiness
from scripts.serving.front import parse_listen
from scripts.serving.v2 import Front, V2Error, check_infer_body_type, infer_target, model_metadata, v2_block, wrapped_error

IMAGE_V2 = {"platform": "onnxruntime_onnx",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": "labels", "datatype": "BYTES", "shape": [-1, 5]},
                        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 5]}]}


@pytest.mark.parametrize(("model", "version", "query", "target"), [
    ("minilm", None, "", "/v2/models/minilm/infer"),
    ("minilm", "1.0", "", "/predictions/minilm/1.0"),  # TorchServe's v2 route has no version
    ("a b/c", None, "x=1", "/v2/models/a%20b%2Fc/infer?x=1"),
])
def test_infer_target(model, version, query, target):
    assert infer_target(model, version, query) == target


@pytest.mark.parametrize(("status", "body", "error"), [
    (400, b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}',
     "InvalidKeyException: Token Authorization failed."),
    (404, b'{\n  "code": 404,\n  "type": "ModelNotFoundException",\n  "message": "Model not found: nope"\n}',
     "ModelNotFoundException: Model not found: nope"),
    (503, b'{"code": 503, "message": "Model \\"m\\" has no worker to serve inference request."}',  # a full queue, said plainly
     "model m cannot take this request now: its job queue is full (job_queue_size), or it has no worker; retry in 1 s"),
    (503, b'{"code": 503, "type": "ServiceUnavailableException", "message": "Model m is not ready"}',
     "ServiceUnavailableException: Model m is not ready"),
    (413, b"", "the request body is over TorchServe's max_request_size"),  # Netty's own refusal has no body
    (502, b"", "502 Bad Gateway"),  # any other wordless status: its phrase
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


class DescribingServer(readiness.Server):
    """TorchServe's management API for one model version whose describe takes a while (a job in a busy
    queue), counting the describes it was asked for."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:1", Path("no-key-file.json"))
        self.describes = 0
        self._count = threading.Lock()

    def get(self, path: str, timeout_s: float = readiness.TIMEOUT_S) -> tuple[int, object]:
        version = {"modelVersion": "1.0", "modelUrl": "m.mar", "workers": [{"status": "READY"}]}
        if path.endswith("?customized=true"):
            with self._count:
                self.describes += 1
            time.sleep(0.2)  # the describe's own time: the other askers arrive meanwhile
            return 200, [{**version, "customizedMetadata": {"v2": IMAGE_V2}}]
        return 200, [version]


def test_the_first_askers_of_a_model_wait_for_one_describe():
    """A describe is a job in the model's queue: 16 first requests at once must not send 16 (a queue of
    a few would refuse most of them, and the requests behind them)."""
    server = DescribingServer()
    front = Front(server, "http://127.0.0.1:1")
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: front.model_metadata("m", None), range(16)))
    assert server.describes == 1
    assert all(answer == answers[0] and answer["platform"] == IMAGE_V2["platform"] for answer in answers)
    front.model_metadata("m", "1.0")
    assert server.describes == 1  # remembered for that version and archive


@pytest.mark.parametrize("media_type", ["application/x-www-form-urlencoded", "multipart/form-data", " Multipart/Form-Data "])
def test_a_form_is_no_v2_infer_body(media_type):
    with pytest.raises(V2Error) as refused:
        check_infer_body_type(media_type)
    assert refused.value.status == 415 and "not a form" in str(refused.value)


@pytest.mark.parametrize("media_type", ["application/json", "application/octet-stream", "application/vnd.example+json", ""])
def test_v2_bodies_pass(media_type):
    check_infer_body_type(media_type)

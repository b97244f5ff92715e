"""handlers.oip: v2 requests parsed and responses encoded, checked against tritonclient's codec."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tritonclient.http as httpclient

from handlers import oip
from handlers.errors import ProtocolError


def generate(inputs, outputs=None):
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, json_size


def tensor(name, array, datatype, binary=True):
    t = httpclient.InferInput(name, list(array.shape), datatype)
    t.set_data_from_numpy(array, binary_data=binary)
    return t


@pytest.mark.parametrize("payload, headers, expected", [
    ({"inputs": []}, {}, True),
    ({"text": "hi"}, {}, False),
    (b'  {"inputs": [', {}, True),
    ('{"inputs"', {}, True),
    (b"\xff\xd8\xff\xe0 a jpeg", {}, False),
    (b"\xff\xd8 binary", {"inference-header-content-length": "12"}, True),
    ("plain text", {}, False),
    (None, {}, False),
])
def test_what_counts_as_v2(payload, headers, expected):
    assert oip.is_v2(payload, headers) is expected


def test_binary_request_from_tritonclient_parses():
    images = np.array([b"first", b"\x00second\xff"], dtype=np.object_)
    numbers = np.arange(6, dtype=np.float32).reshape(2, 3)
    body, size = generate([tensor("image", images, "BYTES"), tensor("x", numbers, "FP32")],
                          [httpclient.InferRequestedOutput("labels", binary_data=True)])
    request = oip.parse(bytearray(body), size)
    assert request.input("image", "BYTES").data == [b"first", b"\x00second\xff"]
    assert request.inputs[1].shape == (2, 3) and request.inputs[1].data == list(range(6))
    assert request.outputs == (("labels", True),) and not request.binary_output


def test_json_request_from_tritonclient_parses():
    body, size = generate([tensor("text", np.array(["héllo", "x"], dtype=np.object_), "BYTES", binary=False)])
    assert size is None
    request = oip.parse(json.loads(body), None)
    assert request.input("text", "BYTES").data == ["héllo", "x"] and request.binary_output  # no outputs named


@pytest.mark.parametrize("document, says", [
    ({}, '"inputs"'),
    ({"inputs": [{"datatype": "BYTES", "shape": [1], "data": ["a"]}]}, '"name"'),
    ({"inputs": [{"name": "a", "datatype": "STRING", "shape": [1], "data": ["a"]}]}, "not a v2 datatype"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [-1], "data": ["a"]}]}, "non-negative"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1]}]}, 'no "data"'),
    ({"inputs": [{"name": "a", "datatype": "FP32", "shape": [2], "data": [1.0, "2"]}]}, "must be numbers"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": [1]}]}, "must be strings"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": ["x"]}] * 2}, "unique"),
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": ["x"]}], "outputs": {}}, "must be a list"),
    ([1, 2], "must be a JSON object"),
])
def test_malformed_requests_say_what_is_wrong(document, says):
    with pytest.raises(ProtocolError) as caught:
        oip.parse(document if isinstance(document, dict) else json.dumps(document).encode(), None)
    assert says in caught.value.detail and caught.value.status_code == 400


def nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("payload, says", [
    (b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "nested too deeply to parse"),  # a RecursionError in json
    ({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "data": nested(900, "x")}]}, "nested more than 32 deep"),
])
def test_too_deep_json_is_a_400_not_a_recursion_error(payload, says):
    """TorchServe hands over a dict it parsed itself (up to the recursion limit deep), or the bytes it could not parse."""
    with pytest.raises(ProtocolError) as caught:
        oip.parse(payload, None)
    assert says in caught.value.detail and caught.value.status_code == 400


def test_nested_data_is_flattened_row_major():
    document = {"inputs": [{"name": "a", "datatype": "INT32", "shape": [2, 2], "data": [[1, 2], [3, [4]]]}]}
    assert oip.parse(document, None).inputs[0].data == [1, 2, 3, 4]


@pytest.mark.parametrize("mangle, says", [
    (lambda body: body + b"extra", "follow the JSON header"),
    (lambda body: body[:-3], "runs past"),
])
def test_binary_lengths_that_do_not_add_up(mangle, says):
    body, size = generate([tensor("image", np.array([b"abcdef"], dtype=np.object_), "BYTES")])
    with pytest.raises(ProtocolError) as caught:
        oip.parse(mangle(body), size)
    assert says in caught.value.detail


@pytest.mark.parametrize("size", [-3, "6", 2.5, True])
def test_a_binary_data_size_that_is_no_size(size):
    header = json.dumps({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": size}}]}).encode()
    with pytest.raises(ProtocolError, match=f"binary_data_size must be a non-negative integer, not {re.escape(repr(size))}"):
        oip.parse(header + b"abcdef", len(header))


def test_a_bytes_element_longer_than_its_data():
    header = json.dumps({"inputs": [{"name": "a", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}]}).encode()
    with pytest.raises(ProtocolError, match="runs past the end"):
        oip.parse(header + (100).to_bytes(4, "little") + b"ab", len(header))


@pytest.mark.parametrize("binary", [True, False])
def test_responses_read_back_by_tritonclient(binary):
    request = oip.InferRequest("id-1", (), (), binary_output=binary)
    labels = oip.Tensor("labels", "BYTES", (2, 2), ["tabby", "tiger cat", "espresso", "cup"])
    probabilities = oip.Tensor("probabilities", "FP32", (2, 2), [0.5, 0.25, 0.75, 0.125])
    body, header_length = oip.encode(request, "m", "1.0", oip.select_outputs(request, [labels, probabilities]))
    assert (header_length is not None) is binary
    result = httpclient.InferResult.from_response_body(body, header_length=header_length)
    decoded = result.as_numpy("labels")
    assert [x.decode() if isinstance(x, bytes) else x for x in decoded.reshape(-1)] == labels.data
    assert result.as_numpy("probabilities").reshape(-1).tolist() == probabilities.data
    assert result.get_response()["id"] == "id-1" and result.get_response()["model_version"] == "1.0"


def test_unknown_output_names_what_there_is():
    request = oip.InferRequest("", (), (("logits", False),), binary_output=False)
    with pytest.raises(ProtocolError, match="unknown output 'logits'; this model has embedding"):
        oip.select_outputs(request, [oip.Tensor("embedding", "FP32", (1, 1), [0.0])])


@pytest.mark.parametrize("element, base64_encoded, expected", [
    ("héllo", False, "héllo"),
    (b"h\xc3\xa9llo", False, "héllo"),
    ("aMOpbGxv", True, "héllo"),
])
def test_text_elements(element, base64_encoded, expected):
    assert oip.as_text(0, element, base64_encoded) == expected


@pytest.mark.parametrize("element, base64_encoded", [(b"\xff", False), ("@@", True)])
def test_text_elements_that_are_not_text(element, base64_encoded):
    with pytest.raises(ProtocolError, match="element 3 is not UTF-8"):
        oip.as_text(3, element, base64_encoded)


@pytest.mark.parametrize("headers", [{"Inference-Header-Content-Length": "0"}, {"INFERENCE-HEADER-CONTENT-LENGTH": "x"}])
def test_bad_header_lengths(headers):
    with pytest.raises(ProtocolError):
        oip.header_length(headers)

"""v2 inference (Open Inference Protocol) through TorchServe's own `/v2/models/{m}/infer` route,
with tritonclient.http, a client nobody here wrote: photos and texts in its default binary
extension and in JSON, bad input answered per request, v2 requests batched with plain ones."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from scripts.client.torchserve import REPO
from tests.integration.corpus import BYTE_KINDS, CATS, raw_bytes

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("settled")]

CAT = (REPO / "samples" / "cat.jpg").read_bytes()
COFFEE = (REPO / "samples" / "coffee.jpg").read_bytes()


@pytest.fixture(scope="module")
def triton(server):
    client = httpclient.InferenceServerClient(urlparse(server.urls["inference"]).netloc, concurrency=4, network_timeout=120)
    yield client
    client.close()


def images(*photos: bytes, binary: bool = True) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("image", [len(photos)], "BYTES")
    tensor.set_data_from_numpy(np.array(photos, dtype=np.object_), binary_data=binary)
    return [tensor]


def texts(*sentences: str) -> list[httpclient.InferInput]:
    tensor = httpclient.InferInput("text", [len(sentences)], "BYTES")
    tensor.set_data_from_numpy(np.array([s.encode() for s in sentences], dtype=np.object_))
    return [tensor]


def test_two_photos_in_one_binary_request(triton, server):
    result = triton.infer("efficientnet_lite0", images(CAT, COFFEE), headers=server.auth("inference"))
    labels, probabilities = result.as_numpy("labels"), result.as_numpy("probabilities")
    assert labels.shape == probabilities.shape == (2, 5) and probabilities.dtype == np.float32
    assert labels[0][0].decode() in CATS and labels[1][0].decode() == "espresso"
    assert np.all(np.diff(probabilities, axis=1) <= 0)  # most probable first
    plain = server.predict("efficientnet_lite0", data=CAT).json()
    assert [label.decode() for label in labels[0]] == list(plain)


def test_named_outputs_in_json(triton, server):
    asked = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    result = triton.infer("efficientnet_lite0", images(COFFEE), outputs=asked, headers=server.auth("inference"))
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["probabilities"] and "data" in response["outputs"][0]
    assert response["model_name"] == "efficientnet_lite0" and response["model_version"] == "1.0"


def test_texts_embed_as_on_the_plain_route(triton, server):
    sentences = ("A man is eating food.", "Unicode survives: naïve café, 東京.")
    embedding = triton.infer("minilm", texts(*sentences), headers=server.auth("inference")).as_numpy("embedding")
    plain = np.array(server.predict("minilm", json={"texts": list(sentences)}).json()["embeddings"])
    assert embedding.shape == (2, 384) and np.allclose(embedding, plain, atol=1e-5)


def test_json_base64_photo_with_curl_like_body(server):
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(CAT).decode()]}]}
    response = requests.post(server.url("inference", "/v2/models/efficientnet_lite0/infer"), json=body,
                             headers=server.auth("inference"), timeout=60)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    labels = response.json()["outputs"][0]
    assert labels["name"] == "labels" and labels["shape"] == [1, 5] and labels["data"][0] in CATS


@pytest.mark.parametrize("case", BYTE_KINDS, ids=lambda case: case.name)
def test_each_bad_photo_of_the_corpus_keeps_its_code_over_v2(triton, server, case):
    status, code = case.image
    if status == 200:
        assert triton.infer("efficientnet_lite0", images(raw_bytes(case)), headers=server.auth("inference")).as_numpy("labels").shape == (1, 5)
        return
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("efficientnet_lite0", images(raw_bytes(case)), headers=server.auth("inference"))
    assert raised.value.status() == str(status), raised.value.message()


@pytest.mark.parametrize("body, says", [
    (b'{"inputs": [{"name": "image", "datatype"', "does not parse"),
    (json.dumps({"inputs": [{"name": "image", "datatype": "INT8", "shape": [1], "data": [1]}]}).encode(), "must be BYTES"),
    (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [3], "data": ["eA=="]}]}).encode(), "holds 3 elements"),
    (json.dumps({"inputs": [{"name": "photo", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}]}).encode(), "missing input 'image'"),
    (json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["eA=="]}],
                 "outputs": [{"name": "logits"}]}).encode(), "unknown output 'logits'"),
])
def test_malformed_v2_gets_a_v2_error_and_the_worker_stays_up(server, body, says):
    url = server.url("inference", "/v2/models/efficientnet_lite0/infer")
    response = requests.post(url, data=body, headers={**server.auth("inference"), "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 400 and says in response.json()["error"]
    assert server.predict("efficientnet_lite0", data=CAT).status_code == 200


DEEP = b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"  # 100 KB; json's parser recurses per level


@pytest.mark.parametrize("model", ["efficientnet_lite0", "minilm"])
@pytest.mark.parametrize("route", ["/v2/models/{model}/infer", "/predictions/{model}", "/predictions/{model}/1.0"])
def test_json_nested_50000_deep_is_a_v2_400_on_every_route(server, model, route):
    """Once a 500 "the input could not be processed" (issue 21): a RecursionError in the v2 parser."""
    url = server.url("inference", route.format(model=model))
    response = requests.post(url, data=DEEP, headers={**server.auth("inference"), "Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": "malformed v2 request: the JSON is nested too deeply to parse", "code": "invalid_v2_request"}


def test_a_binary_length_that_does_not_add_up(server, triton):
    body, json_size = httpclient.InferenceServerClient.generate_request_body(images(CAT))
    headers = {**server.auth("inference"), "Inference-Header-Content-Length": str(json_size)}
    response = requests.post(server.url("inference", "/v2/models/efficientnet_lite0/infer"), data=body[:-10], headers=headers, timeout=60)
    assert response.status_code == 400 and "runs past" in response.json()["error"]


def test_v2_and_plain_requests_batch_together_and_bad_ones_fail_alone(server):
    """Concurrent requests of both protocols, some bad: every good one answers right."""
    corrupt = CAT[: len(CAT) // 3]

    def v2(photos):  # tritonclient.http runs on gevent: one client per thread
        client = httpclient.InferenceServerClient(urlparse(server.urls["inference"]).netloc, network_timeout=120)
        try:
            return client.infer("efficientnet_lite0", images(*photos), headers=server.auth("inference")).as_numpy("labels")[0][0].decode()
        except InferenceServerException as error:
            return int(error.status())
        finally:
            client.close()

    def plain(photo):
        response = server.predict("efficientnet_lite0", data=photo)
        return next(iter(response.json())) if response.status_code == 200 else response.status_code

    jobs = [(v2, (CAT, COFFEE)), (plain, COFFEE), (v2, (corrupt,)), (plain, corrupt), (v2, (COFFEE,)), (plain, CAT)] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: job[0](job[1]), jobs))
    expected = ["cat", "espresso", 422, 422, "espresso", "cat"] * 4
    for answer, wanted in zip(answers, expected, strict=True):
        assert (answer in CATS) if wanted == "cat" else answer == wanted


def test_a_wrong_key_is_refused_before_the_handler(triton):
    with pytest.raises(InferenceServerException) as raised:
        triton.infer("efficientnet_lite0", images(CAT), headers={"Authorization": "Bearer wrong"})
    assert raised.value.status() == "400"  # TorchServe's InvalidKeyException, sent before any handler runs

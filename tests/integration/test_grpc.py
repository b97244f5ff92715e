"""TorchServe's gRPC APIs through scripts/grpc_client.py, against the session server: predictions
with the inference key, management with the management key, the handler's error bodies raised as
PredictionError (TorchServe 0.12's gRPC drops per-request statuses), and the size limits."""

from __future__ import annotations

import io
import json

import grpc
import numpy as np
import pytest
import yaml
from PIL import Image

from models.registry import get_spec
from scripts.grpc_client import GrpcClient, PredictionError
from scripts.torchserve import REPO
from tests.integration.corpus import CORPUS, FRONTEND_413, OCTETS

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("settled")]

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}


def raw_bytes(case) -> bytes | None:
    request = case.build()
    content_type = request.get("headers", {}).get("Content-Type", "")
    if set(request) != {"data", "headers"} or not content_type.startswith(("image/", OCTETS)):
        return None
    return bytes(request["data"])


# Corpus kinds that are raw bytes with an image or octet-stream type: over HTTP the handler gets
# them as bytes, just as over gRPC, so the same code is expected. (Kinds whose meaning depends on
# HTTP headers, forms or JSON parsing by the frontend have no gRPC equivalent.)
BYTE_KINDS = [case for case in CORPUS if case.image != FRONTEND_413 and raw_bytes(case) is not None]


@pytest.fixture(scope="module")
def client(server):
    grpc_client = GrpcClient.from_config(server.workdir / "config.properties", server.workdir / "key_file.json")
    yield grpc_client
    grpc_client.close()


def test_a_photo_and_a_text(client):
    labels = client.predict("efficientnet_lite0", (REPO / "samples" / "cat.jpg").read_bytes())
    assert next(iter(labels)) in CATS
    embedding = client.predict("minilm", json.dumps({"text": "A man is eating food."}).encode())
    assert len(embedding["embedding"]) == 384 and embedding["truncated"] is False
    assert client.ping() == "Healthy"


@pytest.mark.parametrize("case", BYTE_KINDS, ids=lambda case: case.name)
def test_each_bad_input_raises_with_its_code(client, case):
    body, (status, error) = raw_bytes(case), case.image
    if status == 200:
        assert next(iter(client.predict("efficientnet_lite0", body)))
        return
    with pytest.raises(PredictionError) as raised:
        client.predict("efficientnet_lite0", body)
    assert (raised.value.code, raised.value.status) == (error, status)


def test_a_wrong_key_is_permission_denied(server):
    wrong = server.workdir / "wrong_keys.json"
    wrong.write_text(json.dumps({api: {"key": "wrong"} for api in ("inference", "management", "API")}))
    bad = GrpcClient.from_config(server.workdir / "config.properties", wrong)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            bad.predict("efficientnet_lite0", b"x")
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as raised:
            bad.list_models()
        assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        bad.close()


def test_management_list_describe_scale(client):
    names = {model["modelName"] for model in client.list_models()["models"]}
    assert {"efficientnet_lite0", "minilm"} <= names
    (described,) = client.describe("minilm")
    shipped = yaml.safe_load(get_spec("minilm").config_path.read_text())["minWorkers"]
    assert described["modelName"] == "minilm" and [w["status"] for w in described["workers"]] == ["READY"] * shipped
    assert client.scale("minilm", min_worker=shipped) == f"Workers scaled to {shipped} for model: minilm"


def noise_png(megabytes: float) -> bytes:
    side = int((megabytes * 1e6 / 3) ** 0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def test_bodies_over_grpcios_4_mib_default_pass_up_to_max_request_size(client):
    body = noise_png(6)
    assert 4 * 1024 * 1024 < len(body) < 20 * 1024 * 1024
    assert client.predict("efficientnet_lite0", body)  # a prediction, not an error
    with pytest.raises(grpc.RpcError) as raised:
        client.predict("efficientnet_lite0", noise_png(21))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

"""TorchServe's gRPC APIs through scripts/client/grpc_client.py, against the session server: predictions
with the inference key, management with the management key, the handler's error bodies raised as
PredictionError (TorchServe 0.12's gRPC drops per-request statuses), and the size limits."""

from __future__ import annotations

import json

import grpc
import pytest
import yaml

from models.registry import get_spec
from scripts.client.grpc_client import GrpcClient, PredictionError
from scripts.client.torchserve import REPO
from tests.integration.corpus import BYTE_KINDS, CATS, raw_bytes
from tests.support.images import noise_png

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("settled")]

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


def test_bodies_over_grpcios_4_mib_default_pass_up_to_max_request_size(client):
    body = noise_png(6)
    assert 4 * 1024 * 1024 < len(body) < 20 * 1024 * 1024
    assert client.predict("efficientnet_lite0", body)  # a prediction, not an error
    with pytest.raises(grpc.RpcError) as raised:
        client.predict("efficientnet_lite0", noise_png(21))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

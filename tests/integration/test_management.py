"""The management API on the real server: list, describe, scale, versions and set-default."""

from __future__ import annotations

import pytest
import yaml

from models.registry import get_spec
from tests.integration.conftest import encode

MODEL = "efficientnet_lite0"


def describe(server, model: str = MODEL, version: str = "") -> dict:
    response = server.manage("GET", f"/models/{model}/{version}".rstrip("/"))
    assert response.status_code == 200, response.text
    return response.json()[0]


def test_list_shows_the_served_model(server):
    models = server.manage("GET", "/models").json()["models"]
    assert {"modelName": MODEL, "modelUrl": "efficientnet_lite0.mar"} in models


def test_describe_shows_workers_and_batch_settings_from_model_config(server):
    info = describe(server)
    shipped = yaml.safe_load(get_spec(MODEL).config_path.read_text())
    assert (info["batchSize"], info["maxBatchDelay"]) == (shipped["batchSize"], shipped["maxBatchDelay"])
    assert info["minWorkers"] == 1
    assert [w["status"] for w in info["workers"]] == ["READY"]


def test_scale_workers_up_and_back(server, coffee):
    assert server.manage("PUT", f"/models/{MODEL}", params={"min_worker": 2, "max_worker": 2, "synchronous": "true"}).status_code == 200
    try:
        assert len(describe(server)["workers"]) == 2
        assert server.predict(MODEL, data=encode(coffee, "JPEG")).status_code == 200
    finally:
        server.manage("PUT", f"/models/{MODEL}", params={"min_worker": 1, "max_worker": 1, "synchronous": "true"})
    assert len(describe(server)["workers"]) == 1


@pytest.fixture
def version_two(server):
    response = server.manage("POST", "/models", params={"url": "efficientnet_lite0_v2.mar", "initial_workers": 1, "synchronous": "true"})
    assert response.status_code == 200, response.text
    yield "2.0"
    server.manage("PUT", f"/models/{MODEL}/1.0/set-default")
    assert server.manage("DELETE", f"/models/{MODEL}/2.0").status_code == 200


def test_two_versions_and_set_default(server, version_two, coffee):
    versions = {m["modelVersion"] for m in server.manage("GET", f"/models/{MODEL}/all").json()}
    assert versions == {"1.0", "2.0"}
    assert server.predict(f"{MODEL}/2.0", data=encode(coffee, "JPEG")).status_code == 200

    assert server.manage("PUT", f"/models/{MODEL}/2.0/set-default").status_code == 200
    assert describe(server)["modelVersion"] == "2.0"
    assert next(iter(server.predict(MODEL, data=encode(coffee, "JPEG")).json())) == "espresso"

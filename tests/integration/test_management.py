"""The management API on the real server: list, describe, scale, versions and set-default."""

from __future__ import annotations

import pytest
import yaml

from models.registry import get_spec
from scripts.client.torchserve import poll_until
from tests.integration.conftest import encode

MODEL = "efficientnet_lite0"
SHIPPED_WORKERS = yaml.safe_load(get_spec(MODEL).config_path.read_text())["minWorkers"]


def describe(server, model: str = MODEL, version: str = "") -> dict:
    response = server.manage("GET", f"/models/{model}/{version}".rstrip("/"))
    assert response.status_code == 200, response.text
    return response.json()[0]


def all_ready(info: dict) -> dict | None:
    """`info` once every worker is READY: /ping is Healthy before they all have loaded (two models x
    two workers take a while on 2 cores)."""
    return info if all(w["status"] == "READY" for w in info["workers"]) else None


def test_list_shows_the_served_model(server):
    models = server.manage("GET", "/models").json()["models"]
    assert {"modelName": MODEL, "modelUrl": "efficientnet_lite0.mar"} in models


def test_describe_shows_workers_and_batch_settings_from_model_config(server):
    info = poll_until(lambda: all_ready(describe(server)), 240, f"every {MODEL} worker READY", interval_s=0.2)
    shipped = yaml.safe_load(get_spec(MODEL).config_path.read_text())
    assert (info["batchSize"], info["maxBatchDelay"]) == (shipped["batchSize"], shipped["maxBatchDelay"])
    assert info["minWorkers"] == shipped["minWorkers"] == SHIPPED_WORKERS
    assert [w["status"] for w in info["workers"]] == ["READY"] * SHIPPED_WORKERS


def test_scale_workers_up_and_back(server, coffee):
    more = SHIPPED_WORKERS + 1
    assert server.manage("PUT", f"/models/{MODEL}", params={"min_worker": more, "max_worker": more, "synchronous": "true"}).status_code == 200
    try:
        assert len(describe(server)["workers"]) == more
        assert server.predict(MODEL, data=encode(coffee, "JPEG")).status_code == 200
    finally:
        server.manage("PUT", f"/models/{MODEL}", params={"min_worker": SHIPPED_WORKERS, "max_worker": SHIPPED_WORKERS,
                                                          "synchronous": "true"})
    assert len(describe(server)["workers"]) == SHIPPED_WORKERS


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

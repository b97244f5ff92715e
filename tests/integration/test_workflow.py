"""photo_embedding.war on the real server: registered by scripts/serving/serve.py at start, as `make serve` does."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

from tests.integration.conftest import encode

WORKFLOW = "photo_embedding"


def wfpredict(server, headers: dict | None = None, **kwargs) -> requests.Response:
    return requests.post(f"{server.urls['inference']}/wfpredict/{WORKFLOW}",
                         headers={**server.auth("inference"), **(headers or {})}, timeout=120, **kwargs)


def embed(server, text: str) -> np.ndarray:
    response = server.predict("minilm", json={"text": text})
    assert response.status_code == 200, response.text
    return np.array(response.json()["embedding"])


def test_coffee_photo_gets_labels_caption_and_embedding(server, workflow, coffee):
    result = wfpredict(server, data=encode(coffee, "JPEG")).json()
    assert "espresso" in result["labels"]
    assert "espresso" in result["caption"]
    assert len(result["embedding"]) == 384
    assert np.linalg.norm(result["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_a_text_query_finds_the_coffee_photo_before_the_cat(server, workflow, coffee, chelsea):
    query = embed(server, "a cup of coffee")
    coffee_vector = np.array(wfpredict(server, data=encode(coffee, "JPEG")).json()["embedding"])
    cat_vector = np.array(wfpredict(server, data=encode(chelsea, "JPEG")).json()["embedding"])
    assert query @ coffee_vector > query @ cat_vector


def test_function_nodes_run_one_at_a_time_whatever_the_spec_says(server, workflow):
    """TorchServe 0.12 registers a function node with batch 1 and no batch delay (the spec's models:
    defaults do not reach it): it answers in a millisecond or two, which is why the spec retries it
    soon (workflows/photo_embedding.yaml, docs/workflow.md). The model nodes take the spec's batching."""
    nodes = {node: server.describe(f"{WORKFLOW}__{node}").json()[0] for node in ("caption", "assemble", "efficientnet_lite0")}
    assert {node: (d["batchSize"], d["maxBatchDelay"]) for node, d in nodes.items()} == {
        "caption": (1, 0), "assemble": (1, 0), "efficientnet_lite0": (8, 10)}


def test_base64_json_input(server, workflow, chelsea):
    payload = {"data": base64.b64encode(encode(chelsea, "PNG")).decode()}
    labels = wfpredict(server, json=payload).json()["labels"]
    assert {"tabby", "tiger cat", "Egyptian cat"} & set(labels)


@pytest.mark.parametrize(
    ("body", "headers", "status", "error"),
    [
        (b"%PDF-1.4 not an image", {"Content-Type": "application/octet-stream"}, 422, "undecodable_input"),
        (b"", {"Content-Type": "application/octet-stream"}, 400, "empty_payload"),
        (b'{"data": "!!"}', {"Content-Type": "application/json"}, 400, "invalid_payload"),
        (b"hello", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ],
)
def test_bad_input_gets_its_error_and_status_in_the_body(server, workflow, coffee, body, headers, status, error):
    """TorchServe 0.12 answers every completed workflow with HTTP 200 (WorkflowManager.predict), so
    the 4xx a node gave travels in the body; the workflow keeps serving good photos afterwards."""
    response = wfpredict(server, data=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"error": error, "detail": response.json()["detail"], "status": status}
    assert response.json()["detail"]
    assert "espresso" in wfpredict(server, data=encode(coffee, "JPEG")).json()["labels"]


def test_unregister_and_register_again(server, workflow, coffee):
    assert server.manage("DELETE", f"/workflows/{WORKFLOW}").status_code == 200
    assert wfpredict(server, data=encode(coffee, "JPEG")).status_code == 404
    response = server.manage("POST", "/workflows", params={"url": f"{WORKFLOW}.war"})
    assert response.status_code == 200, response.text
    assert "espresso" in wfpredict(server, data=encode(coffee, "JPEG")).json()["labels"]

"""Requests that share a batch: a corrupt image among good ones fails alone."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.conftest import encode

pytestmark = pytest.mark.reliability

BATCHED = "batched_lite0"


@pytest.fixture(scope="module")
def batched_model(server):
    """The same archive registered with a long batch delay, so concurrent requests share a batch."""
    params = "url=efficientnet_lite0.mar&model_name=batched_lite0&batch_size=8&max_batch_delay=500&initial_workers=1&synchronous=true"
    assert server.manage("POST", f"/models?{params}").status_code == 200
    yield BATCHED
    assert server.manage("DELETE", f"/models/{BATCHED}").status_code == 200


def test_corrupt_items_fail_alone_in_a_shared_batch(server, batched_model, coffee):
    good = encode(coffee, "JPEG")
    bodies = [good, good[: len(good) // 3], good, b"\x00" * 64, good, good, b"GIF89a-broken", good]
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda body: server.predict(batched_model, data=body), bodies))

    statuses = [r.status_code for r in responses]
    assert statuses == [200, 422, 200, 422, 200, 200, 422, 200]
    for response in responses:
        body = response.json()
        if response.status_code == 200:
            assert next(iter(body)) == "espresso"
        else:
            assert set(body) == {"error", "detail"}

    metrics = server.metrics(batched_model)
    assert metrics["HandlerItems"] == len(bodies)
    assert metrics["HandlerBatches"] < len(bodies), "requests were not batched"
    assert metrics['HandlerItemErrors{Code="undecodable_input"}'] == 3

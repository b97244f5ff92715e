"""The Prometheus endpoint (no token on the metrics port) shows TorchServe's and our counters."""

from __future__ import annotations

from tests.integration.conftest import encode


def test_inference_counters_grow(server, coffee):
    items_before = server.metrics("efficientnet_lite0").get("HandlerItems", 0.0)
    before = server.metrics("efficientnet_lite0").get("ts_inference_requests_total", 0.0)
    assert server.predict("efficientnet_lite0", data=encode(coffee, "JPEG")).status_code == 200
    after = server.metrics("efficientnet_lite0")
    assert after["ts_inference_requests_total"] == before + 1
    assert after["HandlerItems"] == items_before + 1  # one request: one item
    assert after["HandlerInferenceMs"] > 0

"""The Prometheus endpoint (no token on the metrics port) shows TorchServe's and our counters."""

from __future__ import annotations

import re

import requests

from tests.integration.conftest import encode


def scrape(server, model: str) -> dict[str, float]:
    """Metric name (with any dimension besides the model's own) -> value, for one model."""
    text = requests.get(f"{server.urls['metrics']}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{(.*)\} ([0-9.eE+-]+)$", line)
        if not match or f'="{model}"' not in match.group(2):
            continue
        name, labels, value = match.groups()
        extra = [pair for pair in labels.rstrip(",").split(",") if pair.startswith("Code=")]
        values[name + (f"{{{extra[0]}}}" if extra else "")] = float(value)
    return values


def test_inference_counters_grow(server, coffee):
    items_before = scrape(server, "efficientnet_lite0").get("HandlerItems", 0.0)
    before = scrape(server, "efficientnet_lite0").get("ts_inference_requests_total", 0.0)
    assert server.predict("efficientnet_lite0", data=encode(coffee, "JPEG")).status_code == 200
    after = scrape(server, "efficientnet_lite0")
    assert after["ts_inference_requests_total"] == before + 1
    assert after["HandlerItems"] == items_before + 1  # one request: one item
    assert after["HandlerInferenceMs"] > 0

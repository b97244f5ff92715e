"""A real Prometheus scrapes the test server: PromQL counts the requests sent, its p99 lies where
the measured latencies are, the alert rules evaluate on real series, and every dashboard panel's
query parses and returns series (the GPU panels' only on a server with GPUs). Skipped where
Prometheus is not installed (Debian: prometheus)."""

from __future__ import annotations

import bisect
import json
import re
import time
from pathlib import Path

import pytest
import yaml

from handlers.metrics import LATENCY_BUCKETS_S
from tests.integration import prometheus as prom
from tests.integration.conftest import encode
from tests.integration.figures import record

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "rules.yaml"
DASHBOARD = REPO / "deploy" / "grafana" / "torchserve-bundle.json"
MODEL = "efficientnet_lite0"
SENT = 20  # below 100, so the p99 rank falls on the slowest request
SYNC_TIMEOUT_S = 30


@pytest.fixture(scope="module")
def prometheus(server, tmp_path_factory) -> prom.Prometheus:
    if prom.binary() is None:
        pytest.skip("prometheus not installed (Debian: apt-get install prometheus)")
    # Traffic of every kind the dashboard shows: answers, client errors (422) and server errors
    # (500: a body shaped like a workflow's upstream error, with a code the bundle does not define).
    assert server.predict(MODEL, data=b"not an image").status_code == 422
    made_up = json.dumps({"error": "made_up", "detail": "x"})
    assert server.predict(MODEL, data=made_up, headers={"Content-Type": "application/json"}).status_code == 500
    running = prom.Prometheus.start(tmp_path_factory.mktemp("prometheus"), {"torchserve": server.urls["metrics"]}, (RULES,))
    yield running
    assert running.stop() == 0


def synced(prometheus: prom.Prometheus, server, promql: str, name: str) -> tuple[float, float]:
    """(value, evaluation time) once Prometheus's `promql` equals the metrics port's `name` now."""
    expected = server.metrics(MODEL)[name]  # summed over the model's versions, as the query is

    def probe():
        data = prometheus.query(f"sum({promql})")
        return data and float(data[0]["value"][1]) == expected and (expected, float(data[0]["value"][0]))

    return prom.poll(probe, SYNC_TIMEOUT_S, f"{promql} == {expected}")


def bucket_floor(seconds: float) -> float:
    """The lower bound of the histogram bucket holding `seconds`."""
    idx = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
    return 0.0 if idx == 0 else LATENCY_BUCKETS_S[idx - 1]


def bucket_ceiling(seconds: float) -> float:
    idx = bisect.bisect_left(LATENCY_BUCKETS_S, seconds)
    return LATENCY_BUCKETS_S[idx] if idx < len(LATENCY_BUCKETS_S) else float("inf")


def test_promql_counts_the_requests_and_its_p99_lies_in_the_measured_range(prometheus, server, coffee):
    count = f'HandlerRequestSeconds_count{{ModelName="{MODEL}"}}'
    total = f'ts_inference_requests_total{{model_name="{MODEL}"}}'
    before, t0 = synced(prometheus, server, count, "HandlerRequestSeconds_count")
    total_before, _ = synced(prometheus, server, total, "ts_inference_requests_total")
    image, latencies = encode(coffee, "JPEG"), []
    for _ in range(SENT):
        start = time.perf_counter()
        assert server.predict(MODEL, data=image).status_code == 200
        latencies.append(time.perf_counter() - start)

    assert synced(prometheus, server, count, "HandlerRequestSeconds_count")[0] == before + SENT
    assert synced(prometheus, server, total, "ts_inference_requests_total")[0] == total_before + SENT

    def since_t0(metric: str) -> str:  # the growth since t0 exactly: no rate() extrapolation
        selector = f'{metric}{{ModelName="{MODEL}"}}'
        return f"sum by (le) ({selector}) - sum by (le) ({selector} @ {t0})"

    p99 = prometheus.value(f"histogram_quantile(0.99, {since_t0('HandlerRequestSeconds_bucket')})")
    mean = prometheus.value(f'sum(HandlerRequestSeconds_sum{{ModelName="{MODEL}"}}) - '
                            f'sum(HandlerRequestSeconds_sum{{ModelName="{MODEL}"}} @ {t0})') / SENT
    # The handler sees part of what the client measures, so its times lie below the client's.
    # With fewer than 100 requests the p99 is interpolated inside the bucket of the slowest one:
    # at least the floor of the bucket of the mean, at most the ceiling of the client's slowest.
    record("Prometheus p99 vs measured", requests=SENT, handler_p99_ms=round(p99 * 1000, 1), handler_mean_ms=round(mean * 1000, 1),
           client_min_ms=round(min(latencies) * 1000, 1), client_max_ms=round(max(latencies) * 1000, 1))
    assert 0 < mean <= sum(latencies) / SENT
    assert bucket_floor(mean) <= p99 <= bucket_ceiling(max(latencies)), (p99, mean, min(latencies), max(latencies))


def test_the_alert_rules_evaluate_on_the_real_series(prometheus):
    def evaluated():
        rules = [rule for group in prometheus.api("rules")["groups"] for rule in group["rules"]]
        return all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) and rules

    rules = prom.poll(evaluated, SYNC_TIMEOUT_S, "every rule evaluated")
    assert len(rules) == len([rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]])
    assert [(rule["name"], rule["health"], rule.get("lastError", "")) for rule in rules] == \
        [(rule["name"], "ok", "") for rule in rules]


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL with the dashboard's variables filled in) of every panel's targets."""
    dashboard = json.loads(DASHBOARD.read_text())
    fill = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$model": ".+"}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$__rate_interval|\$__interval|\$__range|\$model", lambda m: fill[m.group(0)], target["expr"])
            queries.append((panel["title"], expr))
    return queries


def test_every_dashboard_query_parses_and_returns_series(prometheus, server):
    queries = panel_queries()
    assert len(queries) >= 10
    synced(prometheus, server, f'HandlerItems{{ModelName="{MODEL}"}}', "HandlerItems")  # the traffic is scraped
    prom.poll(lambda: prometheus.query("rate(HandlerItems[1m])"), SYNC_TIMEOUT_S, "two scrapes in the rate window")
    empty = [(title, expr) for title, expr in queries if not prometheus.query(expr)]
    # The GPU panels' series exist only where TorchServe sees a GPU (and nvgpu is installed): on a
    # CPU server their queries parse (query() asserts success) and return nothing, "no data".
    gpu = [(title, expr) for title, expr in queries if title.startswith("GPU")]
    server_has_gpus = any(name.startswith("GPU") for name, _, _ in server.metric_samples())
    record("dashboard queries", queries=len(queries), empty=len(empty), gpus=server_has_gpus)
    assert len(gpu) == 3
    assert empty == ([] if server_has_gpus else gpu)

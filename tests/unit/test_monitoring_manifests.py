"""deploy/k8s/monitoring (PodMonitor), deploy/grafana (dashboard) and deploy/prometheus (rules)
name what the pod and the server really have: labels, port, path, metric names, variables.

tests/integration/test_prometheus.py runs every dashboard query and the rules on a real
Prometheus; this checks, without one, that they only name series the bundle exports."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path

import pytest
import ts
import yaml

REPO = Path(__file__).resolve().parents[2]
POD_TEMPLATE = yaml.safe_load((REPO / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())["spec"]["template"]
PODMONITOR = yaml.safe_load((REPO / "deploy" / "k8s" / "monitoring" / "podmonitor.yaml").read_text())
DASHBOARD = json.loads((REPO / "deploy" / "grafana" / "torchserve-bundle.json").read_text())
RULES = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yaml").read_text())

HANDLER_METRICS = re.findall(r'"(Handler\w+)"|f"Handler\{stage\}Seconds"', (REPO / "handlers" / "metrics.py").read_text())
TS_METRICS = {m["name"] for kind in yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())["ts_metrics"].values()
              for m in kind}


def exported() -> set[str]:
    """Every series name the bundle's server exports: TorchServe's, and the handler's with the
    suffixes Prometheus gives a histogram."""
    names = set(TS_METRICS) | {"up"}
    handler = {name for name in HANDLER_METRICS if name} | {f"Handler{s}Seconds" for s in ("Preprocess", "Inference", "Postprocess")}
    for name in handler:
        names.add(name)
        if name.endswith("Seconds"):
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "ignoring", "group_left", "le", "on", "without"}


def metric_names(expr: str) -> set[str]:
    """Identifiers that are series names: not functions, keywords, labels inside {} or by (...)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)                        # selectors' label matchers
    expr = re.sub(r"\b(by|ignoring|on|without)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)                       # range durations
    expr = re.sub(r'"[^"]*"', "", expr)
    return {word for word in re.findall(r"\b[A-Za-z_]\w*\b", expr) if word not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]


def test_podmonitor_selects_the_pods_metrics_port():
    spec = PODMONITOR["spec"]
    labels = POD_TEMPLATE["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for c in POD_TEMPLATE["spec"]["containers"] for p in c.get("ports", [])}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["port"] in ports
    annotations = POD_TEMPLATE["metadata"]["annotations"]
    assert (str(ports[endpoint["port"]]), endpoint["path"]) == (annotations["prometheus.io/port"], annotations["prometheus.io/path"])


@pytest.mark.parametrize("expr", dashboard_exprs() + [rule["expr"] for group in RULES["groups"] for rule in group["rules"]])
def test_queries_name_only_exported_series(expr):
    assert metric_names(expr) <= exported(), metric_names(expr) - exported()


def test_metric_names_finds_the_series_and_not_the_labels():
    expr = 'histogram_quantile(0.99, sum by (le, ModelName) (rate(HandlerRequestSeconds_bucket{ModelName=~"$model"}[5m])))'
    assert metric_names(expr) == {"HandlerRequestSeconds_bucket"}


def test_dashboard_panels_are_well_formed():
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    for wanted in ("Throughput", "Stage latency", "Batch size distribution", "Queue time", "Errors by code", "Workers", "Memory"):
        assert any(title.startswith(wanted) for title in titles), wanted
    for panel in panels:
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    for a, b in combinations([p["gridPos"] for p in panels], 2):  # no panel hides another
        apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]
        assert apart, (a, b)


def test_dashboard_variables_are_defined():
    defined = {v["name"] for v in DASHBOARD["templating"]["list"]}
    used = {name for expr in dashboard_exprs() for name in re.findall(r"\$(\w+)", expr) if not name.startswith("__")}
    assert used <= defined

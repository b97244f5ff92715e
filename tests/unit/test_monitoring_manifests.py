"""deploy/k8s/monitoring (PodMonitor), deploy/grafana (dashboard) and deploy/prometheus (rules)
name what the pod and the server really have: labels, port, path, metric names, variables.

tests/integration/test_prometheus.py runs every dashboard query and the rules on a real
Prometheus; this checks, without one, that they only name series the bundle exports."""

from __future__ import annotations

import json
import re
import sys
import types
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
TS_METRIC_SPECS = {m["name"]: m for kind in yaml.safe_load((Path(ts.__file__).parent / "configs" / "metrics.yaml").read_text())["ts_metrics"].values()
                   for m in kind}
TS_METRICS = set(TS_METRIC_SPECS)
GPU_SERIES = {"GPUUtilization", "GPUMemoryUsed", "GPUMemoryUtilization"}
TARGET_LABELS = {"instance", "job"}  # what Prometheus adds to every scraped series


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


PROMQL_WORDS = {"sum", "max", "by", "rate", "increase", "histogram_quantile", "ignoring", "group_left", "le", "on", "without"}


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
    for wanted in ("Throughput", "Stage latency", "Batch size distribution", "Queue time", "Errors by code", "Workers", "Memory",
                   "CPU utilisation", "GPU utilisation", "GPU memory used", "GPU memory utilisation"):
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


def gpu_panels() -> dict[str, dict]:
    """GPU series name -> the panel that shows it."""
    found = {}
    for panel in DASHBOARD["panels"]:
        for name in set().union(*(metric_names(t["expr"]) for t in panel["targets"])) & GPU_SERIES:
            assert name not in found, f"{name} in two panels"
            found[name] = panel
    return found


def gpu_rule() -> dict:
    (rule,) = [rule for group in RULES["groups"] for rule in group["rules"] if metric_names(rule["expr"]) & GPU_SERIES]
    return rule


def collected_gpu_metrics(monkeypatch) -> list:
    """What TorchServe 0.12's collector (ts/metrics/system_metrics.py) sends the frontend for two
    GPUs, with nvgpu and pynvml faked as they answer on a GPU host."""
    nvgpu, list_gpus = types.ModuleType("nvgpu"), types.ModuleType("nvgpu.list_gpus")
    nvgpu.gpu_info = lambda: [{"index": "0", "mem_used": 1200, "mem_total": 143771, "mem_used_percent": 0.8},
                              {"index": "1", "mem_used": 130000, "mem_total": 143771, "mem_used_percent": 90.4}]
    list_gpus.device_statuses = lambda: [{"utilization": 14}, {"utilization": 97}]
    nvgpu.list_gpus = list_gpus
    pynvml, nvml = types.ModuleType("pynvml"), types.ModuleType("pynvml.nvml")
    nvml.NVMLError_NotSupported = type("NVMLError_NotSupported", (Exception,), {})
    pynvml.nvml = nvml
    for name, module in {"nvgpu": nvgpu, "nvgpu.list_gpus": list_gpus, "pynvml": pynvml, "pynvml.nvml": nvml}.items():
        monkeypatch.setitem(sys.modules, name, module)
    from ts.metrics import system_metrics

    monkeypatch.setattr(system_metrics, "system_metrics", [])
    system_metrics.gpu_utilization(0)  # what a CPU server does: nothing
    assert system_metrics.system_metrics == []
    system_metrics.gpu_utilization(2)
    return system_metrics.system_metrics


def test_the_collector_sends_the_gpu_series_the_dashboard_and_the_alert_read(monkeypatch):
    """The frontend looks each collected metric up by name in metrics.yaml and labels its values by
    position with metrics.yaml's dimension names, Hostname appended: so on :8082 the GPU index is
    `DeviceId` (metrics.yaml), not the collector's `device_id` (checked on a server with fake nvgpu:
    GPUUtilization{Level="Host",DeviceId="0",Hostname="..."})."""
    metrics = collected_gpu_metrics(monkeypatch)
    assert {m.name for m in metrics} == GPU_SERIES == set(gpu_panels())
    assert metric_names(gpu_rule()["expr"]) <= GPU_SERIES
    assert len(metrics) == 2 * len(GPU_SERIES)
    for metric in metrics:
        spec = TS_METRIC_SPECS[metric.name]
        assert metric.dimension_names == ["Level", "device_id"] and metric.dimension_values[0] == "Host"
        assert spec["dimensions"] == ["Level", "DeviceId", "Hostname"]
    assert {(m.name, str(m.dimension_values[1]), m.value) for m in metrics} >= {("GPUMemoryUtilization", "1", 90.4), ("GPUUtilization", "1", 97)}


def test_gpu_panels_show_each_gpu_apart_and_say_why_they_are_empty():
    panels = gpu_panels()
    assert set(panels) == GPU_SERIES
    for name, panel in panels.items():
        (target,) = panel["targets"]
        labels = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target["legendFormat"]))
        assert "DeviceId" in labels and labels <= set(TS_METRIC_SPECS[name]["dimensions"]) | TARGET_LABELS, (name, labels)
        assert "by (" not in target["expr"], "one line per GPU: no aggregation"
        defaults = panel["fieldConfig"]["defaults"]
        assert "no GPU" in defaults["noValue"], name  # a CPU server shows why, not a bare "No data"
        unit = TS_METRIC_SPECS[name]["unit"]
        assert defaults["unit"] == {"Percent": "percent", "Megabytes": "mbytes"}[unit], name  # nvgpu's MB are nvidia-smi's MiB
        if unit == "Percent":
            assert (defaults["min"], defaults["max"]) == (0, 100), name


def test_gpu_alert_groups_by_real_labels_and_the_panel_marks_its_threshold():
    rule = gpu_rule()
    assert metric_names(rule["expr"]) == {"GPUMemoryUtilization"}
    (grouping,) = re.findall(r"\bby\s*\(([^)]*)\)", rule["expr"])
    by = {label.strip() for label in grouping.split(",")}
    assert "DeviceId" in by and by <= set(TS_METRIC_SPECS["GPUMemoryUtilization"]["dimensions"]) | TARGET_LABELS
    used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
    assert used <= by, used - by  # every label an annotation prints survives the aggregation
    (threshold,) = re.findall(r">\s*(\d+(?:\.\d+)?)\s*$", rule["expr"].strip())
    steps = gpu_panels()["GPUMemoryUtilization"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert float(threshold) in [step["value"] for step in steps if step["color"] == "red"]
    assert str(int(float(threshold))) in gpu_panels()["GPUMemoryUtilization"]["description"]


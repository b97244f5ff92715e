"""handlers/metrics.py: the [METRICS] lines a batch sends, as TorchServe's worker cache writes them."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import pytest
import ts
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handlers import errors
from handlers.metrics import (
    BATCH_SIZE_BUCKETS,
    ERROR_CODES,
    OTHER_CODE,
    StageTimer,
    batch_size_counts,
    error_label,
    report_batch,
    report_worker_start,
)

LINE = re.compile(r"\[METRICS\](\w+)\.(\w+):([0-9.e-]+)\|#([^|]*)\|#type:(\w+)\|")
STAGES_S = {"Preprocess": 0.012, "Inference": 0.2, "Postprocess": 0.001, "Request": 0.213}


@pytest.fixture
def metrics():
    cache = MetricsCacheYamlImpl(config_file_path=str(Path(ts.__file__).parent / "configs" / "metrics.yaml"))
    cache.initialize_cache()
    cache.model_name = "probe"
    cache.set_request_ids({0: "r0"})
    return cache


def sent(caplog, model: str | None = None) -> list[tuple[str, str, float, dict[str, str], str]]:
    """(name, unit, value, labels, type) of the [METRICS] lines logged: those of this thread (where
    report_batch runs), or with `model`, that model's from any thread (its heartbeat's own). Other
    handlers' heartbeat threads, started by the handler tier in this process, log here too."""
    lines = []
    for record in caplog.records:
        match = LINE.search(record.getMessage())
        if match and (model is not None or record.thread == threading.get_ident()):
            name, unit, value, dims, kind = match.groups()
            labels = dict(pair.split(":", 1) for pair in dims.split(",") if pair)
            if model is None or labels.get("ModelName") == model:
                lines.append((name, unit, float(value), labels, kind))
    return lines


@pytest.mark.parametrize("size, counted", [(1, (1, 2, 4, 8, 16, 32, 64)), (3, (4, 8, 16, 32, 64)), (8, (8, 16, 32, 64)),
                                           (64, (64,)), (100, ())])
def test_batch_size_counts_are_cumulative_and_complete(size, counted):
    counts = dict(batch_size_counts(size))
    assert list(counts) == [str(le) for le in BATCH_SIZE_BUCKETS] + ["+Inf"]
    assert counts["+Inf"] == 1
    assert {le for le, n in counts.items() if n and le != "+Inf"} == {str(le) for le in counted}


@pytest.mark.parametrize("code, label", [("undecodable_input", "undecodable_input"), ("out_of_resources", "out_of_resources"),
                                         ("anything a payload says", OTHER_CODE), ("", OTHER_CODE)])
def test_error_labels_are_a_fixed_set(code, label):
    assert error_label(code) == label


def test_every_error_class_has_its_code_in_the_set():
    classes = [cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, errors.RequestError)]
    assert {cls.code for cls in classes} <= ERROR_CODES
    assert len(ERROR_CODES) == len({cls.code for cls in classes}) + 1  # + OTHER_CODE


def test_stage_timer_measures_seconds():
    timer = StageTimer()
    with timer("Inference"):
        sum(range(10_000))
    assert 0 < timer.seconds["Inference"] < 1


def test_a_batch_sends_histograms_bucket_counters_and_error_codes(metrics, caplog):
    caplog.set_level(logging.INFO)
    report_batch(metrics, STAGES_S, 3, ["undecodable_input", "undecodable_input", "made-up <script>"])
    lines = sent(caplog)
    assert {labels["ModelName"] for *_, labels, _ in lines} == {"probe"}
    histograms = [(name, value) for name, unit, value, _, kind in lines if kind == "HISTOGRAM"]
    assert all(unit == "Seconds" for _, unit, _, _, kind in lines if kind == "HISTOGRAM")
    assert histograms[:3] == [("HandlerPreprocessSeconds", 0.012), ("HandlerInferenceSeconds", 0.2), ("HandlerPostprocessSeconds", 0.001)]
    assert histograms[3:] == [("HandlerRequestSeconds", 0.213)] * 3  # one observation per request
    buckets = {labels["le"]: value for name, _, value, labels, _ in lines if name == "HandlerBatchSize_bucket"}
    assert buckets == {"1": 0, "2": 0, "4": 1, "8": 1, "16": 1, "32": 1, "64": 1, "+Inf": 1}
    totals = {name: value for name, _, value, _, _ in lines if name in ("HandlerBatches", "HandlerItems")}
    assert totals == {"HandlerBatches": 1, "HandlerItems": 3}
    codes = {labels["Code"]: value for name, _, value, labels, _ in lines if name == "HandlerItemErrors"}
    assert codes == {"undecodable_input": 2, OTHER_CODE: 1}


def test_labels_do_not_depend_on_request_ids(metrics, caplog):
    """Sent between batches (the heartbeat), a metric keeps the label names it has in a batch."""
    caplog.set_level(logging.INFO)
    metrics.set_request_ids(None)
    report_batch(metrics, STAGES_S, 1, [])
    assert all(set(labels) >= {"ModelName", "Level"} for *_, labels, _ in sent(caplog))


def test_worker_start_counts_once_and_beats_until_stopped(metrics, caplog):
    caplog.set_level(logging.INFO)
    stop = report_worker_start(metrics, period_s=0.01)
    deadline = time.monotonic() + 5
    while sum(name == "HandlerWorkerHeartbeats" for name, *_ in sent(caplog, "probe")) < 3:
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.01)
    stop.set()
    names = [name for name, *_ in sent(caplog, "probe")]
    assert names.count("HandlerWorkerStarts") == 1


def test_no_metrics_cache_is_a_no_op():
    report_batch(None, STAGES_S, 1, ["x"])
    assert report_worker_start(None) is None


def test_docs_list_every_handler_series():
    """docs/metrics.md's table names exactly the series this module sends."""
    repo = Path(__file__).resolve().parents[2]
    source = (repo / "handlers" / "metrics.py").read_text()
    sent_names = set(re.findall(r'add_\w+\(\s*"(Handler\w+)"', source)) | {f"Handler{stage}Seconds" for stage in STAGES_S if stage != "Request"}
    documented = set(re.findall(r"^\| `(Handler\w+)`", (repo / "docs" / "metrics.md").read_text(), flags=re.M))
    assert documented == sent_names

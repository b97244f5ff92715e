"""`scripts/serving/serve.py --log-format json` (make serve LOG_FORMAT=json, SERVE_LOG_FORMAT=json): every
line of every TorchServe log is one JSON object, and a failed request can be followed from its
x-request-id header to the handler's line about it, and to its access-log line."""

from __future__ import annotations

import json
import time

from scripts.client.torchserve import TorchServe
from tests.integration.conftest import encode

MODEL = "efficientnet_lite0"
FIELDS = {"time", "level", "logger", "thread", "model", "request_id", "message"}
# What the console gets outside log4j2 (so not as JSON): serve.py's own status lines (serve:,
# workflows:, the ready: line), the launchers' prints (the config's vmargs named at start), the JVM's warnings.
NOT_LOG4J = ("serve: ", "ready: ", "workflows: ", "Removing orphan pid file", "WARNING: ", "nvidia-smi not available",
             "Model server started", "Warning: TorchServe is using non-default JVM parameters")
LOG_FILES = ("access_log.log", "model_log.log", "ts_log.log", "model_metrics.log", "ts_metrics.log")


def json_lines(path) -> list[dict]:
    """Every line of `path` parsed; a line that is not one JSON object with FIELDS fails."""
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        record = json.loads(line)
        assert isinstance(record, dict) and set(record) == FIELDS, f"{path.name}:{number}: {line}"
        records.append(record)
    return records


def test_every_log_line_is_json_and_a_request_can_be_followed(tmp_path, model_store, coffee):
    logs = tmp_path / "logs"
    server = TorchServe.start(tmp_path / "server", model_store, f"{MODEL}={MODEL}.mar",
                              extra_args=("--log-format", "json", "--log-dir", str(logs)))
    try:
        assert server.predict(MODEL, data=encode(coffee, "JPEG")).status_code == 200
        bad = server.predict(MODEL, data=b"not an image")
        assert bad.status_code == 422
        request_id = bad.headers["x-request-id"]

        def handler_line():
            return [r for r in json_lines(logs / "model_log.log") if r["request_id"] == request_id]

        deadline = time.monotonic() + 30
        while not handler_line():
            assert time.monotonic() < deadline, f"no model_log line with request_id {request_id}"
            time.sleep(0.2)
    finally:
        assert server.stop() == 0

    (line,) = handler_line()
    assert line["model"] == MODEL and line["logger"] == "MODEL_LOG"
    assert line["message"] == f"request_id={request_id}: answered 422 undecodable_input"
    access = [r for r in json_lines(logs / "access_log.log") if f'"POST /predictions/{MODEL} HTTP/1.1" 422' in r["message"]]
    assert len(access) == 1 and access[0]["model"] == MODEL  # TorchServe 0.12 logs no request id there
    counts = {name: len(json_lines(logs / name)) for name in LOG_FILES if (logs / name).exists()}
    assert counts["ts_log.log"] > 10 and counts["model_log.log"] > 5, counts
    console = (server.workdir / "serve.out").read_text().splitlines()
    not_json = [text for text in console if not text.startswith("{")]
    assert [text for text in not_json if not text.startswith(NOT_LOG4J)] == []
    assert all(set(json.loads(text)) == FIELDS for text in console if text.startswith("{"))
    assert sum(text.startswith("{") for text in console) > 10

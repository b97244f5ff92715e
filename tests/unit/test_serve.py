"""scripts/serving/serve.py: snapshots on or off, and resuming the model set of the newest snapshot."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
import torch
import ts

from scripts.serving.serve import LOG_CONFIGS, main, resume_config, torchserve_command

# Lines of a snapshot as TorchServe 0.12 writes it (java.util.Properties: one escaped line each).
MODEL_SNAPSHOT = (
    r'model_snapshot={\n  "name"\: "20261125192009826-snapshot.cfg",\n  "modelCount"\: 1,\n  "models"\: {\n'
    r'    "efficientnet_lite0"\: {\n      "1.0"\: {\n        "defaultVersion"\: true,\n'
    r'        "marName"\: "efficientnet_lite0.mar",\n        "minWorkers"\: 2,\n        "maxWorkers"\: 2\n'
    r'      }\n    }\n  }\n}'
)
SNAPSHOT = f"#Saving snapshot\ninference_address=http\\://127.0.0.1\\:18080\n{MODEL_SNAPSHOT}\nversion=0.12.0\n"


def test_snapshots_are_off_unless_asked_for(tmp_path):
    assert "--ncs" in torchserve_command(tmp_path / "c", tmp_path / "s", [])
    assert "--ncs" not in torchserve_command(tmp_path / "c", tmp_path / "s", [], snapshots=True)


def test_the_launcher_is_torchserves_module_run_by_this_interpreter(tmp_path):
    """No `torchserve` script is needed beside the interpreter (an offline GPU host has ts on PYTHONPATH only)."""
    command = torchserve_command(tmp_path / "c", tmp_path / "s", [])
    assert command[:3] == [sys.executable, "-m", "ts.model_server"]
    version = subprocess.run([*command[:3], "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert "TorchServe Version is 0.12.0" in version.stdout


def test_no_snapshot_keeps_the_config(tmp_path):
    config = tmp_path / "config.properties"
    assert resume_config(config, tmp_path / "missing", tmp_path / "run") == config


def test_the_newest_snapshot_gives_the_models_and_the_config_the_settings(tmp_path):
    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://0.0.0.0:8080\nload_models=ALL\n")
    snapshots = tmp_path / "logs" / "config"
    snapshots.mkdir(parents=True)
    (snapshots / "20261125192005014-startup.cfg").write_text(SNAPSHOT.replace("minWorkers", "oldWorkers"))
    (snapshots / "20261125192019172-shutdown.cfg").write_text(SNAPSHOT)
    resumed = resume_config(config, snapshots, tmp_path / "run")
    assert resumed.read_text() == f"inference_address=http://0.0.0.0:8080\nload_models=ALL\n{MODEL_SNAPSHOT}\n"


def test_a_snapshot_without_models_keeps_the_config(tmp_path):
    config = tmp_path / "config.properties"
    (tmp_path / "20261125192005014-startup.cfg").write_text("#Saving snapshot\nversion=0.12.0\n")
    assert resume_config(config, tmp_path, tmp_path / "run") == config


def test_each_log_format_gives_torchserve_its_log4j2_config(tmp_path):
    for log_format, config in LOG_CONFIGS.items():
        command = torchserve_command(tmp_path / "c", tmp_path / "s", [], log_config=config)
        assert command[command.index("--log-config") + 1] == str(config), log_format
        assert config.is_file()


ECHO_LOGGER = "org.pytorch.serve.wlm.WorkerLifeCycle"
ACCESS_LOGGER = "ACCESS_LOG"


def shape(root) -> tuple[set, set]:
    appenders = {(a.get("name"), a.get("fileName")) for a in root.find("Appenders")}
    loggers = {(lg.get("name"), lg.get("level"), tuple(r.get("ref") for r in lg)) for lg in root.find("Loggers")}
    return appenders, loggers


def stock_config():
    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    return ET.fromstring(zipfile.ZipFile(jar).read("log4j2.xml"))


@pytest.mark.parametrize("log_format", sorted(LOG_CONFIGS))
def test_the_log4j2_configs_keep_torchserves_appenders_and_loggers(log_format):
    """The same files and loggers as the jar's own log4j2.xml, plus the one that keeps the [METRICS]
    echo off the console, and the access log's console lines filtered: each layout as before."""
    ours = ET.parse(LOG_CONFIGS[log_format]).getroot()
    appenders, loggers = shape(ours)
    assert appenders == shape(stock_config())[0]
    changed = {ECHO_LOGGER, ACCESS_LOGGER}
    assert {lg for lg in loggers if lg[0] not in changed} == {lg for lg in shape(stock_config())[1] if lg[0] not in changed}
    assert (ECHO_LOGGER, "debug", ("model_metrics", "ts_log", "STDOUT")) in loggers
    assert (ACCESS_LOGGER, "info", ("access_log", "ts_log", "STDOUT")) in loggers  # as before: its own file, then root's


@pytest.mark.parametrize("log_format", sorted(LOG_CONFIGS))
@pytest.mark.parametrize("line, on_console", [
    ('/127.0.0.1:41906 "GET /models/minilm/all HTTP/1.1" 200 1', False),  # a readiness check
    ('/127.0.0.1:41906 "GET /ping HTTP/1.1" 200 3', False),
    ('/127.0.0.1:41906 "GET /workflows/photo_embedding HTTP/1.1" 200 0', False),
    ('/127.0.0.1:41906 "GET /metrics HTTP/1.1" 200 4', False),
    ('/127.0.0.1:41906 "POST /predictions/minilm HTTP/1.1" 200 12', True),
    ('/127.0.0.1:41906 "POST /v2/models/minilm/infer HTTP/1.1" 200 12', True),
    ('/127.0.0.1:41906 "GET /models/nope HTTP/1.1" 404 3', True),  # errors print
    ('/127.0.0.1:41906 "PUT /models/minilm?min_worker=2 HTTP/1.1" 202 3', True),  # changes print
])
def test_probe_reads_stay_off_the_console(log_format, line, on_console):
    """Access lines reach the console unless they are a probe's answered read (GET /models, /ping ...)."""
    access = next(lg for lg in ET.parse(LOG_CONFIGS[log_format]).getroot().find("Loggers") if lg.get("name") == ACCESS_LOGGER)
    (console,) = [ref for ref in access if ref.get("ref") == "STDOUT"]
    (regex_filter,) = console
    assert (regex_filter.get("onMatch"), regex_filter.get("onMismatch")) == ("DENY", "NEUTRAL")
    assert (re.fullmatch(regex_filter.get("regex"), line) is None) == on_console


@pytest.mark.parametrize("log_format", sorted(LOG_CONFIGS))
def test_the_metric_echo_goes_to_the_metrics_log_only(log_format):
    """WorkerLifeCycle's `result={}, pattern={}` line (one per [METRICS] line a worker prints) is
    accepted by model_metrics alone; the logger's other lines reach ts_log and the console as before."""
    echo = next(lg for lg in ET.parse(LOG_CONFIGS[log_format]).getroot().find("Loggers") if lg.get("name") == ECHO_LOGGER)
    assert echo.get("additivity") == "false"
    for ref in echo:
        (regex_filter,) = ref
        assert regex_filter.tag == "RegexFilter" and regex_filter.get("useRawMsg") == "true"
        assert re.fullmatch(regex_filter.get("regex"), "result={}, pattern={}")
        expected = ("ACCEPT", "DENY") if ref.get("ref") == "model_metrics" else ("DENY", "NEUTRAL")
        assert (regex_filter.get("onMatch"), regex_filter.get("onMismatch")) == expected


def test_the_text_log4j2_config_keeps_the_jars_layouts():
    ours = [layout.get("pattern") for layout in ET.parse(LOG_CONFIGS["text"]).getroot().iter("PatternLayout")]
    assert ours == [layout.get("pattern") for layout in stock_config().iter("PatternLayout")]


def test_the_json_log4j2_config_writes_json_lines():
    patterns = [layout.get("pattern") for layout in ET.parse(LOG_CONFIGS["json"]).getroot().iter("PatternLayout")]
    assert len(patterns) == len(stock_config().find("Appenders"))
    for pattern in patterns:
        assert pattern.startswith('{"time":"') and pattern.endswith('"}%n')
        assert all(f'"{key}":' in pattern for key in ("level", "logger", "model", "request_id", "message"))
        assert '"message":"%enc{%m}{JSON}"' in pattern  # escaped: quotes in a message cannot break the line


@pytest.mark.parametrize("flag", ["--front", "--v2-front"])  # --v2-front: the old name, still read
def test_the_front_address_is_checked_under_either_name(flag, capsys):
    with pytest.raises(SystemExit) as stopped:
        main([flag, "no-port-here"])  # refused while parsing, before Java or TorchServe is looked for
    assert stopped.value.code == 2 and "argument --front/--v2-front" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without a CUDA GPU")
def test_gpu_archives_are_not_served_without_a_gpu(tmp_path, capsys):
    """make serve VARIANT=gpu on a CPU host: refused at once with the reason, before TorchServe would start
    workers that fail to load (fp16, deviceType gpu) and restart them forever."""
    with pytest.raises(SystemExit) as refused:
        main(["--require-gpu", "--model-store", str(tmp_path)])
    assert "need a CUDA GPU and torch sees none" in str(refused.value) and "`make serve` serves on the CPU" in str(refused.value)

"""scripts/serve.py: snapshots on or off, and resuming the model set of the newest snapshot."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import ts

from scripts.serve import LOG_CONFIGS, resume_config, torchserve_command

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


def test_json_logs_give_torchserve_the_json_log4j2_config(tmp_path):
    command = torchserve_command(tmp_path / "c", tmp_path / "s", [], log_config=LOG_CONFIGS["json"])
    assert command[command.index("--log-config") + 1] == str(LOG_CONFIGS["json"])
    assert "--log-config" not in torchserve_command(tmp_path / "c", tmp_path / "s", [], log_config=LOG_CONFIGS["text"])


def test_the_json_log4j2_config_keeps_torchserves_appenders_and_loggers():
    """The same files and loggers as the jar's own log4j2.xml; only the layouts differ."""
    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    stock = ET.fromstring(zipfile.ZipFile(jar).read("log4j2.xml"))
    ours = ET.parse(LOG_CONFIGS["json"]).getroot()

    def shape(root):
        appenders = {(a.get("name"), a.get("fileName")) for a in root.find("Appenders")}
        loggers = {(lg.get("name"), lg.get("level"), tuple(r.get("ref") for r in lg)) for lg in root.find("Loggers")}
        return appenders, loggers

    assert shape(ours) == shape(stock)
    patterns = [layout.get("pattern") for layout in ours.iter("PatternLayout")]
    assert len(patterns) == len(stock.find("Appenders"))
    for pattern in patterns:
        assert pattern.startswith('{"time":"') and pattern.endswith('"}%n')
        assert all(f'"{key}":' in pattern for key in ("level", "logger", "model", "request_id", "message"))
        assert '"message":"%enc{%m}{JSON}"' in pattern  # escaped: quotes in a message cannot break the line

"""scripts/serve.py: snapshots on or off, and resuming the model set of the newest snapshot."""

from __future__ import annotations

from scripts.serve import resume_config, torchserve_command

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

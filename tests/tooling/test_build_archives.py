"""scripts.build.weights + scripts.build.archives on a tiny custom model: contents, metadata,
and byte-identical rebuilds."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import torch
import yaml

from handlers.architectures import build_module
from handlers.config import IMAGENET_MEAN, IMAGENET_STD
from handlers.weights import load_state_dict, sha256_file
from models.registry import custom_spec
from models.resources import MB
from scripts.build.archives import REPO, build_archive
from scripts.build.weights import export

NAME = "tinynet_test"
LABELS = ["red", "green", "blue", "grey"]
MODEL_SOURCE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(self.pool(x).flatten(1))
'''
CONFIG = """\
minWorkers: 1
maxWorkers: 1
batchSize: 2
handler:
  topk: 2
  resize: 40
  crop: 32
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """root/src: TinyNet's file, state_dict, labels and config; root/weights/<NAME>: the export."""
    root = tmp_path_factory.mktemp("tiny")
    src = root / "src"
    src.mkdir()
    (src / "tinynet.py").write_text(MODEL_SOURCE)
    torch.manual_seed(0)
    module = build_module({"library": "file", "file": "tinynet.py", "class": "TinyNet"}, src)
    torch.save(module.state_dict(), src / "tinynet.pth")
    (src / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (src / "model-config.yaml").write_text(CONFIG)
    spec = custom_spec(NAME, src / "tinynet.py", "TinyNet", src / "tinynet.pth", src / "labels.txt", src / "model-config.yaml")
    export(spec, root / "weights")
    return root


def build(root: Path, store: Path, version: str = "1.0") -> Path:
    return build_archive(NAME, root / "weights", store, version=version, config=root / "src" / "model-config.yaml")


@pytest.fixture(scope="module")
def mar(root) -> Path:
    return build(root, root / "store")


@pytest.fixture(scope="module")
def entries(mar) -> dict[str, bytes]:
    with zipfile.ZipFile(mar) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def test_archive_layout(mar, entries):
    assert mar.name == f"{NAME}.mar"
    handlers = {Path(name).name for name in entries if name.startswith("handlers/")}
    assert handlers == {path.name for path in (REPO / "handlers").glob("*.py")}
    assert not [name for name in entries if "__pycache__" in name or name.endswith(".pyc")]
    expected = {"image_classifier.py", "model.safetensors", "metadata.json", "labels.json",
                "model-config.yaml", "tinynet.py", "MAR-INF/MANIFEST.json"}
    assert expected <= set(entries)


@pytest.mark.parametrize("name", ["handlers/base.py", "handlers/vision.py", "image_classifier.py"])
def test_archived_sources_are_the_repo_files(entries, name):
    repo_file = REPO / "handlers" / Path(name).name
    assert entries[name] == repo_file.read_bytes()


def test_manifest(entries, root):
    manifest = json.loads(entries["MAR-INF/MANIFEST.json"])
    model = manifest["model"]
    assert model["modelName"] == NAME and model["modelVersion"] == "1.0"
    assert model["handler"] == "image_classifier.py"
    assert model["serializedFile"] == "model.safetensors"
    assert model["configFile"] == "model-config.yaml"
    created_at = json.loads((root / "weights" / NAME / "metadata.json").read_text())["created_at"]
    assert manifest["createdOn"] == datetime.fromisoformat(created_at).strftime("%d/%m/%Y %H:%M:%S")


def test_config_and_labels_travel(entries):
    assert yaml.safe_load(entries["model-config.yaml"]) == yaml.safe_load(CONFIG)
    assert json.loads(entries["labels.json"]) == LABELS


def test_metadata(entries, root):
    import torchvision

    metadata = json.loads(entries["metadata.json"])
    assert metadata["name"] == NAME
    assert metadata["architecture"] == {"library": "file", "file": "tinynet.py", "class": "TinyNet", "kwargs": {}}
    assert "tinynet.py:TinyNet" in metadata["source"] and "tinynet.pth" in metadata["source"]
    assert metadata["versions"] == {"torch": torch.__version__, "torchvision": torchvision.__version__}
    assert metadata["weights_file"] == "model.safetensors" and metadata["format"] == "safetensors"
    assert metadata["sha256"] == hashlib.sha256(entries["model.safetensors"]).hexdigest()
    tensors = load_state_dict(root / "weights" / NAME, metadata).values()
    assert metadata["resources"]["parameters"] == 3 * 4 + 4  # written once, with one size figure
    assert metadata["resources"]["weights_mb"] == round(sum(t.numel() * t.element_size() for t in tensors) / MB, 2)
    assert not {"parameters", "size_mb"} & set(metadata)
    assert metadata["num_labels"] == len(LABELS)
    assert metadata["input"]["tensor"]["shape"] == [3, 32, 32]
    # the config's values, and the settings' defaults for what it leaves out (handlers/config.py)
    assert metadata["input"]["preprocessing"] == {"resize": 40, "crop": 32, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    assert datetime.fromisoformat(metadata["created_at"]).tzinfo is not None


def test_zip_is_normalised(mar):
    with zipfile.ZipFile(mar) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_rebuild_is_byte_identical(mar, root, tmp_path):
    again = build(root, tmp_path / "store")
    assert again != mar and sha256_file(again) == sha256_file(mar)
    bumped = build(root, tmp_path / "v2", version="2.0")
    assert sha256_file(bumped) != sha256_file(mar)  # the comparison can fail: the version is in the manifest


def test_unpacked_archive_rebuilds_the_model(mar, tmp_path):
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(tmp_path)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    module = build_module(metadata["architecture"], tmp_path)
    module.load_state_dict(load_state_dict(tmp_path, metadata))  # strict: every key present and used
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.reliability
def test_a_build_leaves_other_builds_staging_alone(root, tmp_path):
    """torch-model-archiver stages in <tempdir>/<name> and deletes it first; a build beside
    another one of the same model (make archive during make test) must not touch its files."""
    shared = tempfile.gettempdir()
    other = Path(shared) / NAME
    other.mkdir(exist_ok=True)
    (other / "in-use").write_text("another build's file")
    try:
        build(root, tmp_path / "store")
        assert (other / "in-use").is_file()
        assert tempfile.gettempdir() == shared  # restored afterwards
    finally:
        shutil.rmtree(other, ignore_errors=True)


def test_a_config_torchserve_would_misread_is_refused_before_archiving(root, tmp_path, capsys):
    """`maxBatchDelay: 0` would load and then hold every batch 100 ms (TorchServe's default for an
    unset delay); a typo in the GPU section would show first on the GPU image: make archive says so."""
    from scripts.build.archives import main

    bad = tmp_path / "model-config.yaml"
    bad.write_text(CONFIG.replace("batchSize: 2", "batchSize: 2\nmaxBatchDelay: 0\ngpu:\n  handler:\n    precison: fp16"))
    store = tmp_path / "store"
    assert main([NAME, "--weights-dir", str(root / "weights"), "--model-store", str(store), "--config", str(bad)]) == 1
    message = capsys.readouterr().err
    assert message.startswith(f"build_archives: {bad}: maxBatchDelay: 0 reads as unset") and "['precison']" in message
    assert not (store / f"{NAME}.mar").exists()

"""handlers.weights: sha256-verified state_dicts, never unpickled objects."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from handlers.weights import (
    WeightsError,
    load_state_dict,
    read_metadata,
    read_state_dict,
    sha256_file,
    warn_on_version_drift,
)


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def export_dir(tmp_path, model, filename="model.safetensors", torch_version=torch.__version__):
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    path = tmp_path / filename
    save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path)
    metadata = {"weights_file": filename, "sha256": sha256_file(path), "versions": {"torch": torch_version}}
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    return metadata


def assert_same_state(loaded, model):
    expected = model.state_dict()
    assert loaded.keys() == expected.keys()
    for key, tensor in expected.items():
        assert torch.equal(loaded[key], tensor), key


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 5000)  # spans several read chunks
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("filename", ["model.safetensors", "model.pth", "model.pt"])
@pytest.mark.reliability
def test_verified_state_dict_loads(tmp_path, model, filename):
    metadata = export_dir(tmp_path, model, filename)
    assert read_metadata(tmp_path) == metadata
    assert_same_state(load_state_dict(tmp_path, metadata), model)


@pytest.mark.reliability
def test_sha256_mismatch_is_refused(tmp_path, model):
    metadata = export_dir(tmp_path, model)
    path = tmp_path / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip one byte of tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch for model.safetensors"):
        load_state_dict(tmp_path, metadata)


def test_missing_weights_file_is_refused(tmp_path, model):
    metadata = export_dir(tmp_path, model)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing"):
        load_state_dict(tmp_path, metadata)


def test_missing_metadata_names_the_export_script(tmp_path):
    with pytest.raises(WeightsError, match="scripts/build/weights.py"):
        read_metadata(tmp_path)


@pytest.mark.reliability
def test_pickled_module_is_refused(tmp_path, model):
    path = tmp_path / "whole_model.pth"
    torch.save(model, path)  # the whole nn.Module object: loading it would run pickled code
    with pytest.raises(WeightsError, match="not a plain state_dict"):
        read_state_dict(path)


@pytest.mark.reliability
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda m: {"state_dict": m.state_dict(), "epoch": 3}, id="checkpoint-dict"),
        pytest.param(lambda m: list(m.state_dict().values()), id="list-of-tensors"),
        pytest.param(lambda m: torch.zeros(3), id="bare-tensor"),
    ],
)
def test_non_flat_state_dicts_are_refused(tmp_path, model, payload):
    path = tmp_path / "weights.pth"
    torch.save(payload(model), path)
    with pytest.raises(WeightsError, match="flat state_dict"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "exported_with, running, warns",
    [
        ("2.5.1", "2.5.1", False),
        ("2.5.1", "2.5.0", False),
        ("2.5.1+cu124", "2.5.1+cpu", False),
        ("2.5.1", "2.6.0", True),
        ("2.5.1+cpu", "3.5.1+cpu", True),
        ("2.10.0", "2.1.0", True),
        (None, "2.5.1", False),
        ("", "2.5.1", False),
    ],
)
def test_warn_on_version_drift(caplog, exported_with, running, warns):
    with caplog.at_level(logging.WARNING, logger="handlers.weights"):
        assert warn_on_version_drift(exported_with, running) is warns
    assert bool(caplog.records) is warns
    if warns:
        assert exported_with in caplog.text and running in caplog.text


def test_load_warns_when_the_export_used_another_torch(tmp_path, model, caplog):
    metadata = export_dir(tmp_path, model, torch_version="1.0.0")
    with caplog.at_level(logging.WARNING, logger="handlers.weights"):
        assert_same_state(load_state_dict(tmp_path, metadata), model)
    assert "1.0.0" in caplog.text

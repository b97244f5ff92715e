"""The model as onnxruntime runs it: the archive's model.onnx, sha256-verified, behind the same call
as the torch module (tensors in, tensors out), so the base handler's isolation works unchanged.

The export (scripts/build/onnx_export.py) writes model.onnx beside the safetensors and records it in
metadata.json: {"onnx": {"file", "sha256", "opset", "onnxruntime", "inputs", "outputs", ...}}.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import torch

from handlers.weights import WeightsError, verified_file

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install onnxruntime==1.31.0 (pyproject.toml pins it), or set `runtime: torch` in the handler settings"
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                "all": "ORT_ENABLE_ALL"}
OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "out of memory")
"""How onnxruntime words an allocation failure (a RuntimeException, not a MemoryError)."""


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ModuleNotFoundError(f"runtime onnxruntime needs the onnxruntime package: {INSTALL_HINT}") from exc
    return onnxruntime


def cuda_provider_available() -> bool:
    """Whether onnxruntime-gpu's CUDA execution provider is installed (it is not by default)."""
    try:
        return "CUDAExecutionProvider" in import_onnxruntime().get_available_providers()
    except ModuleNotFoundError:
        return False


def onnx_entry(model_dir: Path, metadata: Mapping[str, Any]) -> tuple[Path, dict]:
    """The ONNX file the metadata names, checked against its sha256 before anything reads it."""
    entry = metadata.get("onnx")
    if not entry:
        raise WeightsError(f"{Path(model_dir) / 'metadata.json'} records no ONNX export: rebuild the archive "
                           "(make archive) or set `runtime: torch`")
    path = verified_file(Path(model_dir) / entry["file"], entry["sha256"], "ONNX file",
                         ": rebuild the archive (make archive) or set `runtime: torch`")
    return path, entry


def session_options(onnxruntime, threads: int, graph_optimization: str, spinning: bool):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(onnxruntime.GraphOptimizationLevel, GRAPH_LEVELS[graph_optimization])
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def load_session(model_dir: Path, metadata: Mapping[str, Any], threads: int, graph_optimization: str = "all",
                 spinning: bool = False, device: torch.device | None = None) -> OnnxModel:
    """An OnnxModel for the archive's verified model.onnx; a corrupt file fails naming it."""
    onnxruntime = import_onnxruntime()
    path, entry = onnx_entry(model_dir, metadata)
    providers = ["CPUExecutionProvider"]
    if device is not None and device.type == "cuda":
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    try:
        session = onnxruntime.InferenceSession(str(path), session_options(onnxruntime, threads, graph_optimization, spinning),
                                               providers=providers)
    except Exception as exc:  # onnxruntime's own exception types: InvalidProtobuf, Fail, ...
        raise WeightsError(f"onnxruntime cannot load {path.name}: {exc}") from exc
    exported_with = entry.get("onnxruntime")
    if exported_with and exported_with.split(".")[:2] != onnxruntime.__version__.split(".")[:2]:
        log.warning("%s was checked with onnxruntime %s but %s is running", path.name, exported_with, onnxruntime.__version__)
    return OnnxModel(session)


class OnnxModel:
    """Call it like the torch module: positional tensors in input order, or by input name.

    Returns one tensor per output (a single tensor for a single output), on the CPU. An
    allocation failure is raised as MemoryError, so the base handler halves the batch as for torch.
    """

    def __init__(self, session):
        self.session = session
        self.input_names = [node.name for node in session.get_inputs()]
        self.output_names = [node.name for node in session.get_outputs()]

    def __call__(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = dict(zip(self.input_names, args, strict=False))  # checked below: as many as the model takes
        feeds.update(kwargs)
        if len(args) > len(self.input_names) or set(feeds) != set(self.input_names):
            raise TypeError(f"the ONNX model takes {self.input_names}, got {sorted(feeds)}")
        arrays = {name: tensor.detach().cpu().contiguous().numpy() for name, tensor in feeds.items()}
        try:
            outputs = self.session.run(self.output_names, arrays)
        except Exception as exc:
            if any(marker in str(exc).lower() for marker in OOM_MARKERS):
                raise MemoryError(f"onnxruntime: {exc}") from exc
            raise
        tensors = tuple(torch.from_numpy(output) for output in outputs)
        return tensors[0] if len(tensors) == 1 else tensors

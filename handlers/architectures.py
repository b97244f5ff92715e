"""Build an untrained nn.Module from the architecture spec stored in the weights metadata.

The spec is plain data so the archive needs no build-time code:
  {"library": "timm", "name": "efficientnet_lite0", "kwargs": {...}}
  {"library": "torchvision", "name": "resnet50", "kwargs": {...}}
  {"library": "file", "file": "model.py", "class": "Net", "kwargs": {...}}   (your own module)
  {"library": "transformers", "config": "config.json", "kwargs": {...}}     (AutoModel, offline)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from torch import nn


def build_module(spec: dict, model_dir: Path | None = None) -> nn.Module:
    library = spec.get("library")
    kwargs = dict(spec.get("kwargs", {}))
    if library == "timm":
        import timm

        return timm.create_model(spec["name"], pretrained=False, **kwargs)
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(spec["name"], weights=None, **kwargs)
    if library == "file":
        return _module_class(Path(model_dir or ".") / spec["file"], spec["class"])(**kwargs)
    if library == "transformers":
        return _transformers_module(Path(model_dir or ".") / spec["config"], kwargs)
    raise ValueError(f"unknown architecture library {library!r}; expected timm, torchvision, file or transformers")


def _transformers_module(config_file: Path, kwargs: dict) -> nn.Module:
    """AutoModel from a config.json beside the weights: local files only, never the Hub."""
    from transformers import AutoConfig, AutoModel

    if not config_file.is_file():
        raise FileNotFoundError(f"model config {config_file} is missing")
    return AutoModel.from_config(AutoConfig.from_pretrained(config_file, local_files_only=True), **kwargs)


def _module_class(path: Path, class_name: str) -> type[nn.Module]:
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} is missing")
    module_spec = importlib.util.spec_from_file_location(f"user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{path.name} has no nn.Module subclass named {class_name!r}")
    return cls

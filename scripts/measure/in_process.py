"""A bundle handler in this process, no server: the code path of a TorchServe worker, for measuring.

    handler = load_handler("efficientnet_lite0", Path("build/weights/efficientnet_lite0"))
    outcomes = handler.predict([handler.decode_request({"body": raw})] * 8)   # one per item, in order

The export folder (make weights) holds what the archive holds besides the handler code:
metadata.json, the weights, labels or tokenizer. The config is models/configs/<name>.yaml,
with `handler:` settings overridden as asked (the agreement script's fp32 reference).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

import ts
import yaml
from ts.context import Context

from handlers.base import BundleHandler
from models.registry import get_spec


def model_config(name: str, overrides: Mapping[str, Any] | None = None) -> dict:
    """The model's model-config.yaml as shipped, with some `handler:` settings replaced."""
    config = yaml.safe_load(get_spec(name).config_path.read_text())
    config["handler"] = {**config.get("handler", {}), **(overrides or {})}
    return config


def handler_class(handler_file: str) -> type[BundleHandler]:
    """The one BundleHandler subclass defined in a handler file such as handlers/image_classifier.py."""
    module = importlib.import_module(handler_file.removesuffix(".py").replace("/", "."))
    found = [cls for cls in vars(module).values()
             if isinstance(cls, type) and issubclass(cls, BundleHandler) and cls.__module__ == module.__name__]
    if len(found) != 1:
        raise ValueError(f"{handler_file} must define exactly one handler class, found {found}")
    return found[0]


def load_handler(name: str, model_dir: Path, config: Mapping[str, Any] | None = None,
                 gpu_id: int | None = None) -> BundleHandler:
    """The registered model's handler, initialised (settings, threads, compilation, warm-up)."""
    config = dict(config or model_config(name))
    context = Context(name, str(model_dir), None, int(config.get("batchSize", 1)), gpu_id, ts.__version__,
                      metrics=None, model_yaml_config=config)
    handler = handler_class(get_spec(name).handler)()
    handler.initialize(context)
    return handler

"""Model name -> everything needed to export and archive it. One table; read it top to bottom.

Add a model by adding a ModelSpec here and a models/configs/<name>.yaml beside it.
Your own nn.Module needs no entry: see `custom_spec` (make archive-custom).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import yaml

from handlers.config import HandlerSettings, ImageSettings, TextSettings, parse_settings
from handlers.weights import read_state_dict
from models import efficientnet_lite, minilm, torchvision_zoo
from models.imagenet import imagenet_labels

CONFIG_DIR = Path(__file__).parent / "configs"
TORCHVISION_CONFIG = CONFIG_DIR / "torchvision.yaml"
"""One model-config.yaml for the torchvision ImageNet classifiers: they differ only in the name."""
IMAGE_HANDLER = "handlers/image_classifier.py"
TEXT_HANDLER = "handlers/text_embedder.py"


def image_input_spec(settings: ImageSettings) -> dict:
    """What an image model expects, for metadata.json, from its parsed handler settings."""
    return {
        "encoding": "image bytes (JPEG, PNG, WebP, GIF, BMP, TIFF) or base64 JSON",
        "tensor": {"shape": [3, settings.crop, settings.crop], "dtype": "float32", "layout": "NCHW"},
        "preprocessing": {
            "resize": settings.resize, "crop": settings.crop, "mean": list(settings.mean), "std": list(settings.std)
        },
    }


@dataclass(frozen=True)
class ModelSpec:
    name: str
    architecture: dict
    """handlers.architectures spec: how the handler rebuilds the module inside the archive."""
    source: Callable[[], str]
    """Where the pretrained weights come from, recorded in the metadata."""
    pretrained: Callable[[], dict[str, torch.Tensor]]
    labels: Callable[[], list[str]]
    handler: str = IMAGE_HANDLER
    settings_class: type[HandlerSettings] = ImageSettings
    """The handler's settings (handlers.config), which its model-config.yaml `handler:` section fills."""
    config: Path | None = None
    """model-config.yaml for the archive; defaults to models/configs/<name>.yaml."""
    extra_files: Callable[[], tuple[Path, ...]] = tuple
    """Files the handler needs next to the weights (a custom model's source file, a tokenizer).

    `source` and `extra_files` are called, like `pretrained`, only when a model is exported: a
    weights package (the `build` extra) need not be installed for the registry to import, as on a
    GPU host or in the runtime image, where the settings and architectures are still read."""
    input_spec: Callable[[Any], dict] = image_input_spec
    """The metadata's "input" entry, from the parsed settings (an instance of settings_class)."""
    packages: tuple[str, ...] = ()
    """Packages whose versions the metadata records besides torch and torchvision."""
    onnx: str | None = None
    """"image" or "text": the export also writes model.onnx, checked on real inputs
    (scripts/build/onnx_export.py), for `runtime: onnxruntime`; None: torch only."""

    @property
    def config_path(self) -> Path:
        return self.config or CONFIG_DIR / f"{self.name}.yaml"

    def model_config(self) -> dict:
        """The model-config.yaml the archive ships, as a dict."""
        return yaml.safe_load(self.config_path.read_text()) or {}

    def settings(self, handler: Mapping[str, Any] | None = None) -> HandlerSettings:
        """The handler's settings as the handler will parse them: from `handler` (a `handler:`
        section) when given, else from the shipped config. Defaults live only in handlers/config.py."""
        section = self.model_config().get("handler") if handler is None else handler
        return parse_settings(self.settings_class, section)


def _torchvision(name: str) -> ModelSpec:
    return ModelSpec(
        name=name,
        architecture=torchvision_zoo.architecture(name),
        source=lambda: torchvision_zoo.source(name),
        pretrained=lambda: torchvision_zoo.pretrained_state_dict(name),
        labels=imagenet_labels,
        config=TORCHVISION_CONFIG,
    )


REGISTRY: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec(
        name="efficientnet_lite0",
        architecture=efficientnet_lite.ARCHITECTURE,
        source=lambda: efficientnet_lite.SOURCE,
        pretrained=efficientnet_lite.pretrained_state_dict,
        labels=imagenet_labels,
        onnx="image",
    ),
    "resnet18": _torchvision("resnet18"),
    "resnet50": _torchvision("resnet50"),
    "minilm": ModelSpec(
        name="minilm",
        architecture=minilm.ARCHITECTURE,
        source=minilm.source,
        pretrained=minilm.pretrained_state_dict,
        labels=list,  # no class labels: zero-shot labels come with each request or from the config
        handler=TEXT_HANDLER,
        settings_class=TextSettings,
        extra_files=minilm.tokenizer_files,
        input_spec=minilm.input_spec,
        packages=minilm.PACKAGES,
        onnx="text",
    ),
}
DEFAULT_MODEL = "efficientnet_lite0"


def get_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {sorted(REGISTRY)}") from None


def custom_spec(
    name: str,
    module_file: Path,
    class_name: str,
    state_dict: Path,
    labels_file: Path | None = None,
    config: Path | None = None,
) -> ModelSpec:
    """Your own nn.Module file plus its state_dict (.pth saved from model.state_dict(), or safetensors)."""
    module_file = Path(module_file)
    return ModelSpec(
        name=name,
        architecture={"library": "file", "file": module_file.name, "class": class_name, "kwargs": {}},
        source=lambda: f"custom: {module_file.name}:{class_name} with {Path(state_dict).name}",
        pretrained=lambda: read_state_dict(Path(state_dict)),
        labels=lambda: read_labels(labels_file) if labels_file else [],
        config=Path(config) if config else CONFIG_DIR / "custom_image.yaml",
        extra_files=lambda: (module_file,),
    )


def read_labels(path: Path) -> list[str]:
    """A JSON list, or a text file with one label per line."""
    text = Path(path).read_text()
    if Path(path).suffix == ".json":
        return [str(label) for label in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]

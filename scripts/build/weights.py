"""Export a model's weights as a state_dict (safetensors) plus metadata.json and labels.json.

    python -m scripts.build.weights efficientnet_lite0              # packaged ImageNet weights
    python -m scripts.build.weights minilm                          # packaged all-MiniLM-L6-v2 + tokenizer
    python -m scripts.build.weights resnet50                        # downloads (online only)
    python -m scripts.build.weights resnet18 --random-init          # untrained, for smoke tests
    python -m scripts.build.weights mynet --module-file net.py --class-name Net --state-dict net.pth
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save_file

from handlers.architectures import build_module
from handlers.weights import METADATA_FILE, sha256_file
from models.registry import DEFAULT_MODEL, ModelSpec, custom_spec, get_spec
from models.resources import estimate, example_batch
from scripts.build.extra import build_packages
from scripts.build.onnx_export import export_onnx

WEIGHTS_FILE = "model.safetensors"
LABELS_FILE = "labels.json"
DEFAULT_OUT = Path("build/weights")


def export(spec: ModelSpec, out_dir: Path, random_init: bool = False) -> Path:
    """Write <out_dir>/<name>/{model.safetensors, metadata.json, labels.json} (and model.onnx for the
    models exported to ONNX: scripts/build/onnx_export.py); return the folder.

    All or nothing: the files go to a staging folder that replaces <name>/ only once complete,
    so a failed export leaves nothing behind (and a previous export as it was).
    """
    state = random_state_dict(spec) if random_init else spec.pretrained()
    module = build_module(spec.architecture, _source_dir(spec))
    module.load_state_dict(state)  # proves the weights fit the architecture before shipping them
    folder, staging = out_dir / spec.name, out_dir / f".{spec.name}.partial"
    created_out_dir = not out_dir.exists()
    shutil.rmtree(staging, ignore_errors=True)  # left by an export that was killed
    staging.mkdir(parents=True)
    try:
        write_export(spec, module, staging, random_init)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_out_dir and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return folder


def write_export(spec: ModelSpec, module: torch.nn.Module, folder: Path, random_init: bool) -> None:
    """The weights (as the module holds them), labels, extra files and metadata.json into `folder`."""
    tensors = {key: tensor.contiguous() for key, tensor in module.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    labels = spec.labels()
    check_labels_fit(module, input_spec(spec), labels)
    (folder / LABELS_FILE).write_text(json.dumps(labels, indent=0))
    for extra in spec.extra_files():  # e.g. a custom model's source file, which the handler imports
        shutil.copyfile(extra, folder / extra.name)
    metadata = build_metadata(spec, folder / WEIGHTS_FILE, module, random_init, len(labels))
    if spec.onnx:  # model.onnx, checked against the module on real inputs (raises: nothing is written)
        metadata["onnx"] = export_onnx(spec.onnx, module, spec.settings(), folder)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")


def check_labels_fit(module: torch.nn.Module, inputs: dict, labels: list[str]) -> None:
    """One label per class the model outputs (ValueError otherwise). A label file of another length is
    almost always another model's: served, it would name classes wrongly or by number. Checked on one
    forward pass of the declared input; a model without labels, or whose output is not one row of
    scores per image, is not checked."""
    if not labels or "tensor" not in inputs:
        return
    args, kwargs = example_batch(inputs, 1)
    try:
        with torch.inference_mode():
            output = module.eval()(*args, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # not on its declared input: metadata.json's estimate says so
        return
    if isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[1] != len(labels):
        raise ValueError(f"the labels name {len(labels)} classes but the model outputs {output.shape[1]}: "
                         "give one label per output, in the order of the outputs")


def random_state_dict(spec: ModelSpec) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_module(spec.architecture, _source_dir(spec)).state_dict()


def build_metadata(spec: ModelSpec, weights: Path, module: torch.nn.Module, random_init: bool, num_labels: int) -> dict:
    import torchvision

    inputs = input_spec(spec)
    return {
        "name": spec.name,
        "architecture": spec.architecture,
        "source": "random init (seed 0)" if random_init else spec.source(),
        "weights_file": weights.name,
        "format": "safetensors",
        "sha256": sha256_file(weights),
        "versions": {
            "torch": torch.__version__, "torchvision": torchvision.__version__, **package_versions(spec.packages)
        },
        "num_labels": num_labels,
        "input": inputs,
        "resources": estimate(module, inputs),  # parameters, weights_mb, activations: models/resources.py
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def input_spec(spec: ModelSpec) -> dict:
    """What the model expects, from the spec and the settings its model-config.yaml gives the handler."""
    return spec.input_spec(spec.settings())


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the packages the handler relies on, read without importing them."""
    from importlib.metadata import version

    return {name: version(name) for name in names}


def _source_dir(spec: ModelSpec) -> Path:
    extra_files = spec.extra_files()
    return extra_files[0].parent if extra_files else Path(".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=[DEFAULT_MODEL], help="registered model names")
    parser.add_argument("--random-init", action="store_true", help="untrained weights, seed 0 (default: pretrained)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    custom = parser.add_argument_group("your own model (one name)")
    custom.add_argument("--module-file", type=Path, help="Python file defining the nn.Module")
    custom.add_argument("--class-name", help="the nn.Module subclass in that file")
    custom.add_argument("--state-dict", type=Path, help="its state_dict (.pth or .safetensors)")
    custom.add_argument("--labels", type=Path, help="labels: JSON list or one per line")
    custom.add_argument("--config", type=Path, help="model-config.yaml (default models/configs/custom_image.yaml)")
    args = parser.parse_args(argv)
    try:
        with build_packages():  # the weights packages and onnx: the `build` extra
            for spec in _specs(args):
                folder = export(spec, args.out, args.random_init)
                print(f"exported {spec.name} -> {folder}")
    except Exception as exc:  # a CLI: one clear line instead of a traceback
        print(f"export_weights: {exc}", file=sys.stderr)
        return 1
    return 0


def _specs(args: argparse.Namespace) -> list[ModelSpec]:
    if args.module_file:
        if not (args.class_name and args.state_dict and len(args.names) == 1):
            raise ValueError("--module-file needs --class-name, --state-dict and exactly one model name")
        return [custom_spec(args.names[0], args.module_file, args.class_name, args.state_dict, args.labels, args.config)]
    return [get_spec(name) for name in args.names]


if __name__ == "__main__":
    sys.exit(main())

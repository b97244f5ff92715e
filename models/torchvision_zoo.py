"""torchvision classifiers (resnet18, resnet50 ...): pretrained weights download from
torchvision's servers when online; offline, the export stops with a clear message."""

from __future__ import annotations

import torch


class OfflineError(RuntimeError):
    """The pretrained weights are not cached and cannot be downloaded."""


def architecture(name: str) -> dict:
    return {"library": "torchvision", "name": name, "kwargs": {"num_classes": 1000}}


def source(name: str) -> str:
    import torchvision

    return f"torchvision {torchvision.__version__}: {_weights(name)} (download.pytorch.org)"


def pretrained_state_dict(name: str) -> dict[str, torch.Tensor]:
    weights = _weights(name)
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except OSError as exc:  # URLError and socket errors are OSErrors
        raise OfflineError(
            f"cannot download {weights} ({exc}). This machine looks offline: "
            f"export with --random-init for smoke tests, or put the file in $TORCH_HOME/hub/checkpoints "
            f"({weights.url.rsplit('/', 1)[-1]}) and rerun."
        ) from None


def _weights(name: str):
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT

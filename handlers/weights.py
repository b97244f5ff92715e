"""Weights on disk: a state_dict (safetensors, or a .pth readable with weights_only) plus a
metadata JSON beside it. Loading verifies the sha256 first and never unpickles objects."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
from pathlib import Path

import torch

log = logging.getLogger(__name__)

METADATA_FILE = "metadata.json"


class WeightsError(RuntimeError):
    """The weights file is missing, altered, or not a plain state_dict."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(folder: Path) -> dict:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing: export weights with scripts/build/weights.py")
    return json.loads(path.read_text())


def verified_file(path: Path, sha256: str, what: str, missing_hint: str = "") -> Path:
    """`path`, once its sha256 is the one the metadata recorded: nothing reads a file before this."""
    if not path.is_file():
        raise WeightsError(f"{what} {path} is missing{missing_hint}")
    actual = sha256_file(path)
    if actual != sha256:
        raise WeightsError(f"sha256 mismatch for {path.name}: metadata says {sha256}, file has {actual}; "
                           f"the {what} was altered or belongs to another export")
    return path


def load_state_dict(folder: Path, metadata: dict) -> dict[str, torch.Tensor]:
    """Load the weights named by `metadata`, refusing them when their sha256 differs."""
    path = verified_file(Path(folder) / metadata["weights_file"], metadata["sha256"], "weights file")
    warn_on_version_drift(metadata.get("versions", {}).get("torch"), torch.__version__)
    return read_state_dict(path)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict without executing pickled code (safetensors, or torch.load weights_only)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"{path.name} is not a plain state_dict (a pickled model object?); "
            "save model.state_dict() instead"
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path.name} does not hold a flat state_dict of tensors")
    return state


def warn_on_version_drift(exported_with: str | None, running: str) -> bool:
    """Warn when the torch major.minor differs from the export's; returns whether it did."""
    if not exported_with or _major_minor(exported_with) == _major_minor(running):
        return False
    log.warning("weights were exported with torch %s but torch %s is running", exported_with, running)
    return True


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split("+")[0].split(".")[:2])

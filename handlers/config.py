"""The handler's own settings, read once from the `handler:` section of model-config.yaml.

One frozen dataclass per handler scope. Every field has a default; an unknown key is an error
that names it, so a typo in model-config.yaml fails the model load instead of being ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, TypeVar

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRECISIONS = ("fp32", "bf16", "fp16")

S = TypeVar("S", bound="HandlerSettings")


@dataclass(frozen=True)
class HandlerSettings:
    """Settings every handler understands."""

    precision: str = "fp32"
    """Compute precision: fp32, or bf16/fp16 autocast (fp16 only on CUDA)."""

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")


@dataclass(frozen=True)
class ImageSettings(HandlerSettings):
    """Pre- and post-processing of the image classifier."""

    topk: int = 5
    """How many labels to return, most probable first."""
    resize: int = 256
    """Shorter side after resizing, before the centre crop."""
    crop: int = 224
    """Side of the square centre crop fed to the model."""
    mean: tuple[float, ...] = IMAGENET_MEAN
    """Per-channel mean subtracted after scaling pixels to [0, 1]."""
    std: tuple[float, ...] = IMAGENET_STD
    """Per-channel standard deviation divided out after the mean."""
    max_bytes: int = 20 * 1024 * 1024
    """Largest encoded image accepted (413 above it)."""
    max_pixels: int = 40_000_000
    """Largest width*height accepted, checked from the header before decoding (decompression bombs)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.topk <= 1000:
            raise ValueError(f"topk must be in 1..1000, got {self.topk}")
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop ({self.crop}) must be positive and not above resize ({self.resize})")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need three values each, std positive")


def parse_settings(settings_class: type[S], raw: Mapping[str, Any] | None) -> S:
    """Build `settings_class` from a mapping, rejecting unknown keys and wrong types by name."""
    raw = dict(raw or {})
    known = {f.name: f for f in fields(settings_class)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValueError(
            f"unknown handler setting(s) {unknown} for {settings_class.__name__}; "
            f"known settings: {sorted(known)}"
        )
    values = {name: _coerce(name, value, known[name].default) for name, value in raw.items()}
    return settings_class(**values)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check a YAML value against the type of the field's default (YAML lists become tuples)."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"handler setting {name!r} must be a list, got {value!r}")
        return tuple(float(v) for v in value)
    if isinstance(default, bool) or isinstance(value, bool):
        if not isinstance(value, bool) or not isinstance(default, bool):
            raise ValueError(f"handler setting {name!r} has the wrong type: {value!r}")
        return value
    if isinstance(default, int) and isinstance(value, int):
        return value
    if isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ValueError(
        f"handler setting {name!r} must be {type(default).__name__}, got {value!r}"
    )

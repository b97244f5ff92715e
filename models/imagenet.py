"""ImageNet-1k category names, from torchvision's weights metadata (no download)."""

from __future__ import annotations

from collections import Counter


def imagenet_labels() -> list[str]:
    """The 1,000 class names in index order, guaranteed unique (they key the response object)."""
    from torchvision.models import ResNet50_Weights

    return unique_labels(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def unique_labels(names: list[str]) -> list[str]:
    """Append the class index to every name that occurs more than once."""
    counts = Counter(names)
    return [f"{name} ({index})" if counts[name] > 1 else name for index, name in enumerate(names)]

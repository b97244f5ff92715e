"""ImageNet-style classifier: image bytes in, {label: probability} for the top k out."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from handlers.base import BundleHandler
from handlers.config import ImageSettings
from handlers.vision import (
    check_proportions,
    decode_image,
    extract_image_bytes,
    image_to_tensor,
    normalize_batch,
    top_k_labels,
)

LABELS_FILE = "labels.json"


class ImageClassifier(BundleHandler):
    """Decode per request (pure, in handlers.vision), normalise and classify per batch."""

    settings_class = ImageSettings

    def setup(self, model_dir: Path) -> None:
        labels_path = model_dir / LABELS_FILE
        self.labels = json.loads(labels_path.read_text()) if labels_path.is_file() else []

    def decode_request(self, request: dict) -> torch.Tensor:
        raw = extract_image_bytes(request, self.settings.max_bytes)
        image = decode_image(raw, self.settings.max_pixels)
        check_proportions(image.size, self.settings.resize, self.settings.max_upscale, self.settings.max_aspect_ratio)
        return image_to_tensor(image, self.settings.resize, self.settings.crop)

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(normalize_batch(batch, self.settings.mean, self.settings.std))
        return logits.float().softmax(dim=1)

    def encode_response(self, probabilities: torch.Tensor) -> dict[str, float]:
        return top_k_labels(probabilities, self.labels, self.settings.topk)

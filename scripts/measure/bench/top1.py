"""Top-1 on real photos: what the served models answer against plain fp32 in-process.

Issue #12's speed target counts only with the top-1 label of every photo identical to plain
fp32: the same handler with every speed setting off (scripts/measure/agreement.py's REFERENCE: torch
eager fp32, no channels_last, no compilation, full JPEG decode). The photos are the real ones
the agreement script crops (samples/, scikit-image's, matplotlib's), sent as their files are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from scripts.client.torchserve import Client
from scripts.measure.agreement import REFERENCE, photo_files
from scripts.measure.bench.plan import IMAGE
from scripts.measure.in_process import load_handler, model_config


def top1(answer: Mapping[str, float]) -> str:
    """The most probable label of a {label: probability} answer (ours and the stock handler's)."""
    return max(answer, key=answer.get)


def served_top1(client: Client, model: str, photos: Sequence[Path]) -> dict[str, str]:
    """photo name -> the served top-1 label, or `error <status>`."""
    labels = {}
    for photo in photos:
        response = client.predict(model, data=photo.read_bytes(), timeout_s=60)
        labels[photo.name] = top1(response.json()) if response.status_code == 200 else f"error {response.status_code}"
    return labels


def reference_top1(weights_dir: Path, photos: Sequence[Path]) -> dict[str, str]:
    """photo name -> plain fp32's top-1 label, in-process."""
    handler = load_handler(IMAGE, weights_dir / IMAGE, {**model_config(IMAGE, REFERENCE), "minWorkers": 1, "maxWorkers": 1})
    labels = {}
    for photo in photos:
        (probabilities,) = handler.predict([handler.decode_request({"body": bytearray(photo.read_bytes())})])
        labels[photo.name] = top1(handler.encode_response(probabilities))
    return labels


def compare(reference: Mapping[str, str], served: Mapping[str, Mapping[str, str]]) -> dict:
    """For each served model: its labels, how many photos agree with the reference, which differ."""
    return {"photos": len(reference), "reference": dict(reference),
            **{name: {"labels": dict(labels), "identical": sum(labels.get(p) == label for p, label in reference.items()),
                      "differ": sorted(p for p, label in reference.items() if labels.get(p) != label)}
               for name, labels in served.items()}}


__all__ = ["compare", "photo_files", "reference_top1", "served_top1", "top1"]

"""The shipped speed settings on the real EfficientNet-Lite0: same labels as plain fp32, warm at load,
and the agreement script's measurement on a few crops."""

from __future__ import annotations

import os

import pytest
import torch
import yaml

from handlers.base import warmup_sizes
from handlers.image_classifier import ImageClassifier
from models.registry import get_spec
from scripts.measure.agreement import REFERENCE, augmented_jpegs, measure, parse_overrides, top1_agreement

SHIPPED = yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())


@pytest.fixture(scope="module")
def plain(make_context, model_dir) -> ImageClassifier:
    """The fp32 reference: every speed setting off."""
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir, {**SHIPPED, "handler": {**SHIPPED["handler"], **REFERENCE}}))
    return handler


def test_shipped_speed_settings(classifier):
    s = classifier.settings
    assert (s.runtime, s.graph_optimization, s.ort_spinning, s.jpeg_draft) == ("onnxruntime", "all", False, True)
    assert classifier.runtime == "onnxruntime"
    assert (s.compile, s.channels_last) == ("trace", True)  # runtime torch (a GPU worker)
    assert classifier.precision == SHIPPED["handler"]["precision"]
    assert classifier.batch_size == SHIPPED["batchSize"]
    assert torch.get_num_threads() == len(os.sched_getaffinity(0)) // SHIPPED["maxWorkers"]  # threads: 0 = cores / maxWorkers


def test_fast_and_plain_paths_give_the_same_answers(classifier, plain, serve, classifier_context, chelsea, coffee, encode):
    requests = [{"body": bytearray(encode(chelsea, "JPEG"))}, {"body": bytearray(encode(coffee.resize((1800, 1200)), "JPEG"))}]
    fast = serve(classifier, classifier_context, requests)
    slow = serve(plain, classifier_context, requests)
    for a, b in zip(fast, slow, strict=True):
        assert a.status == b.status == 200
        assert next(iter(a.body)) == next(iter(b.body))
        assert list(a.body.values())[0] == pytest.approx(list(b.body.values())[0], abs=0.03)


def test_initialize_warms_up_every_batch_size(make_context, model_dir, monkeypatch):
    """The graph runs (and TorchScript specialises) at every size a batch can have, at load,
    before any client's request."""
    sizes: list[int] = []
    forward = ImageClassifier._forward
    monkeypatch.setattr(ImageClassifier, "_forward", lambda self, items: sizes.append(len(items)) or forward(self, items))
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir))
    assert sizes == list(warmup_sizes(SHIPPED["batchSize"], pad_to_bucket=False)) and handler.initialized
    assert set(sizes) == set(range(1, SHIPPED["batchSize"] + 1))


def test_augmented_crops_are_reproducible(chelsea):
    first, second = augmented_jpegs([chelsea], 3, seed=7), augmented_jpegs([chelsea], 3, seed=7)
    assert first == second and len(set(first)) == 3
    assert augmented_jpegs([chelsea], 3, seed=8) != first


def test_top1_agreement():
    reference = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert top1_agreement(reference, reference) == (1.0, [])
    assert top1_agreement(reference, torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.6, 0.4]])) == (pytest.approx(2 / 3), [1])


def test_parse_overrides():
    assert parse_overrides(["precision=bf16", "channels_last=false", "threads=2"]) == \
        {"precision": "bf16", "channels_last": False, "threads": 2}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["precision"])


def test_agreement_measurement_on_a_few_crops(model_dir):
    """The script's whole path on 4 crops (the shipped bar, >= 99% over 240, is measured by the script)."""
    result = measure("efficientnet_lite0", model_dir, {}, crops=4)
    assert result["crops"] == 4 and result["photos"] >= 3
    assert result["candidate"] == {key: SHIPPED["handler"][key] for key in REFERENCE}
    assert len(result["disagreements"]) == round((1 - result["agreement"]) * 4)
    labels = {item["photo"]: item["reference"] for item in result["photo_labels"]}
    assert len(labels) == result["photos"] and labels["coffee.jpg"] == "espresso"
    assert all(item["candidate"] == item["reference"] for item in result["photo_labels"])  # the shipped config keeps them

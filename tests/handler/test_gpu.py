"""The GPU image's configuration on a real GPU: nvjpeg decoding per batch, padded buckets, fp16.
Skipped where CUDA is not available (CI, this machine): `make bench-gpu` and these run on a GPU host."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from handlers.image_classifier import ImageClassifier
from models.registry import get_spec
from scripts.build.gpu_config import gpu_variant
from scripts.measure.agreement import photo_files

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
PHOTOS_ENV = "BUNDLE_TEST_PHOTOS"  # the GPU kit's copy of scikit-image's and matplotlib's photos


def photos() -> list[Path]:
    return photo_files(Path(os.environ[PHOTOS_ENV]) if os.environ.get(PHOTOS_ENV) else None)


def shipped_config() -> dict:
    return yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())


def with_handler(config: dict, **changes) -> dict:
    return {**config, "handler": {**config["handler"], **changes}}


@pytest.fixture(scope="module")
def gpu_context(make_context, model_dir):
    return make_context(model_dir, gpu_variant(shipped_config()), gpu_id=0)


@pytest.fixture(scope="module")
def cpu_reference(make_context, model_dir):
    """The CPU fp32 reference of scripts/measure/agreement.py: torch eager, PIL (no ONNX file needed:
    the GPU kit's archive has none)."""
    config = with_handler(shipped_config(), runtime="torch", compile="none", precision="fp32", jpeg_draft=False)
    context = make_context(model_dir, config)
    handler = ImageClassifier()
    handler.initialize(context)
    return handler, context


@pytest.fixture(scope="module")
def gpu_classifier(gpu_context) -> ImageClassifier:
    handler = ImageClassifier()
    handler.initialize(gpu_context)
    return handler


def test_the_gpu_worker_decodes_jpegs_on_the_gpu(gpu_classifier):
    assert gpu_classifier.device.type == "cuda" and gpu_classifier.batch_decoder
    assert gpu_classifier.precision == "fp16" and gpu_classifier.settings.pad_to_bucket


def test_photos_keep_their_cpu_fp32_labels(gpu_classifier, gpu_context, cpu_reference, serve):
    requests = [{"body": bytearray(path.read_bytes())} for path in photos()]
    on_gpu, on_cpu = serve(gpu_classifier, gpu_context, requests), serve(*cpu_reference, requests)
    assert [next(iter(r.body)) for r in on_gpu] == [next(iter(r.body)) for r in on_cpu]


def test_a_corrupt_jpeg_fails_alone_on_the_gpu(gpu_classifier, gpu_context, serve, chelsea, coffee, encode):
    good = encode(coffee, "JPEG")
    replies = serve(gpu_classifier, gpu_context, [{"body": bytearray(encode(chelsea, "JPEG"))},
                                                  {"body": bytearray(good[: len(good) // 2])}, {"body": bytearray(good)}])
    assert [r.status for r in replies] == [200, 422, 200]
    assert next(iter(replies[2].body)) == "espresso"


def test_cuda_graphs_keep_the_labels_and_isolate_a_corrupt_jpeg(make_context, model_dir, cpu_reference, serve, coffee, encode):
    """compile: cudagraphs (a sweep candidate, docs/gpu.md): the photos keep their CPU fp32 labels, and a
    corrupt JPEG in a batch still fails alone."""
    context = make_context(model_dir, with_handler(gpu_variant(shipped_config()), compile="cudagraphs"), gpu_id=0)
    graphed = ImageClassifier()
    graphed.initialize(context)
    assert graphed.model.graphs  # captured during the warm-up
    requests = [{"body": bytearray(path.read_bytes())} for path in photos()]
    assert [next(iter(r.body)) for r in serve(graphed, context, requests)] == \
        [next(iter(r.body)) for r in serve(*cpu_reference, requests)]
    good = encode(coffee, "JPEG")
    replies = serve(graphed, context, [{"body": bytearray(good[: len(good) // 2])}, {"body": bytearray(good)}])
    assert [r.status for r in replies] == [422, 200] and next(iter(replies[1].body)) == "espresso"

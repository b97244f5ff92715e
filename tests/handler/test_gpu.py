"""The GPU image's configuration on a real GPU: nvjpeg decoding per batch, padded buckets, fp16.
Skipped where CUDA is not available (CI, this machine): `make bench-gpu` and these run on a GPU host."""

from __future__ import annotations

import pytest
import torch
import yaml

from handlers.image_classifier import ImageClassifier
from models.registry import get_spec
from scripts.build.gpu_config import gpu_variant
from scripts.measure.agreement import photo_files

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def gpu_context(make_context, model_dir):
    config = gpu_variant(yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text()))
    return make_context(model_dir, config, gpu_id=0)


@pytest.fixture(scope="module")
def gpu_classifier(gpu_context) -> ImageClassifier:
    handler = ImageClassifier()
    handler.initialize(gpu_context)
    return handler


def test_the_gpu_worker_decodes_jpegs_on_the_gpu(gpu_classifier):
    assert gpu_classifier.device.type == "cuda" and gpu_classifier.batch_decoder
    assert gpu_classifier.precision == "fp16" and gpu_classifier.settings.pad_to_bucket


def test_photos_keep_their_cpu_fp32_labels(gpu_classifier, gpu_context, classifier, classifier_context, serve):
    requests = [{"body": bytearray(path.read_bytes())} for path in photo_files()]
    on_gpu, on_cpu = serve(gpu_classifier, gpu_context, requests), serve(classifier, classifier_context, requests)
    assert [next(iter(r.body)) for r in on_gpu] == [next(iter(r.body)) for r in on_cpu]


def test_a_corrupt_jpeg_fails_alone_on_the_gpu(gpu_classifier, gpu_context, serve, chelsea, coffee, encode):
    good = encode(coffee, "JPEG")
    replies = serve(gpu_classifier, gpu_context, [{"body": bytearray(encode(chelsea, "JPEG"))},
                                                  {"body": bytearray(good[: len(good) // 2])}, {"body": bytearray(good)}])
    assert [r.status for r in replies] == [200, 422, 200]
    assert next(iter(replies[2].body)) == "espresso"

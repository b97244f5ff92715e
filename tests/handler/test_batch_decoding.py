"""The image classifier with the batch JPEG decoder (jpeg_decoder: torchvision, as a GPU worker runs
it by default), padded buckets and decode threads, on the CPU: routing, per-item fallback and errors,
and the same labels as the shipped PIL path. On a GPU the decoder is nvjpeg (tests/handler/test_gpu.py)."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image

from handlers.base import warmup_sizes
from handlers.image_classifier import ImageClassifier
from handlers.jpeg_batch import EncodedJpeg
from models.registry import get_spec

SHIPPED = yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())
BATCH_PATH = {"jpeg_decoder": "torchvision", "pad_to_bucket": True, "decode_threads": 2, "runtime": "torch", "compile": "none"}
ORIENTATION = 0x0112


def config(batch_size: int, **handler) -> dict:
    return {**SHIPPED, "batchSize": batch_size, "handler": {**SHIPPED["handler"], **handler}}


@pytest.fixture(scope="module")
def batch_context(make_context, model_dir):
    return make_context(model_dir, config(8, **BATCH_PATH))


@pytest.fixture(scope="module")
def batch_classifier(batch_context) -> ImageClassifier:
    handler = ImageClassifier()
    handler.initialize(batch_context)
    return handler


def exif_rotated(image: Image.Image, encode) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    return encode(image.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=92, exif=exif.tobytes())


def test_jpegs_wait_for_the_batch_decoder_and_the_rest_decode_now(batch_classifier, chelsea, encode):
    assert batch_classifier.batch_decoder
    assert isinstance(batch_classifier.decode_request({"body": bytearray(encode(chelsea, "JPEG"))}), EncodedJpeg)
    for raw in (encode(chelsea, "PNG"), encode(chelsea.convert("CMYK"), "JPEG"), exif_rotated(chelsea, encode),
                encode(chelsea, "JPEG", progressive=True)):
        assert not isinstance(batch_classifier.decode_request({"body": bytearray(raw)}), EncodedJpeg)


def test_auto_keeps_pil_on_a_cpu_worker(classifier):
    assert classifier.settings.jpeg_decoder == "auto" and not classifier.batch_decoder


def test_mixed_batch_answers_as_the_cpu_path_does(batch_classifier, batch_context, classifier, classifier_context,
                                                  serve, chelsea, coffee, encode):
    """Every route in one batch: batch-decoded JPEGs, PIL fallbacks, and a corrupt JPEG whose header
    passes (the batch decoder fails the list; it fails alone, 422, the rest answer)."""
    good = encode(coffee, "JPEG")
    requests = [{"body": bytearray(raw)} for raw in (
        encode(chelsea, "JPEG"), good[: len(good) // 2], encode(coffee, "PNG"), encode(chelsea.convert("CMYK"), "JPEG"),
        exif_rotated(chelsea, encode), encode(coffee, "JPEG", progressive=True), good)]
    batched = serve(batch_classifier, batch_context, requests)
    assert [r.status for r in batched] == [200, 422, 200, 200, 200, 200, 200]
    assert batched[1].body["error"] == "undecodable_input"
    reference = serve(classifier, classifier_context, requests)
    assert [next(iter(r.body)) for r in batched if r.status == 200] == [next(iter(r.body)) for r in reference if r.status == 200]


def test_header_limits_hold_before_any_decoding(make_context, model_dir, serve, chelsea, encode):
    handler = ImageClassifier()
    context = make_context(model_dir, config(4, **BATCH_PATH, max_pixels=300_000, max_decoded_pixels=300_000))
    handler.initialize(context)
    (reply,) = serve(handler, context, [{"body": bytearray(encode(chelsea.resize((1200, 800)), "JPEG"))}])
    assert (reply.status, reply.body["error"]) == (413, "payload_too_large")


def test_warm_up_covers_every_bucket(make_context, model_dir, monkeypatch):
    sizes: list[int] = []
    forward = ImageClassifier._forward
    monkeypatch.setattr(ImageClassifier, "_forward", lambda self, items: sizes.append(len(items)) or forward(self, items))
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir, config(8, **BATCH_PATH)))
    assert sizes == list(warmup_sizes(8, pad_to_bucket=True)) and set(sizes) == {1, 2, 4, 8}


def test_in_process_predict_decodes_the_batch(batch_classifier, chelsea, encode):
    """scripts/measure/in_process.py's entry point goes through decode_batch as a served batch does."""
    item = batch_classifier.decode_request({"body": bytearray(encode(chelsea, "JPEG"))})
    outcomes = batch_classifier.predict([item] * 3)
    labels = [next(iter(batch_classifier.encode_response(o))) for o in outcomes]
    assert len(set(labels)) == 1 and labels[0] in {"tabby", "tiger cat", "Egyptian cat"}


def test_what_the_batch_decoder_fails_on_is_decoded_on_the_cpu(batch_classifier, chelsea, coffee, encode):
    """nvjpeg rejects some JPEGs that PIL decodes; here the batch decoder is handed bytes it cannot
    decode (a PNG) beside a good JPEG: the PNG still comes back, as the CPU path decodes it."""
    png, jpeg = encode(coffee, "PNG"), encode(chelsea, "JPEG")
    items = {(0, 0): EncodedJpeg(png, coffee.size), (1, 0): EncodedJpeg(jpeg, chelsea.size)}
    decoded = batch_classifier.decode_batch(items)
    assert decoded[(0, 0)].equal(batch_classifier.decode_on_cpu(png))
    assert decoded[(1, 0)].shape == (3, 224, 224)

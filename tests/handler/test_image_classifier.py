"""ImageClassifier on the real EfficientNet-Lite0 archive: real photos in, ImageNet labels out."""

from __future__ import annotations

import base64
import io
import json
import shutil

import pytest
import torch
import yaml
from PIL import Image

from handlers.image_classifier import ImageClassifier
from handlers.weights import WeightsError
from models.registry import get_spec

CATS = {"tabby", "tiger cat", "Egyptian cat"}
ORIENTATION = 0x0112


def top1(reply) -> str:
    assert reply.status == 200, reply.body
    return next(iter(reply.body))


def blank_png(width: int, height: int) -> bytearray:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return bytearray(buffer.getvalue())


def rotated_with_exif(image: Image.Image, encode) -> bytes:
    """Pixels stored turned 90 degrees clockwise; Orientation=8 tells the reader to turn them back."""
    exif = Image.Exif()
    exif[ORIENTATION] = 8
    return encode(image.transpose(Image.Transpose.ROTATE_270), "JPEG", quality=92, exif=exif.tobytes())


def test_initialize_reads_the_archive(classifier, model_dir):
    assert classifier.initialized
    assert classifier.metadata["name"] == "efficientnet_lite0"
    assert classifier.device.type == "cpu"  # gpu_id None
    assert len(classifier.labels) == 1000
    assert classifier.settings.topk == 5 and classifier.settings.crop == 224
    assert classifier.runtime == "onnxruntime" and (model_dir / "model.onnx").is_file()  # the shipped CPU runtime


def test_runtime_torch_traces_the_model(make_context, model_dir):
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir, config_with({"runtime": "torch"})))
    assert handler.runtime == "torch"
    assert isinstance(handler.model, torch.jit.ScriptModule)  # compile: trace, frozen for inference


def test_chelsea_is_a_cat(classifier, classifier_context, serve, chelsea, encode):
    (reply,) = serve(classifier, classifier_context, [{"body": bytearray(encode(chelsea, "JPEG"))}])
    assert top1(reply) in CATS
    assert reply.content_type == "application/json"
    assert len(reply.body) == 5
    probabilities = list(reply.body.values())
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001


def test_coffee_is_espresso(classifier, classifier_context, serve, coffee, encode):
    (reply,) = serve(classifier, classifier_context, [{"data": bytearray(encode(coffee, "PNG"))}])
    assert top1(reply) == "espresso"


def test_same_label_across_encodings(classifier, classifier_context, serve, chelsea, encode):
    variants = {
        "png": encode(chelsea, "PNG"),
        "jpeg": encode(chelsea, "JPEG", quality=85),
        "rgba-png": encode(chelsea.convert("RGBA"), "PNG"),
        "exif-rotated-jpeg": rotated_with_exif(chelsea, encode),
        "webp": encode(chelsea, "WEBP", quality=90),
    }
    requests = [{"body": bytearray(raw)} for raw in variants.values()]
    requests.append({"body": {"data": base64.b64encode(variants["png"]).decode()}})  # JSON base64
    labels = [top1(reply) for reply in serve(classifier, classifier_context, requests)]
    assert labels[0] in CATS
    assert labels == [labels[0]] * len(requests), dict(zip([*variants, "json-base64"], labels, strict=True))


def test_exif_rotation_matters(classifier, classifier_context, serve, chelsea, encode):
    """Guard for the test above: stripped of its EXIF, the rotated photo is a different input."""
    stored = chelsea.transpose(Image.Transpose.ROTATE_270)
    upright, sideways = serve(
        classifier, classifier_context,
        [{"body": bytearray(rotated_with_exif(chelsea, encode))}, {"body": bytearray(encode(stored, "JPEG", quality=92))}],
    )
    assert upright.body != sideways.body


def test_mixed_batch_fails_only_the_bad_items(classifier, classifier_context, serve, chelsea, coffee, encode):
    requests = [
        {"body": bytearray(encode(chelsea, "JPEG"))},
        {"body": bytearray(b"<html>not an image</html>")},
        {"data": bytearray(encode(coffee, "JPEG"))},
        {},
    ]
    replies = serve(classifier, classifier_context, requests)
    assert [reply.status for reply in replies] == [200, 422, 200, 415]
    assert top1(replies[0]) in CATS and top1(replies[2]) == "espresso"
    assert replies[1].body["error"] == "undecodable_input"
    assert replies[3].body["error"] == "unsupported_media_type"
    assert set(replies[3].body) == {"error", "detail"}
    assert {reply.content_type for reply in replies} == {"application/json"}


def test_batch_results_do_not_depend_on_batch_company(classifier, classifier_context, serve, chelsea, coffee, encode):
    alone = serve(classifier, classifier_context, [{"body": bytearray(encode(coffee, "PNG"))}])[0].body
    together = serve(
        classifier, classifier_context,
        [{"body": bytearray(encode(chelsea, "PNG"))}, {"body": bytearray(encode(coffee, "PNG"))}],
    )[1].body
    assert list(alone) == list(together)
    assert list(alone.values()) == pytest.approx(list(together.values()), abs=1e-4)


@pytest.mark.parametrize(
    "request_dict, status, code",
    [
        ({"body": bytearray()}, 400, "empty_payload"),
        ({"body": "%%% not base64"}, 400, "invalid_payload"),
        ({"body": {"image": "x"}}, 400, "invalid_payload"),
        ({"body": bytearray(b"\xff\xd8\xff\xe0 truncated jpeg")}, 422, "undecodable_input"),
        ({}, 415, "unsupported_media_type"),
        ({"body": blank_png(1, 1)}, 422, "unsupported_dimensions"),
        ({"body": blank_png(100_000, 1)}, 422, "unsupported_dimensions"),
    ],
    ids=["empty", "bad-base64", "json-without-data", "truncated-jpeg", "no-body", "1x1", "100000x1"],
)
def test_single_bad_request(classifier, classifier_context, serve, request_dict, status, code):
    (reply,) = serve(classifier, classifier_context, [request_dict])
    assert (reply.status, reply.body["error"]) == (status, code)
    assert reply.body["detail"]


def test_a_body_sent_as_json_that_does_not_parse_says_why(classifier, classifier_context, serve, coffee, encode):
    """TorchServe hands over the bytes of an application/json body it cannot parse: that is a 400 with the
    parser's reason, not "not an image"; image bytes labelled JSON are still decoded, or refused as images."""
    declared = {"body": {"content-type": "application/json"}}
    requests = [{"body": bytearray(b'{"data": "iVBORw0KGgo')}, {"body": bytearray(encode(coffee, "JPEG"))},
                {"body": bytearray(b"\xff\xd8\xff\xe0 truncated jpeg")}]
    malformed, jpeg, truncated = serve(classifier, classifier_context, requests, [declared] * 3)
    assert (malformed.status, malformed.body["error"]) == (400, "invalid_payload")
    assert malformed.body["detail"].startswith("the body does not parse as JSON (Unterminated string")
    assert jpeg.status == 200 and next(iter(jpeg.body)) == "espresso"
    assert (truncated.status, truncated.body["error"]) == (422, "undecodable_input")  # not JSON-like: the image's reason


def test_json_that_torchserve_did_not_parse_is_read_here(classifier, classifier_context, serve, coffee, encode):
    """A byte order mark (PowerShell writes one) or a +json type leaves TorchServe's json.loads out:
    the handler parses the body itself. A JSON array is still no image request."""
    b64 = base64.b64encode(encode(coffee, "JPEG")).decode()
    body = json.dumps({"data": b64}).encode()
    requests = [{"body": bytearray(b"\xef\xbb\xbf" + body)}, {"body": bytearray(body)}, {"body": bytearray(b'["a"]')}]
    headers = [{"body": {"content-type": "application/json"}}, {"body": {"content-type": "application/vnd.api+json"}},
               {"body": {"content-type": "application/json"}}]
    bom, api_json, array = serve(classifier, classifier_context, requests, headers)
    assert bom.status == api_json.status == 200 and next(iter(bom.body)) == next(iter(api_json.body)) == "espresso"
    assert (array.status, array.body["detail"][:37]) == (400, "a JSON array is not an image request;")


def test_empty_batch(classifier, classifier_context, serve):
    assert serve(classifier, classifier_context, []) == []


# ---- load-time failures ---------------------------------------------------------------------
def config_with(handler_section: dict) -> dict:
    config = yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())
    config["handler"] = {**config["handler"], **handler_section}
    return config


def test_unknown_setting_fails_initialize_by_name(make_context, model_dir):
    context = make_context(model_dir, config_with({"tpok": 3}))
    with pytest.raises(ValueError, match="'tpok'"):
        ImageClassifier().initialize(context)


def test_fp16_on_cpu_fails_initialize(make_context, model_dir):
    context = make_context(model_dir, config_with({"precision": "fp16"}))
    with pytest.raises(ValueError, match="fp16"):
        ImageClassifier().initialize(context)


@pytest.mark.reliability
def test_tampered_weights_fail_initialize(make_context, model_dir, tmp_path):
    tampered = tmp_path / "model_dir"
    shutil.copytree(model_dir, tampered)
    weights = tampered / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256 mismatch"):  # runtime torch reads the safetensors (onnxruntime:
        ImageClassifier().initialize(make_context(tampered, config_with({"runtime": "torch"})))  # test_onnx_runtime.py)


def test_topk_setting_applies(make_context, model_dir, serve, chelsea, encode):
    handler = ImageClassifier()
    context = make_context(model_dir, config_with({"topk": 2, "precision": "bf16", "runtime": "torch"}))
    handler.initialize(context)
    (reply,) = serve(handler, context, [{"body": bytearray(encode(chelsea, "JPEG"))}])
    assert len(reply.body) == 2
    assert top1(reply) in CATS  # bf16 autocast on CPU keeps the answer

"""runtime: onnxruntime on the real exported EfficientNet-Lite0 (the shipped CPU default): the same
labels as PyTorch on real photos, the session's settings, a verified model.onnx, and the base
handler's isolation (bisection, OOM halving) around onnxruntime."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from handlers.image_classifier import ImageClassifier
from handlers.onnx_runtime import OnnxModel
from handlers.weights import WeightsError, sha256_file
from models.registry import get_spec
from scripts.build.onnx_export import IMAGE_ATOL
from scripts.measure.agreement import photo_files

SHIPPED = yaml.safe_load(get_spec("efficientnet_lite0").config_path.read_text())


def config_with(**handler) -> dict:
    return {**SHIPPED, "handler": {**SHIPPED["handler"], **handler}}


@pytest.fixture(scope="module")
def torch_classifier(make_context, model_dir) -> ImageClassifier:
    """The same archive on runtime torch, with the shipped torch settings (channels_last, trace)."""
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir, config_with(runtime="torch")))
    return handler


def photo_requests() -> list[dict]:
    """Every real photo the agreement script uses (samples/, scikit-image's, matplotlib's), as sent."""
    return [{"body": bytearray(path.read_bytes())} for path in photo_files()]


def test_the_shipped_classifier_runs_onnxruntime(classifier):
    assert classifier.runtime == "onnxruntime" and isinstance(classifier.model, OnnxModel)
    options = classifier.model.session.get_session_options()
    assert options.intra_op_num_threads == classifier.threads and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert classifier.model.input_names == ["pixels"] and classifier.model.output_names == ["logits"]
    assert classifier.metadata["onnx"]["opset"] == 17 and classifier.metadata["onnx"]["check"]["same_top5"]


def test_onnxruntime_and_torch_agree_on_real_photos(classifier, torch_classifier, classifier_context, serve):
    requests = photo_requests()
    assert len(requests) >= 2
    ort_replies = serve(classifier, classifier_context, requests)
    torch_replies = serve(torch_classifier, classifier_context, requests)
    for ours, theirs in zip(ort_replies, torch_replies, strict=True):
        assert ours.status == theirs.status == 200
        assert list(ours.body) == list(theirs.body)  # the same top-5 labels, in the same order
        # torch here is channels_last + a frozen trace, so a little further from ONNX than eager is
        assert list(ours.body.values()) == pytest.approx(list(theirs.body.values()), abs=10 * IMAGE_ATOL)


@pytest.mark.parametrize("level", ["disable", "basic", "extended"])
def test_graph_optimization_levels_give_the_same_labels(make_context, model_dir, classifier, classifier_context, serve, level):
    handler = ImageClassifier()
    handler.initialize(make_context(model_dir, config_with(graph_optimization=level, ort_spinning=True)))
    assert handler.model.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    requests = photo_requests()[:2]
    assert [list(r.body) for r in serve(handler, classifier_context, requests)] == \
        [list(r.body) for r in serve(classifier, classifier_context, requests)]


# ---- a verified model.onnx ---------------------------------------------------------------------
@pytest.fixture
def copy_of(model_dir, tmp_path):
    """A copy of the unpacked archive to break."""
    copy = tmp_path / "model_dir"
    shutil.copytree(model_dir, copy)
    return copy


def _rewrite_onnx_sha(folder: Path) -> None:
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["onnx"]["sha256"] = sha256_file(folder / "model.onnx")
    (folder / "metadata.json").write_text(json.dumps(metadata))


@pytest.mark.reliability
@pytest.mark.parametrize("damage, message", [
    ("missing", r"ONNX file .*model\.onnx is missing"),
    ("altered", r"sha256 mismatch for model\.onnx"),
    ("corrupt", r"onnxruntime cannot load model\.onnx"),  # sha256 recorded for the garbage: the parser refuses it
    ("unrecorded", r"metadata\.json records no ONNX export"),
])
def test_a_broken_onnx_file_fails_the_load_naming_it(copy_of, make_context, damage, message):
    onnx_file = copy_of / "model.onnx"
    if damage == "missing":
        onnx_file.unlink()
    elif damage == "altered":
        data = bytearray(onnx_file.read_bytes())
        data[len(data) // 2] ^= 0x01
        onnx_file.write_bytes(bytes(data))
    elif damage == "corrupt":
        onnx_file.write_bytes(b"not a protobuf at all" * 100)
        _rewrite_onnx_sha(copy_of)
    else:
        metadata = json.loads((copy_of / "metadata.json").read_text())
        del metadata["onnx"]
        (copy_of / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(WeightsError, match=message):
        ImageClassifier().initialize(make_context(copy_of))


def test_runtime_torch_needs_no_onnx_file(copy_of, make_context):
    (copy_of / "model.onnx").unlink()
    handler = ImageClassifier()
    handler.initialize(make_context(copy_of, config_with(runtime="torch")))
    assert handler.runtime == "torch"


def test_onnxruntime_missing_fails_the_load_saying_how_to_install_it(make_context, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(ModuleNotFoundError, match=r"pip install onnxruntime==1\.31\.0.*runtime: torch"):
        ImageClassifier().initialize(make_context(model_dir))


def test_onnxruntime_runs_fp32_only(make_context, model_dir):
    with pytest.raises(ValueError, match="precision bf16 needs runtime: torch"):
        ImageClassifier().initialize(make_context(model_dir, config_with(precision="bf16")))


# ---- isolation around onnxruntime --------------------------------------------------------------
class FailingSession:
    """The real session, failing as onnxruntime does: an allocation failure above `capacity` rows,
    and an ordinary failure on a batch holding an all-black image (a poisoned input)."""

    def __init__(self, session, capacity: int):
        self.session, self.capacity, self.calls = session, capacity, []

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feeds):
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail, RuntimeException

        pixels = feeds["pixels"]
        self.calls.append(len(pixels))
        if len(pixels) > self.capacity:
            raise RuntimeException("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested buffer")
        if (pixels.reshape(len(pixels), -1).max(axis=1) < -1.5).any():  # black, after normalisation
            raise Fail("[ONNXRuntimeError] : 1 : FAIL : simulated kernel failure")
        return self.session.run(names, feeds)


@pytest.mark.reliability
def test_bisection_and_oom_halving_on_onnxruntime(make_context, model_dir, serve, chelsea, encode):
    from PIL import Image

    handler = ImageClassifier()
    context = make_context(model_dir)
    handler.initialize(context)
    failing = FailingSession(handler.model.session, capacity=3)
    handler.model = OnnxModel(failing)
    cat = {"body": bytearray(encode(chelsea, "JPEG"))}
    black = {"body": bytearray(encode(Image.new("RGB", (300, 300)), "PNG"))}
    replies = serve(handler, context, [cat] * 5 + [black] + [cat] * 2)
    assert [r.status for r in replies] == [200] * 5 + [500] + [200] * 2
    assert replies[5].body["error"] == "inference_failed" and "simulated" not in replies[5].body["detail"]
    assert len({next(iter(r.body)) for i, r in enumerate(replies) if i != 5}) == 1
    assert failing.calls[:3] == [8, 4, 2]  # halved on the allocation failure, not retried one by one
    failing.capacity = 0
    (reply,) = serve(handler, context, [cat])
    assert (reply.status, reply.body["error"]) == (507, "out_of_resources")

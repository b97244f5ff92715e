"""Export a model to ONNX beside its safetensors, and prove it on real inputs before keeping it.

scripts/build/weights.py calls `export_onnx` for the models whose ModelSpec says `onnx="image"`
or `onnx="text"`. The exporter is torch's TorchScript-based one (dynamo=False, opset 17), with a
dynamic batch axis (and a dynamic sequence axis for text). The ONNX model is then run by
onnxruntime, with the settings the handler serves with, on real inputs in shapes other than the
export's, and compared with the PyTorch model; outside the tolerance the export fails and nothing
is written (export_weights stages the whole folder).

  image: the photos in samples/ (and their mirror images), decoded, resized and cropped as the
         handler does; logits within IMAGE_ATOL of PyTorch's, the same top-5 classes in order.
  text:  samples/sentences.txt, tokenized by the model's tokenizer, padded as the handler pads;
         hidden states within TEXT_ATOL on the real tokens, pooled embeddings' cosine >= TEXT_MIN_COSINE.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from handlers.onnx_runtime import load_session
from handlers.text import mean_pool, pad_sorted
from handlers.vision import decode_image, image_to_tensor, normalize_batch
from handlers.weights import sha256_file

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples"
ONNX_FILE = "model.onnx"
OPSET = 17
IMAGE_ATOL = 1e-4
"""Largest |ONNX - PyTorch| logit accepted (measured here: about 1e-5)."""
TEXT_ATOL = 1e-4
"""Largest |ONNX - PyTorch| hidden-state value accepted on the real (unpadded) tokens."""
TEXT_MIN_COSINE = 1 - 1e-6
"""Smallest cosine accepted between ONNX's and PyTorch's pooled sentence embeddings."""


class OnnxCheckFailed(RuntimeError):
    """The ONNX model does not reproduce the PyTorch model on the real inputs."""


class HiddenStates(nn.Module):
    """A transformers encoder as a function of (input_ids, attention_mask) -> last hidden state."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_onnx(kind: str, module: nn.Module, settings, folder: Path) -> dict:
    """Write folder/model.onnx for an "image" or "text" model, check it, return its metadata entry."""
    module = module.eval()
    if kind == "image":
        export, check = _export_image, _check_image
    elif kind == "text":
        export, check = _export_text, _check_text
    else:
        raise ValueError(f"unknown ONNX export kind {kind!r}; expected image or text")
    path = folder / ONNX_FILE
    inputs, outputs = export(module, settings, folder, path)
    entry = {"file": ONNX_FILE, "sha256": sha256_file(path), "opset": OPSET, "exporter": "torch.onnx (dynamo=False)",
             "torch": torch.__version__, "onnx": version("onnx"), "onnxruntime": version("onnxruntime"),
             "inputs": inputs, "outputs": outputs}
    session = load_session(folder, {"onnx": entry}, threads=0, graph_optimization=settings.graph_optimization,
                           spinning=False)
    entry["check"] = check(module, session, settings, folder)
    return entry


def _torch_export(module: nn.Module, example: tuple, path: Path, inputs: dict, outputs: dict) -> None:
    """inputs/outputs: name -> {axis: name} of the dynamic axes."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript-based exporter
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(module, example, str(path), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={**inputs, **outputs}, dynamo=False, opset_version=OPSET)


# ---- image -----------------------------------------------------------------------------------
def sample_photos(settings) -> list[torch.Tensor]:
    """The repo's real photos as the handler feeds them (uint8 CHW crops), and their mirror images."""
    crops = []
    for path in sorted(SAMPLES.glob("*.jpg")):
        image = decode_image(path.read_bytes(), settings.max_pixels)
        crops.append(image_to_tensor(image, settings.resize, settings.crop))
        crops.append(image_to_tensor(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), settings.resize, settings.crop))
    if len(crops) < 2:
        raise OnnxCheckFailed(f"no photos in {SAMPLES} to check the ONNX model on")
    return crops


def _export_image(module: nn.Module, settings, folder: Path, path: Path) -> tuple[list, list]:
    example = torch.zeros(2, 3, settings.crop, settings.crop)
    _torch_export(module, (example,), path, {"pixels": {0: "batch"}}, {"logits": {0: "batch"}})
    return ["pixels"], ["logits"]


def _check_image(module: nn.Module, session, settings, folder: Path) -> dict:
    batch = normalize_batch(torch.stack(sample_photos(settings)), settings.mean, settings.std)
    with torch.no_grad():
        expected = module(batch)
    runs = {"batch": session(batch), "single": session(batch[:1])}  # sizes other than the export's 2
    worst = max(float((runs["batch"] - expected).abs().max()), float((runs["single"] - expected[:1]).abs().max()))
    same_top5 = torch.equal(runs["batch"].topk(5).indices, expected.topk(5).indices)
    if worst > IMAGE_ATOL or not same_top5:
        raise OnnxCheckFailed(f"{ONNX_FILE} differs from the PyTorch model on {len(batch)} real photos: max |logit "
                              f"difference| {worst:.3g} (tolerance {IMAGE_ATOL:g}), same top-5: {same_top5}; not written")
    return {"inputs": f"{len(batch)} crops of the photos in samples/ and their mirror images, batch {len(batch)} and 1",
            "max_abs_logit_diff": worst, "tolerance": IMAGE_ATOL, "same_top5": True}


# ---- text ------------------------------------------------------------------------------------
def sample_sentences() -> list[str]:
    lines = [line.strip() for line in (SAMPLES / "sentences.txt").read_text().splitlines()]
    return [line for line in lines if line]


def _tokenized(folder: Path, texts: list[str]) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return pad_sorted(tokenizer(texts)["input_ids"], tokenizer.pad_token_id)


def _export_text(module: nn.Module, settings, folder: Path, path: Path) -> tuple[list, list]:
    example = _tokenized(folder, ["A short sentence to trace the encoder with.", "Another one."])
    axes = {0: "batch", 1: "sequence"}
    # .eval() on the wrapper too: torch.onnx.export restores the mode of what it is given, recursively
    _torch_export(HiddenStates(module).eval(), (example["input_ids"], example["attention_mask"]), path,
                  {"input_ids": axes, "attention_mask": axes}, {"last_hidden_state": axes})
    return ["input_ids", "attention_mask"], ["last_hidden_state"]


def _check_text(module: nn.Module, session, settings, folder: Path) -> dict:
    sentences = sample_sentences()
    worst, lowest = 0.0, 1.0
    for texts in (sentences, sentences[:1]):
        batch = _tokenized(folder, texts)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        with torch.no_grad():
            expected = HiddenStates(module).eval()(ids, mask)
        got = session(input_ids=ids, attention_mask=mask)
        kept = mask.bool()
        worst = max(worst, float((got - expected).abs()[kept].max()))
        lowest = min(lowest, float((mean_pool(got, mask) * mean_pool(expected, mask)).sum(dim=1).min()))
    if worst > TEXT_ATOL or lowest < TEXT_MIN_COSINE:
        raise OnnxCheckFailed(f"{ONNX_FILE} differs from the PyTorch model on {len(sentences)} real sentences: max |hidden "
                              f"difference| {worst:.3g} (tolerance {TEXT_ATOL:g}), min cosine {lowest:.9f} "
                              f"(bound {TEXT_MIN_COSINE}); not written")
    return {"inputs": f"samples/sentences.txt: {len(sentences)} sentences in one padded batch, and one alone",
            "max_abs_hidden_diff": worst, "tolerance": TEXT_ATOL, "min_cosine": lowest, "cosine_bound": TEXT_MIN_COSINE}


"""ImageNet-style classifier: image bytes in, {label: probability} for the top k out."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from PIL import Image

from handlers import oip
from handlers.base import NO_HEADERS, BundleHandler, request_tag, warmup_sizes
from handlers.compilation import compile_model
from handlers.config import ImageSettings
from handlers.errors import PayloadTooLarge, RequestError, UndecodableInput
from handlers.jpeg_batch import EncodedJpeg, batch_decodable, decode_jpegs, resize_and_crop
from handlers.payload import declares_json, parse_json, request_payload
from handlers.vision import (
    SEND_AN_IMAGE,
    check_encoded_size,
    check_proportions,
    decode_base64,
    decode_image,
    extract_image_bytes,
    image_to_tensor,
    normalize_batch,
    open_header,
    top_k_labels,
)

log = logging.getLogger(__name__)

LABELS_FILE = "labels.json"
BOM = b"\xef\xbb\xbf"  # UTF-8's byte order mark, which json.loads(bytes) skips
V2_IMAGE = "send each image's encoded bytes as one element of the BYTES input `image` (binary, or base64 in JSON)"
DRAFT_MARGIN = 2
"""Reduce-on-decode stops at twice the resize side, so the resize after it still averages over
pixels: at 1x, 6% of augmented crops changed label (scripts/measure/agreement.py); at 2x, under 1%."""


def uses_batch_decoder(jpeg_decoder: str, device: torch.device) -> bool:
    """`auto`: the batch decoder (nvjpeg) on a GPU worker; PIL with draft decoding on a CPU one."""
    return jpeg_decoder == "torchvision" or (jpeg_decoder == "auto" and device.type == "cuda")


def looks_like_unparsed_json(request: dict, headers: Mapping[str, Any], raw: bytes) -> bool:
    """A body sent as JSON that TorchServe handed over as bytes (it could not parse it) and that reads
    as JSON to a person ({ or [ first); image bytes labelled JSON are decoded as an image first."""
    return (isinstance(request_payload(request), (bytes, bytearray)) and raw.removeprefix(BOM).lstrip()[:1] in (b"{", b"[")
            and declares_json(request, headers))


class ImageClassifier(BundleHandler):
    """Decode per request (pure, in handlers.vision) or per batch on the GPU (handlers.jpeg_batch),
    normalise and classify per batch."""

    settings_class = ImageSettings

    def optimize(self, model: torch.nn.Module) -> torch.nn.Module:
        """channels_last and compilation (runtime torch), specialised on a batch of the served size."""
        s = self.settings
        layout = torch.channels_last if s.channels_last else torch.contiguous_format
        example = torch.zeros(self.batch_size, 3, s.crop, s.crop, device=self.device).contiguous(memory_format=layout)
        return compile_model(model.to(memory_format=layout), s.compile, example, self.autocast,
                             warmup_sizes(self.batch_size, s.pad_to_bucket))

    def setup(self, model_dir: Path) -> None:
        labels_path = model_dir / LABELS_FILE
        self.labels = json.loads(labels_path.read_text()) if labels_path.is_file() else []
        self.batch_decoder = uses_batch_decoder(self.settings.jpeg_decoder, self.device)

    def example_request(self) -> dict:
        """A grey JPEG twice the resize side: warms up decoding (draft included) and the model."""
        buffer = io.BytesIO()
        Image.new("RGB", (2 * self.settings.resize,) * 2, (128, 128, 128)).save(buffer, "JPEG")
        return {"body": bytearray(buffer.getvalue())}

    def decode_request(self, request: dict, headers: Mapping[str, Any] = NO_HEADERS) -> torch.Tensor | EncodedJpeg:
        raw = extract_image_bytes(request, self.settings.max_bytes)
        try:
            return self.decode_image_bytes(raw)
        except UndecodableInput:
            if not looks_like_unparsed_json(request, headers, raw):
                raise
        # JSON that TorchServe did not parse: why (400), or what it holds (a byte order mark, a +json type)
        parsed = parse_json(raw, SEND_AN_IMAGE)
        return self.decode_image_bytes(extract_image_bytes({"body": parsed}, self.settings.max_bytes))

    def decode_image_bytes(self, raw: bytes) -> torch.Tensor | EncodedJpeg:
        """The uint8 crop (decoded here, on the CPU), or a checked JPEG left for decode_batch."""
        s = self.settings
        if self.batch_decoder:
            header = open_header(raw, s.max_pixels)
            if batch_decodable(header, s.max_decoded_pixels):
                check_proportions(header.size, s.resize, s.max_upscale, s.max_aspect_ratio)
                return EncodedJpeg(raw, header.size)
        return self.decode_on_cpu(raw)

    def decode_on_cpu(self, raw: bytes) -> torch.Tensor:
        """PIL: any supported format, EXIF orientation, large JPEGs drafted at reduced scale."""
        s = self.settings
        min_side = DRAFT_MARGIN * s.resize if s.jpeg_draft else 0
        image = decode_image(raw, s.max_pixels, min_side=min_side, max_decoded_pixels=s.max_decoded_pixels)
        check_proportions(image.size, s.resize, s.max_upscale, s.max_aspect_ratio)
        return image_to_tensor(image, s.resize, s.crop)

    def decode_batch(self, items: dict[Any, Any]) -> dict[Any, Any]:
        """The batch's JPEGs decoded in one call on the worker's device, resized and cropped there;
        one the batch decoder fails on is decoded on the CPU, and fails alone (422) if that fails too."""
        keys = [key for key, item in items.items() if isinstance(item, EncodedJpeg)]
        decoded = decode_jpegs([items[key].raw for key in keys], self.device)
        done = {}
        for key, image in zip(keys, decoded, strict=True):
            done[key] = self._resized(image) if image is not None else self._decode_on_cpu_isolated(key, items[key])
        return {**items, **done}

    def _resized(self, image: torch.Tensor) -> torch.Tensor:
        return resize_and_crop(image, self.settings.resize, self.settings.crop)

    def _decode_on_cpu_isolated(self, key: Any, jpeg: EncodedJpeg) -> torch.Tensor | RequestError:
        log.info("%s: the batch decoder failed on a %dx%d JPEG; decoding it on the CPU", request_tag(key), *jpeg.size)
        try:
            return self.decode_on_cpu(jpeg.raw)
        except RequestError as err:
            return err

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        batch = torch.stack([item.to(self.device, non_blocking=True) for item in items])
        if self.settings.channels_last and self.runtime == "torch":  # onnxruntime takes NCHW as exported
            return batch.contiguous(memory_format=torch.channels_last)
        return batch

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        logits = self.model(normalize_batch(batch, self.settings.mean, self.settings.std))
        return logits.float().softmax(dim=1)

    def encode_response(self, probabilities: torch.Tensor) -> dict[str, float]:
        return top_k_labels(probabilities, self.labels, self.settings.topk)

    # ---- v2: input `image` BYTES [N] (binary, or base64 in JSON); outputs labels and probabilities [N, k]
    def v2_signature(self) -> dict[str, list[dict]]:
        k = min(self.settings.topk, len(self.labels) or self.settings.topk)
        return {"inputs": [oip.tensor_metadata("image", "BYTES", [-1])],
                "outputs": [oip.tensor_metadata("labels", "BYTES", [-1, k]), oip.tensor_metadata("probabilities", "FP32", [-1, k])]}

    def decode_v2(self, request: oip.InferRequest) -> list[torch.Tensor]:
        images = request.input("image", "BYTES")
        count, limit = len(images.data), self.settings.max_images
        if count > limit:
            raise PayloadTooLarge(f"{count} images in one request; the limit is {limit} (max_images)")
        return [self._decode_element(j, count, element) for j, element in enumerate(images.data)]

    def _decode_element(self, j: int, count: int, element: bytes | str) -> torch.Tensor:
        """One image of a v2 request; its error names which one."""
        try:
            raw = decode_base64(element) if isinstance(element, str) else bytes(element)
            return self.decode_image_bytes(check_encoded_size(raw, self.settings.max_bytes, V2_IMAGE))
        except RequestError as err:
            raise type(err)(f"image {j} of {count}: {err.detail}") from None

    def encode_v2(self, results: list[torch.Tensor]) -> list[oip.Tensor]:
        rows = [self.encode_response(probabilities) for probabilities in results]
        shape = (len(rows), len(rows[0]))
        return [oip.Tensor("labels", "BYTES", shape, [label for row in rows for label in row]),
                oip.Tensor("probabilities", "FP32", shape, [p for row in rows for p in row.values()])]

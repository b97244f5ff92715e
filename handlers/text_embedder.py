"""Sentence embeddings and zero-shot labels from a BERT-family encoder (all-MiniLM-L6-v2).

JSON {"text"} -> {"embedding"}, {"texts"} -> {"embeddings"}, {"text", "labels"} -> ranked
{"labels"}; a text/plain body is one text. Tokenized per request, padded per batch to its
longest text, mean-pooled and L2-normalised (pure, in handlers.text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from handlers import oip
from handlers.base import NO_HEADERS, BundleHandler
from handlers.config import TextSettings
from handlers.payload import declares_json
from handlers.quantization import quantize_int8
from handlers.text import (
    TextRequest,
    TokenizedRequest,
    check_request_tokens,
    embed_padded,
    extract_request,
    from_tensor,
    pad_sorted,
    text_response,
    tokenize_request,
)


class TextEmbedder(BundleHandler):
    """One request may hold several texts: its rows are split back out of the batch output."""

    settings_class = TextSettings

    def load_runtime(self, model_dir: Path) -> Any:
        if self.settings.quantize == "int8" and self.runtime != "torch":
            raise ValueError("quantize int8 is torch's dynamic quantization: it needs runtime: torch")
        return super().load_runtime(model_dir)

    def load_model(self, model_dir: Path) -> torch.nn.Module:
        module = super().load_model(model_dir)
        if self.settings.quantize == "int8":
            return quantize_int8(module, self.device, self.settings.int8_keep_fp32)
        return module

    def setup(self, model_dir: Path) -> None:
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
        self.dimensions, limit = config.hidden_size, config.max_position_embeddings
        if self.settings.max_tokens > limit:
            raise ValueError(f"max_tokens {self.settings.max_tokens} is above the model's {limit} positions")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)

    def example_request(self) -> dict:
        return {"body": "A short sentence that warms up the encoder before the first request."}

    def decode_request(self, request: dict, headers: Mapping[str, Any] = NO_HEADERS) -> TokenizedRequest:
        s = self.settings
        return self.tokenized(extract_request(request, s.max_texts, s.max_chars, s.labels, declares_json(request, headers)))

    def tokenized(self, asked: TextRequest) -> TokenizedRequest:
        """A checked request's token ids, within the per-request token budget."""
        s = self.settings
        item = tokenize_request(self.tokenizer, asked, s.hypothesis_template, s.max_tokens, chars_per_token=s.chars_per_token)
        check_request_tokens(item, s.max_request_tokens, s.chunk_texts, s.chunk_tokens)
        return item

    def collate(self, items: list[TokenizedRequest]) -> dict[str, torch.Tensor]:
        return pad_sorted([ids for item in items for ids in item.ids], self.tokenizer.pad_token_id)

    def infer(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed_padded(self.run_encoder, batch, self.settings.chunk_texts, self.settings.chunk_tokens)

    def run_encoder(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token vectors (last hidden state) for one padded chunk: onnxruntime's one output, or torch's field."""
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return output if isinstance(output, torch.Tensor) else output.last_hidden_state

    def split(self, output: torch.Tensor, items: list[TokenizedRequest]) -> list[tuple[TokenizedRequest, torch.Tensor]]:
        rows = output.float().cpu().split([len(item.ids) for item in items])
        return list(zip(items, rows, strict=True))

    def encode_response(self, result: tuple[TokenizedRequest, torch.Tensor]) -> dict[str, Any]:
        return text_response(*result)

    # ---- v2: input `text` BYTES [N] (UTF-8); output `embedding` FP32 [N, dimensions] -------------
    def v2_signature(self) -> dict[str, list[dict]]:
        return {"inputs": [oip.tensor_metadata("text", "BYTES", [-1])],
                "outputs": [oip.tensor_metadata("embedding", "FP32", [-1, self.dimensions])]}

    def decode_v2(self, request: oip.InferRequest) -> list[TokenizedRequest]:
        texts = request.input("text", "BYTES")
        strings = [oip.as_text(j, element, request.base64_bytes) for j, element in enumerate(texts.data)]
        return [self.tokenized(from_tensor(strings, "text", self.settings.max_texts, self.settings.max_chars))]

    def encode_v2(self, results: list[tuple[TokenizedRequest, torch.Tensor]]) -> list[oip.Tensor]:
        (_, vectors), = results
        return [oip.Tensor("embedding", "FP32", tuple(vectors.shape), vectors.reshape(-1).tolist())]


"""int8 dynamic quantization of the text model against fp32: speed and cosine agreement.

Both run through the real handler (scripts/measure/in_process.py), `quantize: int8` or `none`, so the
texts go the way the server sends them: each text a request, tokenized, length-sorted, padded
per chunk, mean-pooled; once as one batch and once one text at a time. Agreement is the cosine
between each text's int8 and fp32 embedding; the target is a mean of at least 0.99.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

from handlers.base import BundleHandler
from handlers.config import TextSettings, parse_settings
from handlers.errors import RequestError
from scripts.measure.bench.plan import REPO, TEXT
from scripts.measure.bench.raw import median_seconds
from scripts.measure.in_process import load_handler, model_config

TARGET = 0.99
SENTENCES = REPO / "samples" / "sentences.txt"


def shipped_keep_fp32() -> tuple[str, ...]:
    """The Linear layer globs models/configs/minilm.yaml leaves in fp32 under int8."""
    return parse_settings(TextSettings, model_config(TEXT)["handler"]).int8_keep_fp32


def read_texts(path: Path = SENTENCES, limit: int | None = None) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()][:limit]


def text_handler(model_dir: Path, quantize: str, keep_fp32: Sequence[str] = (), threads: int = 0) -> BundleHandler:
    """The shipped text handler on runtime torch (int8 is torch's dynamic quantization) in fp32, quantized
    (`int8`, these globs kept fp32) or not (`none`)."""
    warnings.filterwarnings("ignore", module="torch.ao")  # torch.ao.quantization's deprecation notices, once per layer
    overrides = {"runtime": "torch", "precision": "fp32", "quantize": quantize, "int8_keep_fp32": list(keep_fp32),
                 "threads": threads}
    return load_handler(TEXT, model_dir, model_config(TEXT, overrides))


def embedder(handler: BundleHandler) -> Callable[[list[str]], torch.Tensor]:
    """texts -> unit vectors, one request per text, all in one batch of the handler."""
    def embed(texts: list[str]) -> torch.Tensor:
        outcomes = handler.predict([handler.decode_request({"body": text}) for text in texts])
        failed = [outcome for outcome in outcomes if isinstance(outcome, RequestError)]
        if failed:
            raise RuntimeError(f"the handler failed {len(failed)} of {len(texts)} texts: {failed[0]}")
        return torch.cat([rows for _, rows in outcomes])

    return embed


def measure(embed: Callable[[list[str]], torch.Tensor], texts: list[str], repeat: int) -> dict:
    return {
        "batch_s": median_seconds(lambda: embed(texts), min_calls=repeat, warmup=1),
        "single_s": median_seconds(lambda: [embed([text]) for text in texts], min_calls=max(1, repeat // 3), warmup=1)
        / len(texts),
        "batched": embed(texts),
        "alone": torch.cat([embed([text]) for text in texts]),
    }


def int8_vs_fp32(model_dir: Path, repeat: int, limit: int | None = None) -> dict:
    """The benchmark's figures for the shipped int8 settings against fp32."""
    keep = shipped_keep_fp32()
    texts = read_texts(limit=limit)
    fp32 = measure(embedder(text_handler(model_dir, "none")), texts, repeat)
    int8 = measure(embedder(text_handler(model_dir, "int8", keep)), texts, repeat)
    cosines = torch.nn.functional.cosine_similarity(int8["batched"], fp32["alone"], dim=1)
    return {"texts": len(texts), "keep_fp32": list(keep), "speedup": round(fp32["batch_s"] / int8["batch_s"], 2),
            "speedup_single": round(fp32["single_s"] / int8["single_s"], 2),
            "cosine_mean": round(cosines.mean().item(), 4), "cosine_min": round(cosines.min().item(), 4)}

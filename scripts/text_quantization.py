"""Measure int8 dynamic quantization of the text model against fp32: speed and cosine agreement.

    python -m scripts.text_quantization                     # build/weights/minilm, samples/sentences.txt
    python -m scripts.text_quantization --keep-fp32 ''      # every Linear layer int8
    python -m scripts.text_quantization --repeat 10 --threads 2

The texts run the way the handler runs them (tokenized, length-sorted, padded per chunk,
mean-pooled), once as one batch and once one text at a time. Agreement is the cosine between each
text's int8 and fp32 embedding; the target is a mean of at least 0.99. Every number is measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import torch
import yaml

from handlers.architectures import build_module
from handlers.quantization import quantize_int8
from handlers.text import TextRequest, embed_padded, pad_sorted, tokenize_request
from handlers.weights import load_state_dict, read_metadata
from models.registry import get_spec

TARGET = 0.99


def load_fp32(model_dir: Path) -> torch.nn.Module:
    metadata = read_metadata(model_dir)
    module = build_module(metadata["architecture"], model_dir)
    module.load_state_dict(load_state_dict(model_dir, metadata))
    return module.eval()


def embedder(model: torch.nn.Module, tokenizer, max_tokens: int, chunk_texts: int) -> Callable[[list[str]], torch.Tensor]:
    """texts -> unit vectors, through the handler's own pure functions."""
    def encode(input_ids, attention_mask):
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def embed(texts: list[str]) -> torch.Tensor:
        items = [tokenize_request(tokenizer, TextRequest((text,)), "{label}", max_tokens) for text in texts]
        batch = pad_sorted([item.ids[0] for item in items], tokenizer.pad_token_id)
        with torch.inference_mode():
            return embed_padded(encode, batch, chunk_texts)

    return embed


def median_seconds(run: Callable[[], object], repeat: int) -> float:
    run()  # warm-up: first calls pay for allocation and kernel selection
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(embed: Callable, texts: list[str], repeat: int) -> dict:
    return {
        "batch_s": median_seconds(lambda: embed(texts), repeat),
        "single_s": median_seconds(lambda: [embed([text]) for text in texts], max(1, repeat // 3)) / len(texts),
        "batched": embed(texts),
        "alone": torch.cat([embed([text]) for text in texts]),
    }


def report(label: str, fp32: dict, int8: dict, texts: list[str]) -> bool:
    print(f"\n{label}")
    print(f"  batch of {len(texts)}: fp32 {fp32['batch_s'] * 1000:8.1f} ms   int8 {int8['batch_s'] * 1000:8.1f} ms"
          f"   speedup x{fp32['batch_s'] / int8['batch_s']:.2f}")
    print(f"  one text:     fp32 {fp32['single_s'] * 1000:8.1f} ms   int8 {int8['single_s'] * 1000:8.1f} ms"
          f"   speedup x{fp32['single_s'] / int8['single_s']:.2f}")
    meets = True
    for mode in ("batched", "alone"):
        cosines = torch.nn.functional.cosine_similarity(int8[mode], fp32["alone"], dim=1)
        worst = int(cosines.argmin())
        meets &= cosines.mean().item() >= TARGET
        print(f"  cosine int8 ({mode:7}) vs fp32: mean {cosines.mean():.4f}  min {cosines.min():.4f}"
              f"  (worst: {texts[worst][:40]!r})")
    return meets


def main(argv: list[str] | None = None) -> int:
    spec = get_spec("minilm")
    handler = yaml.safe_load(spec.config_path.read_text())["handler"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("build/weights/minilm"), help="an export (make weights)")
    parser.add_argument("--texts", type=Path, default=Path("samples/sentences.txt"), help="one text per line")
    parser.add_argument("--keep-fp32", nargs="*", default=handler.get("int8_keep_fp32", []),
                        help="Linear layer globs left in fp32 (default: models/configs/minilm.yaml's)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="torch.ao")  # torch.ao.quantization's deprecation notices, once per layer
    from transformers import AutoTokenizer

    texts = [line.strip() for line in args.texts.read_text().splitlines() if line.strip()]
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir, local_files_only=True)
    fp32_model = load_fp32(args.model_dir)
    keep = [pattern for pattern in args.keep_fp32 if pattern]
    settings = (handler.get("max_tokens", 256), handler.get("chunk_texts", 64))
    print(f"torch {torch.__version__}, {args.threads} threads, engine {torch.backends.quantized.engine}, "
          f"{len(texts)} texts from {args.texts}")
    fp32 = measure(embedder(fp32_model, tokenizer, *settings), texts, args.repeat)
    variants = {f"int8, {len(keep)} layer glob(s) kept fp32: {keep}": keep} if keep else {}
    variants["int8, every Linear layer"] = []
    results = []
    for label, patterns in variants.items():
        int8_model = quantize_int8(fp32_model, torch.device("cpu"), patterns)
        results.append(report(label, fp32, measure(embedder(int8_model, tokenizer, *settings), texts, args.repeat), texts))
    print(f"\ntarget: mean cosine >= {TARGET}: {'met' if results[0] else 'NOT met'} by the first configuration")
    return 0


if __name__ == "__main__":
    sys.exit(main())

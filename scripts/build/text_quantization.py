"""Measure int8 dynamic quantization of the text model against fp32: speed and cosine agreement.

    python -m scripts.build.text_quantization                     # build/weights/minilm, samples/sentences.txt
    python -m scripts.build.text_quantization --keep-fp32 ''      # every Linear layer int8
    python -m scripts.build.text_quantization --repeat 10 --threads 2

The texts run through the real handler (scripts/measure/bench/int8.py: `quantize: int8` against `none`),
once as one batch and once one text at a time. Agreement is the cosine between each text's int8
and fp32 embedding; the target is a mean of at least 0.99. Every number is measured.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from scripts.measure.bench.int8 import SENTENCES, TARGET, embedder, measure, read_texts, shipped_keep_fp32, text_handler


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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("build/weights/minilm"), help="an export (make weights)")
    parser.add_argument("--texts", type=Path, default=SENTENCES, help="one text per line")
    parser.add_argument("--keep-fp32", nargs="*", default=list(shipped_keep_fp32()),
                        help="Linear layer globs left in fp32 (default: models/configs/minilm.yaml's)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    texts = read_texts(args.texts)
    keep = [pattern for pattern in args.keep_fp32 if pattern]
    fp32 = measure(embedder(text_handler(args.model_dir, "none", threads=args.threads)), texts, args.repeat)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine {torch.backends.quantized.engine}, "
          f"{len(texts)} texts from {args.texts}")
    variants = {f"int8, {len(keep)} layer glob(s) kept fp32: {keep}": keep} if keep else {}
    variants["int8, every Linear layer"] = []
    results = []
    for label, patterns in variants.items():
        int8 = measure(embedder(text_handler(args.model_dir, "int8", patterns, threads=args.threads)), texts, args.repeat)
        results.append(report(label, fp32, int8, texts))
    print(f"\ntarget: mean cosine >= {TARGET}: {'met' if results[0] else 'NOT met'} by the first configuration")
    return 0


if __name__ == "__main__":
    sys.exit(main())

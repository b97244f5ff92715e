"""Top-1 agreement of an image model's speed settings with its fp32 reference, on augmented photos.

    python -m scripts.measure.agreement                                  # the shipped config, 240 crops
    python -m scripts.measure.agreement --crops 400 --set precision=fp32 compile=trace

The reference is the same handler with every speed setting off: PyTorch eager in fp32, no
channels_last, no compilation, full JPEG decode. The candidate is models/configs/<model>.yaml as shipped, or with
--set overrides. Both read the same JPEG bytes: random resized crops of real photos (samples/,
scikit-image's and matplotlib's bundled photos), flipped and colour-jittered with a fixed seed,
256 to 1024 px on a side so reduce-on-decode is exercised too. The bar for shipping is 99%, and every
photo, whole and in its own format, keeps its reference label.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
from pathlib import Path
from typing import Sequence

import torch
import yaml
from PIL import Image
from torchvision.transforms import v2

from scripts.measure.in_process import load_handler, model_config

REPO = Path(__file__).resolve().parents[2]
TARGET = 0.99
REFERENCE = {"runtime": "torch", "precision": "fp32", "channels_last": False, "compile": "none", "jpeg_draft": False,
             "jpeg_decoder": "pil"}
SIDES = (256, 384, 512, 768, 1024)


def photo_files(photos_dir: Path | None = None) -> list[Path]:
    """Real photos shipped with the repo, then those of `photos_dir` if given (a copy, where scikit-image and
    matplotlib are not installed: scripts/measure/gpu_kit.py), else scikit-image's and matplotlib's."""
    files = [REPO / "samples" / "cat.jpg", REPO / "samples" / "coffee.jpg"]
    if photos_dir is not None:
        return files + sorted(path for path in Path(photos_dir).iterdir() if path.is_file())
    try:
        import skimage

        data = Path(skimage.__file__).parent / "data"
        files += [data / name for name in ("astronaut.png", "rocket.jpg", "motorcycle_left.png", "camera.png")]
    except ImportError:
        pass
    try:
        import matplotlib

        files.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    return [path for path in files if path.is_file()]


def augmented_jpegs(photos: Sequence[Image.Image], count: int, seed: int = 0) -> list[bytes]:
    """`count` JPEGs: random resized crop (25-100% of the area), flip, colour jitter, quality 75-95."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    jitter = v2.Compose([v2.RandomHorizontalFlip(), v2.ColorJitter(0.3, 0.3, 0.3, 0.05)])
    crops = []
    for index in range(count):
        side = rng.choice(SIDES)
        size = (side, side * 4 // 3) if rng.random() < 0.5 else (side * 4 // 3, side)
        crop = jitter(v2.RandomResizedCrop(size, scale=(0.25, 1.0), antialias=True)(photos[index % len(photos)]))
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=rng.choice((75, 85, 95)))
        crops.append(buffer.getvalue())
    return crops


def probabilities(handler, jpegs: Sequence[bytes], batch: int = 8) -> torch.Tensor:
    """The handler's class probabilities for each JPEG, run in batches as the server would."""
    rows = []
    for start in range(0, len(jpegs), batch):
        rows += handler.predict([handler.decode_request({"body": bytearray(raw)}) for raw in jpegs[start:start + batch]])
    return torch.stack(rows)


def top1_agreement(reference: torch.Tensor, candidate: torch.Tensor) -> tuple[float, list[int]]:
    """Share of rows whose most probable class is the same, and the indices of those that differ."""
    differ = (reference.argmax(dim=1) != candidate.argmax(dim=1)).nonzero().flatten().tolist()
    return 1 - len(differ) / len(reference), differ


def measure(name: str, model_dir: Path, overrides: dict, crops: int, seed: int = 0, gpu_id: int | None = None,
            photos_dir: Path | None = None) -> dict:
    """Agreement of `overrides` on top of the shipped config (on GPU `gpu_id`, if given) with the
    fp32 reference, which always runs on the CPU."""
    files = photo_files(photos_dir)
    photos = [Image.open(path).convert("RGB") for path in files]
    jpegs = augmented_jpegs(photos, crops, seed)
    originals = [path.read_bytes() for path in files]  # the photos as they are, each in its own format
    reference_handler = load_handler(name, model_dir, model_config(name, REFERENCE))
    reference, reference_photos = probabilities(reference_handler, jpegs), probabilities(reference_handler, originals)
    candidate_handler = load_handler(name, model_dir, model_config(name, overrides), gpu_id=gpu_id)
    candidate, candidate_photos = probabilities(candidate_handler, jpegs), probabilities(candidate_handler, originals)
    agreement, differ = top1_agreement(reference, candidate)
    labels = candidate_handler.labels
    return {
        "model": name, "crops": crops, "photos": len(photos), "seed": seed, "agreement": agreement,
        "photo_labels": [{"photo": path.name, "reference": labels[int(ref.argmax())], "candidate": labels[int(cand.argmax())]}
                         for path, ref, cand in zip(files, reference_photos, candidate_photos, strict=True)],
        "candidate": {key: value for key, value in model_config(name, overrides)["handler"].items() if key in REFERENCE},
        "precision_used": candidate_handler.precision, "device": str(candidate_handler.device),
        "disagreements": [_disagreement(reference[i], candidate[i], labels) for i in differ],
    }


def _disagreement(reference: torch.Tensor, candidate: torch.Tensor, labels: Sequence[str]) -> dict:
    top2 = reference.topk(2).values.tolist()
    return {"reference": labels[int(reference.argmax())], "candidate": labels[int(candidate.argmax())],
            "reference_margin": round(top2[0] - top2[1], 4)}


def parse_overrides(pairs: Sequence[str]) -> dict:
    """["precision=fp32", "channels_last=true"] -> {"precision": "fp32", "channels_last": True} (YAML values)."""
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value, got {pair!r}")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--model-dir", type=Path, help="an export (default build/weights/<model>)")
    parser.add_argument("--crops", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override handler settings")
    parser.add_argument("--gpu-id", type=int, help="run the candidate on this GPU (the reference stays on the CPU)")
    parser.add_argument("--photos", type=Path, help="photos besides samples/ (default: scikit-image's and matplotlib's)")
    args = parser.parse_args(argv)
    result = measure(args.model, args.model_dir or Path("build/weights") / args.model,
                     parse_overrides(args.set), args.crops, args.seed, args.gpu_id, args.photos)
    print(f"{result['model']}: {result['candidate']} (running {result['precision_used']} on {result['device']})")
    print(f"top-1 agreement with the fp32 reference: {result['agreement']:.2%} over {result['crops']} augmented "
          f"crops of {result['photos']} photos (seed {result['seed']}); target >= {TARGET:.0%}: "
          f"{'met' if result['agreement'] >= TARGET else 'NOT met'}")
    for item in result["disagreements"]:
        print(f"  differs: reference {item['reference']!r} (margin {item['reference_margin']}) -> {item['candidate']!r}")
    kept = [item for item in result["photo_labels"] if item["reference"] == item["candidate"]]
    print(f"whole photos keeping their fp32 label: {len(kept)}/{len(result['photo_labels'])}")
    for item in result["photo_labels"]:
        if item not in kept:
            print(f"  {item['photo']}: reference {item['reference']!r} -> {item['candidate']!r}")
    return 0 if result["agreement"] >= TARGET and len(kept) == len(result["photo_labels"]) else 1


if __name__ == "__main__":
    sys.exit(main())

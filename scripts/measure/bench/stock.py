"""The stock-handler baseline: the same EfficientNet-Lite0 weights under TorchServe's `image_classifier`.

What a user following TorchServe's own image-classifier example gets: per-image PIL decode and
torchvision transforms, fp32, NCHW, eager, torch's default thread count (the stock handler sets
none). Its archives are built in the benchmark's temporary model store, never in model-store/,
and served with the shipped model's batching: with one worker, and with the shipped number of
workers if that is more; the ratio compares against the faster of the two.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

import torch
import yaml
from tqdm import tqdm

from handlers.weights import load_state_dict, read_metadata
from scripts.build.extra import build_packages
from scripts.client.torchserve import Client
from scripts.measure.bench.plan import IMAGE, Plan, shipped
from scripts.measure.bench.served import load_cell, registered
from scripts.measure.bench.top1 import served_top1

with build_packages():  # the stock archive is built here: the archiver is the `build` extra's
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

STOCK_NAME = "stock_lite0"
MODEL_FILE = Path(__file__).with_name("stock_model.py")


def build_stock_archive(export_dir: Path, model_store: Path, batch_size: int, max_batch_delay: int, workers: int = 1) -> Path:
    """model_store/stock_lite0_w<workers>.mar from an efficientnet_lite0 export, with the given batching."""
    metadata = read_metadata(export_dir)
    labels = json.loads((export_dir / "labels.json").read_text())
    name = f"{STOCK_NAME}_w{workers}"
    with tempfile.TemporaryDirectory(prefix="stock-") as stage:
        stage_path = Path(stage)
        weights = stage_path / "stock_lite0.pth"
        torch.save({f"net.{key}": value for key, value in load_state_dict(export_dir, metadata).items()}, weights)
        (stage_path / "index_to_name.json").write_text(json.dumps({str(i): label for i, label in enumerate(labels)}))
        config = {"minWorkers": workers, "maxWorkers": workers, "batchSize": batch_size, "maxBatchDelay": max_batch_delay,
                  "responseTimeout": 60}
        (stage_path / "model-config.yaml").write_text(yaml.safe_dump(config))
        generate_model_archive(ModelArchiverConfig(
            model_name=name, handler="image_classifier", version="1.0", model_file=str(MODEL_FILE),
            serialized_file=str(weights), extra_files=str(stage_path / "index_to_name.json"),
            config_file=str(stage_path / "model-config.yaml"), export_path=str(model_store), force=True,
        ))
    return model_store / f"{name}.mar"


def stock_rows(client: Client, plan: Plan, body: bytes, model_store: Path, export_dir: Path,
               photos: Sequence[Path]) -> tuple[list[dict], dict[str, str]]:
    """TorchServe's stock image_classifier on the same weights and batching as the shipped model, and
    its top-1 label on each photo."""
    ship = shipped(IMAGE)
    batch, delay = ship["batch_size"], ship["max_batch_delay"]
    rows, labels = [], {}
    for workers in sorted({1, ship["workers"]}):
        mar = build_stock_archive(export_dir, model_store, batch, delay, workers)
        settings = {"batch_size": batch, "max_batch_delay": delay, "workers": workers, "threads": None}
        with registered(client, mar.name, mar.stem, batch, delay, workers) as name:
            for concurrency in tqdm(plan.variant_concurrencies, desc=f"image, stock handler, {workers} worker(s)"):
                rows.append(load_cell(client, name, body, settings, concurrency, plan.requests, plan.wrk_seconds))
            labels = labels or served_top1(client, name, photos)
    return rows, labels

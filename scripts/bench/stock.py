"""The stock-handler baseline: the same EfficientNet-Lite0 weights under TorchServe's `image_classifier`.

What a user following TorchServe's own image-classifier example gets: per-image PIL decode and
torchvision transforms, fp32, NCHW, eager. Its archive is built in a temporary folder for each
benchmark run, never in model-store/, and served with the shipped model's batching.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import yaml
from model_archiver.model_archiver_config import ModelArchiverConfig
from model_archiver.model_packaging import generate_model_archive
from tqdm import tqdm

from handlers.weights import load_state_dict, read_metadata
from scripts.bench.plan import IMAGE, Plan, shipped
from scripts.bench.served import load_cell, registered
from scripts.torchserve import Client

STOCK_NAME = "stock_lite0"
MODEL_FILE = Path(__file__).with_name("stock_model.py")


def build_stock_archive(export_dir: Path, model_store: Path, batch_size: int, max_batch_delay: int) -> Path:
    """model_store/stock_lite0.mar from an efficientnet_lite0 export, with the given batching."""
    metadata = read_metadata(export_dir)
    labels = json.loads((export_dir / "labels.json").read_text())
    with tempfile.TemporaryDirectory(prefix="stock-") as stage:
        stage_path = Path(stage)
        weights = stage_path / "stock_lite0.pth"
        torch.save({f"net.{key}": value for key, value in load_state_dict(export_dir, metadata).items()}, weights)
        (stage_path / "index_to_name.json").write_text(json.dumps({str(i): label for i, label in enumerate(labels)}))
        config = {"minWorkers": 1, "maxWorkers": 1, "batchSize": batch_size, "maxBatchDelay": max_batch_delay,
                  "responseTimeout": 60}
        (stage_path / "model-config.yaml").write_text(yaml.safe_dump(config))
        generate_model_archive(ModelArchiverConfig(
            model_name=STOCK_NAME, handler="image_classifier", version="1.0", model_file=str(MODEL_FILE),
            serialized_file=str(weights), extra_files=str(stage_path / "index_to_name.json"),
            config_file=str(stage_path / "model-config.yaml"), export_path=str(model_store), force=True,
        ))
    return model_store / f"{STOCK_NAME}.mar"


def stock_rows(client: Client, plan: Plan, body: bytes, model_store: Path, export_dir: Path) -> list[dict]:
    """TorchServe's stock image_classifier on the same weights and batching as the shipped model."""
    ship = shipped(IMAGE)
    batch, delay = ship["batch_size"], ship["max_batch_delay"]
    build_stock_archive(export_dir, model_store, batch, delay)
    rows = []
    with registered(client, f"{STOCK_NAME}.mar", STOCK_NAME, batch, delay) as name:
        for concurrency in tqdm(plan.stock_concurrencies, desc="image, stock handler"):
            rows.append(load_cell(client, name, body, "application/octet-stream", (batch, delay, concurrency), plan.requests,
                                  plan.wrk_seconds))
    return rows

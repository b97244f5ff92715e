"""The real handler with a TorchServe context, no server: what ts.service.Service does per batch.

`make_context` builds ts.context.Context as the model loader does (manifest, model-config.yaml,
the worker's metrics cache); `serve` fills in one RequestProcessor per request, calls
handler.handle, checks each body is compact JSON bytes, and reads back each request's (parsed)
body, status and content type.
"""

from __future__ import annotations

import json
import os
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import ts
import yaml
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from handlers.image_classifier import ImageClassifier
from models.registry import get_spec

METRICS_YAML = Path(ts.__file__).parent / "configs" / "metrics.yaml"


@dataclass
class Reply:
    body: Any
    status: int
    content_type: str | None


def _make_context(model_dir: Path, yaml_config: dict | None = None, gpu_id: int | None = None) -> Context:
    manifest_file = Path(model_dir) / "MAR-INF" / "MANIFEST.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
    if yaml_config is None and manifest:
        yaml_config = yaml.safe_load((Path(model_dir) / manifest["model"]["configFile"]).read_text())
    metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
    metrics.initialize_cache()
    metrics.model_name = Path(model_dir).name
    metrics.set_request_ids(str(uuid.uuid4()))
    return Context(
        Path(model_dir).name, str(model_dir), manifest, int((yaml_config or {}).get("batchSize", 1)), gpu_id, ts.__version__,
        metrics=metrics, model_yaml_config=yaml_config or {},
    )


def _serve(handler, context: Context, requests: list[dict], headers: list[dict] | None = None) -> list[Reply]:
    """One TorchServe batch: fresh per-request processors (with `headers`, one dict per request, shaped
    as ts.service builds them) and ids, then handle()."""
    context.request_ids = {idx: str(uuid.uuid4()) for idx in range(len(requests))}
    context.request_processor = [RequestProcessor(dict(h)) for h in (headers or [{} for _ in requests])]
    context.metrics.request_ids = context.request_ids
    bodies = handler.handle(requests, context)
    assert isinstance(bodies, list) and len(bodies) == len(requests), "one response per request"
    assert all(isinstance(body, bytes) for body in bodies), "JSON bytes, which TorchServe sends as they are"
    parsed = [json.loads(body) for body in bodies]
    assert bodies == [orjson.dumps(body) for body in parsed], "compact: no indentation, no spaces"
    return [
        Reply(body, context.get_response_status(idx)[0], context.get_response_content_type(idx))
        for idx, body in enumerate(parsed)
    ]


MODEL_DIR_ENV = "BUNDLE_TEST_MODEL_DIR"
"""An efficientnet_lite0.mar already unpacked: how a GPU host without the `build` extra runs the GPU tests
(scripts/measure/gpu_kit.py)."""


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """efficientnet_lite0.mar built from the real packaged weights, unpacked as TorchServe does
    (or the unpacked archive $BUNDLE_TEST_MODEL_DIR names)."""
    if os.environ.get(MODEL_DIR_ENV):
        return Path(os.environ[MODEL_DIR_ENV])
    from scripts.build.archives import build_archive
    from scripts.build.weights import export

    root = tmp_path_factory.mktemp("efficientnet_lite0")
    weights = export(get_spec("efficientnet_lite0"), root / "weights").parent
    mar = build_archive("efficientnet_lite0", weights, root / "model-store")
    unpacked = root / "model_dir"
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(unpacked)
    return unpacked


@pytest.fixture(scope="session")
def classifier_context(model_dir) -> Context:
    return _make_context(model_dir)


@pytest.fixture(scope="session")
def classifier(classifier_context) -> ImageClassifier:
    handler = ImageClassifier()
    handler.initialize(classifier_context)
    return handler


@pytest.fixture(scope="session")
def make_context():
    """make_context(model_dir, yaml_config=None, gpu_id=None) -> ts.context.Context"""
    return _make_context


@pytest.fixture(scope="session")
def serve():
    """serve(handler, context, requests) -> [Reply(body, status, content_type)], one per request"""
    return _serve

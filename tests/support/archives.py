"""Copies of the real archives with one setting changed, for tests that need a model to behave otherwise."""

from __future__ import annotations

import json
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml


def with_job_queue(source: Path, target: Path, size: int) -> Path:
    """`source` (a .mar) copied to `target` with jobQueueSize `size` in its model-config.yaml."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        config_file = json.loads(original.read("MAR-INF/MANIFEST.json"))["model"]["configFile"]
        for entry in original.infolist():
            data = original.read(entry)
            if entry.filename == config_file:
                data = yaml.safe_dump({**yaml.safe_load(data), "jobQueueSize": size}).encode()
            copy.writestr(entry, data)
    return target


@contextmanager
def queue_limited_model(server, model_store: Path, source: str, name: str, size: int) -> Iterator[str]:
    """`source`'s archive registered on `server` as `name` with jobQueueSize `size`, one worker and one
    request per batch, so that a few requests at once fill its queue; unregistered and deleted after."""
    archive = with_job_queue(model_store / f"{source}.mar", model_store / f"{name}.mar", size)
    params = {"url": archive.name, "model_name": name, "batch_size": 1, "initial_workers": 1, "synchronous": "true"}
    response = server.manage("POST", "/models", params=params)
    assert response.status_code == 200, response.text
    try:
        yield name
    finally:
        assert server.manage("DELETE", f"/models/{name}").status_code == 200
        archive.unlink()

"""Copies of the real archives with one setting changed, for tests that need a model to behave otherwise."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

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

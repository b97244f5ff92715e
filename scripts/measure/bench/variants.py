"""Variant archives: the shipped .mar with only its model-config.yaml changed.

The management API's registration sets batch size and delay, but not what the handler reads
(`handler:` settings such as `runtime` or `threads`), and the archive's minWorkers wins over
`initial_workers`. So the torch path and each workers x threads layout get a copy of the shipped
archive in which that one file differs: the same weights, ONNX model and handler code, byte for
byte. Entries are stored, not deflated again (the weights hardly compress; a 166 MB copy takes
well under a second).
"""

from __future__ import annotations

import copy
import json
import zipfile
from pathlib import Path
from typing import Any, Mapping

import yaml

MANIFEST = "MAR-INF/MANIFEST.json"


def variant_config(config: Mapping[str, Any], workers: int, threads: int, **handler: Any) -> dict:
    """`config` with exactly `workers` workers of `threads` threads each, and these handler settings."""
    variant = copy.deepcopy(dict(config))
    variant["minWorkers"] = variant["maxWorkers"] = workers
    variant["handler"] = {**variant.get("handler", {}), "threads": threads, **handler}
    return variant


def archive_config(mar: Path) -> dict:
    """The model-config.yaml inside an archive (the manifest names it)."""
    with zipfile.ZipFile(mar) as archive:
        name = json.loads(archive.read(MANIFEST))["model"]["configFile"]
        return yaml.safe_load(archive.read(name))


def write_variant(mar: Path, dest: Path, config: Mapping[str, Any]) -> Path:
    """dest: a copy of `mar` whose model-config.yaml is `config`."""
    with zipfile.ZipFile(mar) as source, zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        name = json.loads(source.read(MANIFEST))["model"]["configFile"]
        for info in source.infolist():
            if not info.is_dir():
                out.writestr(info.filename, yaml.safe_dump(dict(config), sort_keys=False) if info.filename == name
                             else source.read(info))
    return dest

"""scripts.build.workflow: the .war is reproducible and carries the handlers package."""

from __future__ import annotations

import hashlib
import zipfile

from scripts.build.workflow import DEFAULT_SPEC, build_workflow


def test_war_is_reproducible_and_carries_the_handlers_package(tmp_path):
    first = build_workflow(DEFAULT_SPEC, tmp_path / "a")
    second = build_workflow(DEFAULT_SPEC, tmp_path / "b")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    names = zipfile.ZipFile(first).namelist()
    assert {"WAR-INF/MANIFEST.json", "photo_embedding.yaml", "workflow_nodes.py", "handlers/vision.py",
            "handlers/errors.py"} <= set(names)
    assert not any("__pycache__" in name for name in names)

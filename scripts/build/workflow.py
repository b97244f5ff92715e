"""Package a workflow into a reproducible TorchServe workflow archive: wf-store/<name>.war.

    python -m scripts.build.workflow                     # workflows/photo_embedding.yaml
    python -m scripts.build.workflow workflows/other.yaml --wf-store wf-store

The archive holds the spec, the function-node file (handlers/workflow_nodes.py) and the
handlers/ package it imports; the models it names are the .mar files of the model store,
resolved when the workflow is registered. torch-workflow-archiver copies only flat files, so
handlers/ is added while the archive is normalised (sorted entries, fixed timestamps and
manifest date: the same sources give a byte-identical .war).
"""

from __future__ import annotations

import argparse
import sys
from argparse import Namespace
from pathlib import Path

from handlers.weights import sha256_file
from scripts.build.archives import REPO, handler_sources, normalize_zip, private_tempdir
from scripts.build.extra import build_packages

with build_packages():  # the runtime image has no archiver: one line that names the `build` extra
    from workflow_archiver.workflow_packaging import package_workflow
    from workflow_archiver.workflow_packaging_utils import WorkflowExportUtils

DEFAULT_SPEC = REPO / "workflows" / "photo_embedding.yaml"
NODES_FILE = REPO / "handlers" / "workflow_nodes.py"
CREATED_ON = "1980-01-01T00:00:00"  # nothing time-dependent goes in: the sources are the version
MANIFEST = "WAR-INF/MANIFEST.json"


def build_workflow(spec: Path, wf_store: Path, nodes: Path = NODES_FILE) -> Path:
    """Build wf_store/<spec stem>.war and return its path."""
    name = spec.stem
    wf_store.mkdir(parents=True, exist_ok=True)
    args = Namespace(workflow_name=name, spec_file=str(spec), handler=str(nodes),
                     export_path=str(wf_store), extra_files=None, force=True)
    with private_tempdir(name):  # the archiver stages in gettempdir()/<name>, deleting it first
        package_workflow(args, WorkflowExportUtils.generate_manifest_json(args))
    war = wf_store / f"{name}.war"
    normalize_zip(war, CREATED_ON, manifest=MANIFEST, extra=handler_sources())
    return war


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", type=Path, default=[DEFAULT_SPEC])
    parser.add_argument("--wf-store", type=Path, default=Path("wf-store"))
    args = parser.parse_args(argv)
    for spec in args.specs:
        war = build_workflow(spec, args.wf_store)
        print(f"{sha256_file(war)}  {war}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Package exported weights into reproducible TorchServe archives: model-store/<name>.mar.

    python -m scripts.build.archives efficientnet_lite0
    python -m scripts.build.archives mynet --config my-model-config.yaml   # your own model

Each archive holds the handler file, the handlers/ package, the weights and everything else in
build/weights/<name>/ (metadata.json, labels.json ...), and model-config.yaml.

Reproducible: zip entries are written in sorted order with a fixed timestamp, and the manifest's
createdOn is the export's created_at, so the same inputs give a byte-identical .mar
(compare `sha256sum model-store/*.mar` across two builds; tests/tooling/test_build_archives.py does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Iterator

import yaml

from handlers.config import ImageSettings, TextSettings
from handlers.weights import read_metadata, sha256_file
from models.registry import CONFIG_DIR, DEFAULT_MODEL, IMAGE_HANDLER, REGISTRY, TEXT_HANDLER
from scripts.build import model_config
from scripts.build.extra import build_packages

with build_packages():  # the runtime image has no archiver: one line that names the `build` extra
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

REPO = Path(__file__).resolve().parents[2]
HANDLERS_DIR = REPO / "handlers"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
MANIFEST = "MAR-INF/MANIFEST.json"
HANDLER_SETTINGS = {IMAGE_HANDLER: ImageSettings, TEXT_HANDLER: TextSettings}
"""The settings each of the bundle's handlers parses its `handler:` section into (another handler: unchecked)."""


def build_archive(
    name: str,
    weights_dir: Path,
    model_store: Path,
    version: str = "1.0",
    config: Path | None = None,
    handler: str | None = None,
) -> Path:
    """Build model_store/<name>.mar from weights_dir/<name>/ and return its path."""
    folder = weights_dir / name
    metadata = read_metadata(folder)
    spec = REGISTRY.get(name)
    config = config or (spec.config_path if spec else CONFIG_DIR / "custom_image.yaml")
    handler = handler or (spec.handler if spec else IMAGE_HANDLER)
    settings_class = spec.settings_class if spec and handler == spec.handler else HANDLER_SETTINGS.get(handler)
    model_config.check(yaml.safe_load(Path(config).read_text()), settings_class, str(config))  # before TorchServe misreads it
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{name}-stage-") as stage:
        stage_path = stage_extra_files(folder, metadata["weights_file"], Path(stage))
        with private_tempdir(name):
            generate_model_archive(
                ModelArchiverConfig(
                    model_name=name,
                    handler=str(REPO / handler),
                    version=version,
                    serialized_file=str(folder / metadata["weights_file"]),
                    extra_files=str(stage_path),
                    config_file=str(config),
                    export_path=str(model_store),
                    force=True,
                )
            )
    mar = model_store / f"{name}.mar"
    normalize_zip(mar, created_on=metadata["created_at"])
    return mar


@contextlib.contextmanager
def private_tempdir(name: str) -> Iterator[None]:
    """The model and workflow archivers copy the files to <tempdir>/<name>, deleting that folder
    first: two builds of one name at once (`make archive` beside `make test`) delete each
    other's files. This points Python's tempdir at a folder of this build's own meanwhile."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-archiver-") as private:
        tempfile.tempdir, previous = private, tempfile.tempdir
        try:
            yield
        finally:
            tempfile.tempdir = previous


def stage_extra_files(folder: Path, weights_file: str, stage: Path) -> Path:
    """Copy handlers/*.py (no caches) and the export's side files into one folder to archive."""
    (stage / "handlers").mkdir()
    for name, content in handler_sources().items():
        (stage / name).write_bytes(content)
    for source in sorted(folder.iterdir()):
        if source.is_file() and source.name != weights_file:
            shutil.copyfile(source, stage / source.name)
    return stage


def normalize_zip(path: Path, created_on: str, manifest: str = MANIFEST, extra: dict[str, bytes] | None = None) -> None:
    """Rewrite the archive with sorted entries, fixed timestamps and a deterministic manifest.

    `extra` adds entries (path in the archive -> content) the archiver cannot place itself.
    """
    with zipfile.ZipFile(path) as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()}
    entries.update(extra or {})
    fields = json.loads(entries[manifest])
    fields["createdOn"] = datetime.fromisoformat(created_on).strftime("%d/%m/%Y %H:%M:%S")
    entries[manifest] = json.dumps(fields, indent=2, sort_keys=True).encode()
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, entries[name])
    tmp.replace(path)


def handler_sources() -> dict[str, bytes]:
    """handlers/*.py as archive entries under handlers/ (sources only, no caches)."""
    return {f"handlers/{source.name}": source.read_bytes() for source in sorted(HANDLERS_DIR.glob("*.py"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=[DEFAULT_MODEL])
    parser.add_argument("--weights-dir", type=Path, default=Path("build/weights"))
    parser.add_argument("--model-store", type=Path, default=Path("model-store"))
    parser.add_argument("--version", default="1.0", help="model version recorded in the archive")
    parser.add_argument("--config", type=Path, help="model-config.yaml (default: the registry's)")
    parser.add_argument("--handler", help="handler file, relative to the repo (default: image classifier)")
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            mar = build_archive(name, args.weights_dir, args.model_store, args.version, args.config, args.handler)
            print(f"{sha256_file(mar)}  {mar}")
    except Exception as exc:  # a CLI: one clear line instead of a traceback
        print(f"build_archives: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

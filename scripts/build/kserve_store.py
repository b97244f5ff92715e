"""The storage layout KServe's TorchServe runtimes expect, from the archives `make archive` built.

    python -m scripts.build.kserve_store --models efficientnet_lite0 minilm   # make kserve-store -> build/kserve/

    build/kserve/config/config.properties   deploy/kserve/config.properties, load_models set to --models
    build/kserve/model-store/<model>.mar    copied from --model-store

KServe mounts <storageUri> at /mnt/models; the runtime (deploy/kserve/base/servingruntime.yaml)
reads the config and the store there. The folder is made afresh, so an archive dropped from
--models does not linger in it. docs/kserve.md copies it into the claim.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "kserve" / "config.properties"
LOAD_MODELS = re.compile(r"^load_models=.*$", flags=re.M)


def config_for(models: list[str], template: str) -> str:
    """The template with load_models naming exactly `models` (name=name.mar: the v2 model names)."""
    if len(LOAD_MODELS.findall(template)) != 1:
        raise SystemExit(f"kserve_store: {CONFIG} must have one load_models= line")
    return LOAD_MODELS.sub("load_models=" + ",".join(f"{m}={m}.mar" for m in models), template)


def build(models: list[str], model_store: Path, out: Path, template: Path = CONFIG) -> list[Path]:
    """Write the layout under `out`; returns the copied archives. Missing archives stop it first."""
    missing = [m for m in models if not (model_store / f"{m}.mar").is_file()]
    if missing:
        raise SystemExit(f"kserve_store: no {', '.join(f'{m}.mar' for m in missing)} in {model_store}: run `make archive` first")
    for folder in ("config", "model-store"):
        shutil.rmtree(out / folder, ignore_errors=True)
        (out / folder).mkdir(parents=True)
    (out / "config" / "config.properties").write_text(config_for(models, template.read_text()))
    return [Path(shutil.copy2(model_store / f"{m}.mar", out / "model-store")) for m in models]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--model-store", type=Path, default=REPO / "model-store")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "kserve")
    args = parser.parse_args(argv)
    archives = build(args.models, args.model_store, args.out)
    size = sum(a.stat().st_size for a in archives) / 2**20
    print(f"kserve-store: {args.out}: config/config.properties, model-store/ ({len(archives)} archives, {size:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

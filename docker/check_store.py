"""Fail the image build when its stores cannot serve: run by the Dockerfile after `make archive`.

    python docker/check_store.py --model-store model-store --wf-store wf-store \
        --models efficientnet_lite0 minilm --workflows photo_embedding

Every model asked for has its <name>.mar, every workflow its <name>.war, and every .mar that a
workflow's spec names is in the model store (TorchServe registers them from there; a missing one
fails the workflow only at start, after the image has shipped). Standard library only, except yaml
for the workflow spec, which the build has.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

import yaml


def workflow_archives(war: Path) -> set[str]:
    """The .mar names a workflow archive's spec lists under `models:`."""
    with zipfile.ZipFile(war) as archive:
        specs = [n for n in archive.namelist() if n.endswith((".yaml", ".yml")) and "/" not in n.strip("/")]
        models = {}
        for spec in specs:
            models |= (yaml.safe_load(archive.read(spec)) or {}).get("models", {}) or {}
    return {value["url"] for value in models.values() if isinstance(value, dict) and "url" in value}


def problems(model_store: Path, wf_store: Path, models: list[str], workflows: list[str]) -> list[str]:
    found = []
    mars = {path.name for path in model_store.glob("*.mar")}
    if not mars:
        found.append(f"the model store {model_store} holds no .mar (MODELS was empty?)")
    found += [f"{model_store}/{name}.mar is missing" for name in models if f"{name}.mar" not in mars]
    for name in workflows:
        war = wf_store / f"{name}.war"
        if not war.is_file():
            found.append(f"{war} is missing")
            continue
        found += [f"workflow {name} needs {url}, which is not in {model_store}"
                  for url in sorted(workflow_archives(war)) if url not in mars]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-store", type=Path, required=True)
    parser.add_argument("--wf-store", type=Path, required=True)
    parser.add_argument("--models", nargs="*", default=[])
    parser.add_argument("--workflows", nargs="*", default=[])
    args = parser.parse_args(argv)
    found = problems(args.model_store, args.wf_store, args.models, args.workflows)
    for problem in found:
        print(f"check_store: {problem}", file=sys.stderr)
    if not found:
        print(f"check_store: {sorted(p.name for p in args.model_store.glob('*.mar'))} "
              f"{sorted(p.name for p in args.wf_store.glob('*.war'))}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

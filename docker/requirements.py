"""pyproject.toml's pinned lists, one per line, for the image's stages to install.

    python docker/requirements.py serve pyproject.toml    # [project] dependencies: what serving imports (runtime)
    python docker/requirements.py build pyproject.toml    # the `build` extra: weights and archivers (builder)
    python docker/requirements.py gpu pyproject.toml      # the `gpu` extra: nvgpu (GPU image)

One pinned list stays in pyproject.toml; the `build` extra holds what the running server never
imports (the weights packages, which pull in sentence-transformers, scikit-learn and scipy; the
archivers; onnx), so the runtime image is the base dependencies alone. Standard library only: it
runs in the image's bare Python before anything is installed.
"""

from __future__ import annotations

import sys
import tomllib


def requirements(project: dict, which: str) -> list[str]:
    """`serve`: the base dependencies; any other name: that extra of pyproject.toml."""
    if which == "serve":
        return project["dependencies"]
    extras = project["optional-dependencies"]
    if which not in extras:
        raise SystemExit(f"requirements: pyproject.toml has no extra {which!r} (it has {sorted(extras)})")
    return extras[which]


def main(argv: list[str]) -> int:
    which, path = argv
    with open(path, "rb") as file:
        project = tomllib.load(file)["project"]
    print("\n".join(requirements(project, which)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

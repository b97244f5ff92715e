"""Every test is marked by its tier, the folder it lives in (tests/unit -> `unit`); and the
fixtures shared by the tiers: two real photos and an in-memory encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from PIL import Image

from tests.support.images import encode_image

TESTS = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's name, a marker pyproject.toml must declare."""
    declared = {line.split(":")[0].strip() for line in config.getini("markers")}
    for item in items:
        path = Path(item.path)
        if not path.is_relative_to(TESTS):
            continue
        tier = path.relative_to(TESTS).parts[0]
        if tier not in declared:
            raise pytest.UsageError(
                f"{item.nodeid}: tests/{tier} is not a tier. Put the test in a tier's folder, or declare "
                f'the tier under [tool.pytest.ini_options] markers in pyproject.toml ("{tier}: ...").'
            )
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    """A tabby cat, 451x300 RGB (scikit-image's bundled data: no download)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    """A cup of espresso, 600x400 RGB."""
    from skimage import data

    return Image.fromarray(data.coffee())


@pytest.fixture(scope="session")
def encode() -> Callable[..., bytes]:
    """encode(image, "PNG", **save_args) -> the encoded bytes."""
    return encode_image

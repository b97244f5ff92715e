"""models.imagenet: 1,000 class names, each unique, in index order."""

from __future__ import annotations

import pytest

from models.imagenet import imagenet_labels, unique_labels


@pytest.mark.parametrize(
    "names, expected",
    [
        ([], []),
        (["cat", "dog"], ["cat", "dog"]),
        (["crane", "cat", "crane"], ["crane (0)", "cat", "crane (2)"]),
        (["a", "a", "a"], ["a (0)", "a (1)", "a (2)"]),
        (["x", "y", "x", "y"], ["x (0)", "y (1)", "x (2)", "y (3)"]),
    ],
)
def test_unique_labels(names, expected):
    assert unique_labels(names) == expected


def test_imagenet_labels():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert len(set(labels)) == 1000
    assert labels[0] == "tench" and labels[281] == "tabby" and labels[967] == "espresso"
    # ImageNet's two cranes (bird, machine) and two maillots keep distinct names
    assert "crane" in labels[134] and "crane" in labels[517] and labels[134] != labels[517]
    assert "maillot" in labels[638] and "maillot" in labels[639] and labels[638] != labels[639]

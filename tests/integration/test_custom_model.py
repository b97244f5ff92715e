"""Bring your own model: train a small net on scikit-learn's digits, archive it with the README's
`make archive-custom`, register it on the running server, and check its predictions."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.client.torchserve import REPO
from tests.integration.conftest import encode

DIGITS_CONFIG = """\
minWorkers: 1
maxWorkers: 1
batchSize: 4
maxBatchDelay: 10
responseTimeout: 30
deviceType: cpu
handler:
  topk: 3
  resize: 8
  crop: 8
  mean: [0.5, 0.5, 0.5]
  std: [0.5, 0.5, 0.5]
"""


def digit_images(pixels: np.ndarray) -> list[Image.Image]:
    """sklearn digits are 0..16 grey levels; as 8-bit grayscale PNG-able images."""
    return [Image.fromarray(np.round(p.reshape(8, 8) * 255 / 16).astype(np.uint8), "L") for p in pixels]


def as_model_input(images: list[Image.Image]) -> torch.Tensor:
    """What the handler feeds the model: RGB, scaled to [0, 1], normalised with mean/std 0.5."""
    arrays = np.stack([np.asarray(img.convert("RGB"), dtype=np.float32) / 255 for img in images])
    return (torch.from_numpy(arrays).permute(0, 3, 1, 2) - 0.5) / 0.5


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    from tests.integration.digits_net import DigitsNet

    data = load_digits()
    images, targets = digit_images(data.data), torch.tensor(data.target)
    train, test = slice(0, 1500), slice(1500, None)
    torch.manual_seed(0)
    model, inputs = DigitsNet(), as_model_input(images[train])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets[train]).backward()
        optimizer.step()
    return model, images[test], targets[test].tolist(), tmp_path_factory.mktemp("digits")


@pytest.fixture(scope="module")
def digits_archive(digits, model_store):
    model, _, _, work = digits
    torch.save(model.state_dict(), work / "digits.pth")
    (work / "labels.txt").write_text("\n".join(f"digit {d}" for d in range(10)))
    (work / "digits.yaml").write_text(DIGITS_CONFIG)
    command = [
        "make", "--no-print-directory", "archive-custom", "NAME=digits",
        f"MODEL_FILE={REPO / 'tests/integration/digits_net.py'}", "MODEL_CLASS=DigitsNet",
        f"STATE_DICT={work / 'digits.pth'}", f"LABELS={work / 'labels.txt'}", f"MODEL_CONFIG={work / 'digits.yaml'}",
        f"WEIGHTS_DIR={work / 'weights'}", f"MODEL_STORE={model_store}",
        f"PY={sys.executable}", "STAMP=",  # reuse this interpreter; the suite already runs in the venv
    ]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return model_store / "digits.mar"


def test_own_model_is_archived_registered_and_served(server, digits, digits_archive):
    _, images, targets, _ = digits
    response = server.manage("POST", "/models", params={"url": digits_archive.name, "initial_workers": 1, "synchronous": "true"})
    assert response.status_code == 200, response.text
    try:
        predicted = [next(iter(server.predict("digits", data=encode(img, "PNG")).json())) for img in images[:60]]
        accuracy = np.mean([p == f"digit {t}" for p, t in zip(predicted, targets[:60], strict=True)])
        assert accuracy >= 0.9, predicted
    finally:
        assert server.manage("DELETE", "/models/digits").status_code == 200
    assert server.manage("GET", "/models/digits").status_code == 404

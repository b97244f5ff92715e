"""A request's work is bounded by what it costs, not by its size on the wire (issue: request cost).

Through the real server: a 50-megapixel phone JPEG is served (decoded at 1/8 scale), a small PNG
that would decode to 40 megapixels is a 413 that names the limit, and a text far over the
character budget is cut before tokenizing and says "truncated".
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.integration.corpus import CATS
from tests.support.images import encode_image

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("settled")]

def test_a_50_megapixel_phone_jpeg_is_served(server, chelsea):
    phone = chelsea.resize((8160, 6120), Image.Resampling.BILINEAR)  # a Samsung 50 Mpx frame
    response = server.predict("efficientnet_lite0", data=encode_image(phone, "JPEG", quality=90))
    assert response.status_code == 200, response.text
    assert next(iter(response.json())) in CATS


def test_a_png_that_decodes_to_40_megapixels_is_refused_by_name(server):
    gradient = np.linspace(0, 255, 6300, dtype=np.uint8)
    image = Image.fromarray(np.broadcast_to(gradient, (6300, 6300)).copy()).convert("RGB")
    body = encode_image(image, "PNG")
    assert len(body) < 2_000_000  # cheap to send: what it would cost is the decode
    response = server.predict("efficientnet_lite0", data=body, headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "6300x6300" in response.json()["detail"] and "max_decoded_pixels" in response.json()["detail"]


def test_a_text_over_the_character_budget_is_cut_and_says_so(server):
    head = "The match ended with a late goal for the home team. "
    texts = [head + "x" * 19_000, head]
    response = server.predict("minilm", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] == [True, False]
    assert len(body["embeddings"]) == 2 and len(body["embeddings"][0]) == 384

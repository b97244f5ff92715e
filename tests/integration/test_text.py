"""minilm through the real server: similarity, zero-shot, body encodings, batching and bad input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from scripts.client.torchserve import REPO
from tests.integration.recipes import agrees, documented_recipes, documented_value, parsed, run_recipe

MODEL = "minilm"
BATCHED = "batched_minilm"
JSON = {"Content-Type": "application/json"}
PLAIN = {"Content-Type": "text/plain; charset=utf-8"}
LABELS = ["sports", "finance", "cooking", "politics", "technology"]


def embed(server, text: str, model: str = MODEL) -> torch.Tensor:
    response = server.predict(model, json={"text": text})
    assert response.status_code == 200, response.text
    assert response.json()["truncated"] is False
    return torch.tensor(response.json()["embedding"])


def test_similar_sentences_are_close_and_unrelated_ones_are_not(server):
    food = embed(server, "A man is eating food.")
    bread = embed(server, "A man is eating a piece of bread.")
    stocks = embed(server, "The stock market fell sharply today.")
    assert food.shape == (384,) and abs(food.norm().item() - 1) < 1e-4
    assert food @ bread > 0.6
    assert food @ stocks < 0.2


def test_json_with_a_byte_order_mark_is_read_as_json(server):
    """PowerShell writes JSON files with a BOM; TorchServe's json.loads refuses it and the handler reads it."""
    with_bom = server.predict(MODEL, data=b'\xef\xbb\xbf{"text": "A man is eating food."}', headers=JSON)
    assert with_bom.status_code == 200, with_bom.text
    assert torch.tensor(with_bom.json()["embedding"]) @ embed(server, "A man is eating food.") > 1 - 1e-5


def test_a_list_of_texts_and_a_plain_text_body(server):
    texts = ["A man is eating food.", "Ünïcödé and 東京 survive the trip."]
    response = server.predict(MODEL, json={"texts": texts})
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert len(body["embeddings"]) == 2 and body["truncated"] == [False, False]
    plain = server.predict(MODEL, data=texts[1].encode(), headers=PLAIN)
    assert plain.status_code == 200
    assert torch.tensor(plain.json()["embedding"]) @ torch.tensor(body["embeddings"][1]) > 1 - 1e-5


@pytest.mark.parametrize(
    "text, label",
    [
        ("The striker scored twice in the second half and the crowd went wild.", "sports"),
        ("The central bank raised interest rates by half a point to fight inflation.", "finance"),
        ("Simmer the onions in butter until golden, then add the garlic.", "cooking"),
        ("The senate passed the bill after a long debate.", "politics"),
        ("The new phone has a faster chip and a better camera.", "technology"),
    ],
)
def test_zero_shot_picks_the_right_label(server, text, label):
    response = server.predict(MODEL, json={"text": text, "labels": LABELS})
    assert response.status_code == 200, response.text
    ranked = response.json()["labels"]
    assert ranked[0]["label"] == label, ranked
    assert [entry["score"] for entry in ranked] == sorted((entry["score"] for entry in ranked), reverse=True)


def test_long_text_is_truncated_and_says_so(server):
    response = server.predict(MODEL, json={"text": "word " * 600})
    assert response.status_code == 200
    assert response.json()["truncated"] is True


@pytest.fixture(scope="module")
def batched_model(server):
    """minilm registered again with a long batch delay, so concurrent requests share a batch."""
    params = f"url=minilm.mar&model_name={BATCHED}&batch_size=8&max_batch_delay=500&initial_workers=1&synchronous=true"
    assert server.manage("POST", f"/models?{params}").status_code == 200
    yield BATCHED
    assert server.manage("DELETE", f"/models/{BATCHED}").status_code == 200


BATCH = [
    ({"text": "A man is eating food."}, 200),
    ({"texts": ["Hi", "The quarterly report shows revenue growth of twelve percent, driven by subscriptions."]}, 200),
    ({"text": ""}, 400),
    ({"text": "The senate passed the bill after a long debate.", "labels": LABELS}, 200),
    ({"texts": "not a list"}, 400),
    ({"text": "Two dogs are running through a field of tall grass."}, 200),
    ({"texts": ["x"] * 65}, 413),
    ({"text": "Photosynthesis converts light energy into chemical energy."}, 200),
]


def test_batched_results_equal_unbatched_and_bad_items_fail_alone(server, batched_model):
    with ThreadPoolExecutor(len(BATCH)) as pool:
        batched = list(pool.map(lambda case: server.predict(batched_model, json=case[0]), BATCH))
    assert [r.status_code for r in batched] == [status for _, status in BATCH]

    for (payload, status), together in zip(BATCH, batched, strict=True):
        if status != 200:
            assert set(together.json()) == {"error", "detail"}
            continue
        alone = server.predict(MODEL, json=payload).json()
        if "labels" in payload:
            assert [e["label"] for e in together.json()["labels"]] == [e["label"] for e in alone["labels"]]
            scores = zip(together.json()["labels"], alone["labels"], strict=True)
            assert all(abs(a["score"] - b["score"]) < 1e-5 for a, b in scores)
            continue
        key = "embedding" if "text" in payload else "embeddings"
        cosines = torch.nn.functional.cosine_similarity(
            torch.tensor(together.json()[key]), torch.tensor(alone[key]), dim=-1
        )
        assert cosines.min() >= 1 - 1e-5

    metrics = server.metrics(batched_model)
    assert metrics["HandlerItems"] == len(BATCH)
    assert metrics["HandlerBatches"] < len(BATCH), "requests were not batched"


@pytest.mark.parametrize(
    "body, headers, status, error",
    [
        (b'{"text": ""}', JSON, 400, "empty_payload"),
        (b"   ", PLAIN, 400, "empty_payload"),
        (b"caf\xe9 au lait", PLAIN, 422, "undecodable_input"),
        (b'{"text": 42}', JSON, 400, "invalid_payload"),
        (b'{"texts": ["ok", null]}', JSON, 400, "invalid_payload"),
        (b'["a", "b"]', JSON, 400, "invalid_payload"),
        (b'{"text": "broken', JSON, 400, "invalid_payload"),
        (b'["a", "b"', JSON, 400, "invalid_payload"),  # TorchServe cannot parse it: bytes, once embedded as text
        (b"[" * 5000 + b"]" * 5000, JSON, 400, "invalid_payload"),  # too deep for TorchServe's json.loads
        (b'["a", "b"]', {"Content-Type": "application/json; charset=utf-8"}, 400, "invalid_payload"),  # no request, whoever parses it
        (b'{"text": "a", "labels": []}', JSON, 400, "empty_payload"),
        (b'{"texts": [' + b", ".join([b'"x"'] * 65) + b"]}", JSON, 413, "payload_too_large"),
        (b'{"text": "' + b"x" * 20_001 + b'"}', JSON, 413, "payload_too_large"),
        # curl --data-binary without -H sends this type; TorchServe parses the body away as a form
        (b"hello", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_gets_json_4xx_and_the_worker_survives(server, body, headers, status, error):
    response = server.predict(MODEL, data=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["detail"]
    assert embed(server, "still serving").shape == (384,)


# ---- docs/text-recipes.md, run as written (only host:port differ) -----------------------------
TEXT_RECIPES = REPO / "docs" / "text-recipes.md"


def test_the_recipes_doc_has_its_recipes():
    commands = [command for command, _ in documented_recipes(TEXT_RECIPES)]
    assert len(commands) == 10
    assert all("http://127.0.0.1:8080/predictions/minilm" in command for command in commands)


@pytest.mark.parametrize("command, shown", documented_recipes(TEXT_RECIPES), ids=lambda value: value[:60] if "curl" in value else "")
def test_every_recipe_gives_its_documented_output(server, command, shown):
    output = run_recipe(command, server)
    assert agrees(documented_value(shown), parsed(output)), output[:500]

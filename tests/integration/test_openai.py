"""OpenAI's embeddings API on the front (scripts/serving/front.py) in front of the session's real
TorchServe, spoken to by the real `openai` client (PyPI) and, for what the client will not send,
by plain HTTP: the vectors are /predictions/minilm's, the usage is the tokenizer's, and refusals
come in OpenAI's shape with the status the client maps to its exception types."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import numpy as np
import openai
import pytest
import requests

from scripts.client.torchserve import REPO
from tests.integration.recipes import agrees, documented_python, documented_recipes, documented_value, parsed, run_recipe

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]
DOC = REPO / "docs" / "openai.md"
DOC_FRONT = "http://127.0.0.1:8090"


@pytest.fixture(scope="module")
def client(front, settled) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{front}/v1", api_key=settled.keys["inference"], max_retries=0, timeout=60)


def direct(settled, texts: list[str]) -> dict:
    response = settled.predict("minilm", json={"texts": texts})
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_the_embeddings_model_only(client):
    assert [model.id for model in client.models.list()] == ["minilm"]
    assert client.models.retrieve("minilm").id == "minilm"


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_a_list_gives_predictions_vectors_and_the_tokenizers_usage(client, settled, encoding_format):
    answer = client.embeddings.create(model="minilm", input=SENTENCES, encoding_format=encoding_format)
    expected = direct(settled, SENTENCES)
    assert [item.index for item in answer.data] == [0, 1, 2] and answer.model == "minilm"
    if encoding_format == "base64":  # asked for explicitly, the client hands the strings over as they are
        got = np.array([np.frombuffer(base64.b64decode(item.embedding), dtype="<f4") for item in answer.data])
    else:
        got = np.array([item.embedding for item in answer.data])
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, np.array(expected["embeddings"]), atol=1e-6)  # float32 of the same rounded values
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == sum(expected["tokens"]) > len(SENTENCES) * 2


def test_the_clients_default_base64_and_a_single_string(client, settled):
    answer = client.embeddings.create(model="minilm", input=SENTENCES[0])  # openai asks for base64 unless told
    assert len(answer.data) == 1
    np.testing.assert_allclose(answer.data[0].embedding, direct(settled, SENTENCES[:1])["embeddings"][0], atol=1e-6)
    assert answer.usage.prompt_tokens == direct(settled, SENTENCES[:1])["tokens"][0]


def test_a_wrong_key_is_an_authentication_error(front):
    wrong = openai.OpenAI(base_url=f"{front}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.embeddings.create(model="minilm", input="hello")
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_empty_input_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError, match="non-empty"):
        client.embeddings.create(model="minilm", input=[])


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError, match="model_not_found|does not exist"):
        client.embeddings.create(model="gpt-nope", input="hello")
    with pytest.raises(openai.NotFoundError):  # a model that serves no embeddings
        client.embeddings.create(model="efficientnet_lite0", input="hello")


def test_other_dimensions_and_token_ids_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError, match="'dimensions' 256 is not supported"):
        client.embeddings.create(model="minilm", input="hello", dimensions=256)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model="minilm", input=[[101, 7592, 102]])


def test_over_the_handlers_limits_is_a_413(client):
    with pytest.raises(openai.APIStatusError) as raised:
        client.embeddings.create(model="minilm", input=["x"] * 65)  # max_texts: 64
    assert raised.value.status_code == 413 and raised.value.body["code"] == "payload_too_large"
    assert raised.value.body["message"] == "'input' has 65 items; the limit is 64 per request"


BAD = [
    b"{not json",
    b'{"model": "minilm", "input": "caf\xe9"}',  # latin-1, not UTF-8
    b'{"model": "minilm", "input": 3}',
    b'{"model": "minilm", "input": [["a"]]}',
    b'{"model": "minilm", "input": "x", "temperature": 0}',
    b'{"model": "minilm", "input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    b'{"model": "minilm", "input": "' + b"x" * (21 * 1024 * 1024) + b'"}',  # over max_request_size (20 MiB)
]


@pytest.mark.parametrize("sent", BAD, ids=["malformed", "not-utf8", "wrong-type", "nested", "unknown-field", "deep", "huge"])
def test_bad_input_is_a_4xx_in_openais_shape_and_the_server_serves_on(front, settled, sent):
    response = requests.post(f"{front}/v1/embeddings", data=sent, timeout=60,
                             headers={"Authorization": f"Bearer {settled.keys['inference']}", "Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert direct(settled, ["still served"])["embeddings"]


def test_the_documented_recipes_give_their_shown_output(front, settled):
    recipes = documented_recipes(DOC, "/v1")
    assert len(recipes) >= 2
    for command, shown in recipes:
        out = run_recipe(command.replace(DOC_FRONT, front), settled)
        assert agrees(documented_value(shown), parsed(out)), (command, out[:500])


def run_python_recipe(document: Path, marker: str, front: str, server) -> tuple[str, str]:
    """The document's python block holding `marker`, run as written from the server's working folder
    (its key_file.json) against `front`: (what it printed, the output the document shows after it)."""
    code, shown = documented_python(document, marker)
    result = subprocess.run([sys.executable, "-c", code.replace(DOC_FRONT, front)], cwd=server.workdir, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), shown.strip()


def test_the_readme_python_recipe_prints_its_shown_output(front, server):
    printed, shown = run_python_recipe(REPO / "README.md", "openai.OpenAI", front, server)
    printed, shown = printed.rsplit(" ", 2), shown.rsplit(" ", 2)
    assert printed[1:] == shown[1:]  # dimensions, prompt tokens
    assert agrees(documented_value(shown[0]), parsed(printed[0])), printed


def test_the_documented_langchain_recipe_prints_its_shown_output(front, server):
    assert run_python_recipe(DOC, "OpenAIEmbeddings", front, server) == ("2 384", "2 384")


def test_langchain_embeds_in_requests_within_max_texts_with_predictions_vectors(front, settled):
    """LangChain's OpenAIEmbeddings (the real one) with docs/openai.md's settings: 70 documents go as
    two requests of at most 64 texts, and come back as /predictions/minilm's vectors, in order."""
    from langchain_openai import OpenAIEmbeddings

    embedder = OpenAIEmbeddings(model="minilm", base_url=f"{front}/v1", api_key=settled.keys["inference"], max_retries=0,
                                check_embedding_ctx_length=False, chunk_size=64)
    documents = [f"{SENTENCES[i % len(SENTENCES)]} (document {i})" for i in range(70)]
    vectors = embedder.embed_documents(documents)
    expected = direct(settled, documents[:64])["embeddings"] + direct(settled, documents[64:])["embeddings"]
    np.testing.assert_allclose(np.array(vectors), np.array(expected), atol=1e-6)
    np.testing.assert_allclose(embedder.embed_query(SENTENCES[0]), direct(settled, SENTENCES[:1])["embeddings"][0], atol=1e-6)

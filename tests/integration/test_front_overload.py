"""A full job queue through the front's routes: TorchServe 0.12 answers 503 with words about having no
worker (tests/integration/test_load.py); the front's OpenAI and v2 routes say the queue is full and add
Retry-After, and the requests the queue took are answered. The OpenAI side is the real `openai` client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from scripts.serving.overload import RETRY_AFTER_S
from tests.support.archives import queue_limited_model

pytestmark = pytest.mark.reliability

QUEUED_MODEL, QUEUE_SIZE, AT_ONCE = "queue_minilm", 2, 24
TEXTS = [" ".join(["The quick brown fox jumps over the lazy dog."] * 25)] * 16  # 16 x 256 tokens: a slow request
BUSY = "job queue is full"


@pytest.fixture(scope="module")
def queued_model(settled, model_store):
    """minilm with jobQueueSize 2, one request per batch."""
    with queue_limited_model(settled, model_store, "minilm", QUEUED_MODEL, QUEUE_SIZE) as name:
        yield name


def at_once(send) -> list:
    """AT_ONCE calls of `send`, all in flight together; each call's result or the exception it raised."""
    def attempt(_):
        try:
            return send()
        except Exception as error:  # noqa: BLE001 - the refusals are what is checked
            return error
    with ThreadPoolExecutor(AT_ONCE) as pool:
        return list(pool.map(attempt, range(AT_ONCE)))


def test_openai_client_gets_a_503_that_names_the_full_queue_and_when_to_retry(front, settled, queued_model):
    client = openai.OpenAI(base_url=f"{front}/v1", api_key=settled.keys["inference"], max_retries=0, timeout=120)
    results = at_once(lambda: client.embeddings.create(model=queued_model, input=TEXTS, encoding_format="float"))
    answered = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert refused, "24 requests at once did not fill a queue of 2"
    assert len(answered) >= QUEUE_SIZE and all(len(r.data) == len(TEXTS) for r in answered)
    for error in refused:
        assert isinstance(error, openai.InternalServerError) and error.status_code == 503, repr(error)
        assert BUSY in error.message and queued_model in error.message and "scale workers" not in error.message
        assert error.response.headers["Retry-After"] == str(RETRY_AFTER_S)
    # the queue drained: the same client is answered now
    assert len(client.embeddings.create(model=queued_model, input=TEXTS[:1]).data) == 1


def test_v2_infer_gets_a_503_that_names_the_full_queue_and_when_to_retry(front, settled, queued_model):
    body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(TEXTS)], "data": TEXTS}]})
    headers = {**settled.auth("inference"), "Content-Type": "application/json"}
    url = f"{front}/v2/models/{queued_model}/infer"
    responses = at_once(lambda: requests.post(url, data=body, headers=headers, timeout=120))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503} and statuses.count(200) >= QUEUE_SIZE, statuses
    for response in responses:
        if response.status_code == 503:
            assert BUSY in response.json()["error"] and response.headers["Retry-After"] == str(RETRY_AFTER_S)
        else:
            assert len(response.json()["outputs"][0]["data"]) > 0

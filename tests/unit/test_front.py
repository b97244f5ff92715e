"""The front's aiohttp app (scripts/serving/front.py) served in process: which answer each path gets,
the refusals in v2's shape, the relay to a stand-in TorchServe inference API (bodies streamed both
ways, headers, TorchServe's errors made v2), and the in-thread runner serve.py uses.

The management answers themselves (scripts/serving/v2.py's Front) run against the real TorchServe in
tests/integration/test_v2_front.py; here a Front that says what it was asked stands in for them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from scripts.client.torchserve import free_port
from scripts.serving import readiness
from scripts.serving.front import Running, app
from scripts.serving.v2 import Front, V2Error


class SayingFront(Front):
    """Answers with what it was asked, so that a test sees which route ran with which model and version."""

    def __init__(self, inference_url: str = "http://127.0.0.1:1", key_file: Path = Path("no-key-file.json"), max_request_size: int = 1 << 20) -> None:
        super().__init__(readiness.Server("http://127.0.0.1:1", key_file), inference_url, max_request_size)

    def embedding_dimensions(self, name: str) -> int | None:
        return 3 if name == "minilm" else None

    def embedding_models(self) -> list[str]:
        return ["minilm"]

    def live(self) -> dict:
        return {"asked": "live"}

    def ready(self) -> dict:
        return {"asked": "ready"}

    def model_metadata(self, name: str, version: str | None) -> dict:
        if name == "refused":
            raise V2Error(404, "model refused is not registered")
        return {"asked": "model", "model": name, "version": version}

    def model_ready(self, name: str, version: str | None) -> dict:
        return {"asked": "model_ready", "model": name, "version": version}


async def _call(front: Front, method: str, path: str, upstream: web.Application | None = None, **kwargs):
    upstream_server = TestServer(upstream) if upstream is not None else None
    if upstream_server is not None:
        await upstream_server.start_server()
        front.inference_url = str(upstream_server.make_url("")).rstrip("/")
    try:
        async with TestClient(TestServer(app(front))) as client:
            async with client.request(method, path, **kwargs) as response:
                return response.status, dict(response.headers), await response.read()
    finally:
        if upstream_server is not None:
            await upstream_server.close()


def call(method: str, path: str, front: Front | None = None, upstream: web.Application | None = None, **kwargs):
    """(status, headers, body) of one request to the front, served in process."""
    return asyncio.run(_call(front or SayingFront(), method, path, upstream, **kwargs))


@pytest.mark.parametrize(("method", "path", "asked"), [
    ("GET", "/v2/health/live", {"asked": "live"}),
    ("GET", "/v2/health/ready?verbose=1", {"asked": "ready"}),
    ("GET", "/v2/health/ready/", {"asked": "ready"}),
    ("GET", "/v2/models/minilm", {"asked": "model", "model": "minilm", "version": None}),
    ("GET", "/v2/models/minilm/versions/1.0", {"asked": "model", "model": "minilm", "version": "1.0"}),
    ("GET", "/v2/models/minilm/ready", {"asked": "model_ready", "model": "minilm", "version": None}),
    ("GET", "/v2/models/minilm/versions/2.0/ready", {"asked": "model_ready", "model": "minilm", "version": "2.0"}),
    ("GET", "/v2/models/versions/ready", {"asked": "model_ready", "model": "versions", "version": None}),  # a model may be called "versions"
    ("GET", "/v2/models/my%20net", {"asked": "model", "model": "my net", "version": None}),
])
def test_each_path_gets_its_answer(method, path, asked):
    status, headers, body = call(method, path)
    assert (status, json.loads(body)) == (200, asked)
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata(path):
    status, _, body = call("GET", path)
    assert status == 200 and json.loads(body)["extensions"] == ["binary_tensor_data"]


def test_head_answers_like_get_without_a_body():
    status, _, body = call("HEAD", "/v2/health/ready")
    assert (status, body) == (200, b"")


def test_a_refusal_of_the_front_keeps_its_status():
    status, _, body = call("GET", "/v2/models/refused")
    assert (status, json.loads(body)) == (404, {"error": "model refused is not registered"})


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 404),
    ("GET", "/v2/health", 404),
    ("GET", "/v2/health/started", 404),
    ("GET", "/v2/models", 404),
    ("GET", "/v2/models/", 404),
    ("GET", "/v2/models//ready", 404),
    ("GET", "/v2/models/m/versions", 404),
    ("GET", "/v2/models/m/versions//ready", 404),
    ("POST", "/v2/models/m/explain", 404),
    ("GET", "/v2/models/m/ready/now", 404),
    ("GET", "/predictions/minilm", 404),
    ("GET", "/v2/models/m/infer", 405),
    ("POST", "/v2/health/ready", 405),
    ("DELETE", "/v2/models/m", 405),
])
def test_refusals_name_the_problem_in_v2s_shape(method, path, status):
    answered, headers, body = call(method, path)
    assert answered == status and headers["Content-Type"].startswith("application/json")
    error = json.loads(body)
    assert set(error) == {"error"} and path in error["error"]


def test_a_405_says_which_method_to_use():
    assert json.loads(call("GET", "/v2/models/m/infer")[2])["error"].endswith("use POST")
    assert json.loads(call("POST", "/v2/health/ready")[2])["error"].endswith("use GET")


def echo_upstream(seen: list) -> web.Application:
    """A stand-in for TorchServe's inference API: records each request, answers with its body
    (streamed in chunks when the query says so) and a header of its own."""

    async def answer(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append({"path": request.path_qs, "headers": dict(request.headers), "body": body})
        if request.query.get("stream"):
            response = web.StreamResponse(headers={"X-Upstream": "yes", "Content-Type": "application/octet-stream"})
            await response.prepare(request)
            for start in range(0, len(body), 1000):
                await response.write(body[start:start + 1000])
            await response.write_eof()
            return response
        return web.Response(body=body, headers={"X-Upstream": "yes", "Inference-Header-Content-Length": "7"},
                            content_type="application/json")

    upstream = web.Application()
    upstream.router.add_post("/v2/models/{model}/infer", answer)
    upstream.router.add_post("/predictions/{model}/{version}", answer)
    return upstream


def test_an_infer_is_relayed_with_its_body_headers_and_query():
    seen = []
    body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}).encode()
    status, headers, answered = call("POST", "/v2/models/minilm/infer?x=1", upstream=echo_upstream(seen), data=body,
                                     headers={"Authorization": "Bearer k", "Inference-Header-Content-Length": "3"})
    assert (status, answered) == (200, body)
    assert headers["X-Upstream"] == "yes" and headers["Inference-Header-Content-Length"] == "7"
    (request,) = seen
    assert request["path"] == "/v2/models/minilm/infer?x=1" and request["body"] == body
    assert request["headers"]["Authorization"] == "Bearer k" and request["headers"]["Inference-Header-Content-Length"] == "3"
    assert request["headers"]["Content-Length"] == str(len(body))


def test_a_versioned_infer_goes_to_predictions():
    seen = []
    assert call("POST", "/v2/models/minilm/versions/1.0/infer", upstream=echo_upstream(seen), data=b"{}")[0] == 200
    assert seen[0]["path"] == "/predictions/minilm/1.0"


def test_chunked_bodies_are_streamed_both_ways():
    seen = []
    parts = [bytes([i]) * 5000 for i in range(8)]

    async def chunks():
        for part in parts:
            yield part

    status, headers, answered = call("POST", "/v2/models/minilm/infer?stream=1", upstream=echo_upstream(seen), data=chunks())
    assert (status, answered) == (200, b"".join(parts))
    assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert seen[0]["body"] == b"".join(parts) and seen[0]["headers"]["Transfer-Encoding"] == "chunked"


def refusing_upstream(status: int, body: bytes, content_type: str = "application/json") -> web.Application:
    async def refuse(_request: web.Request) -> web.Response:  # the body is not read: TorchServe's 413 does not either
        return web.Response(status=status, body=body, content_type=content_type)

    upstream = web.Application()
    upstream.router.add_post("/v2/models/{model}/infer", refuse)
    return upstream


def test_torchserves_refusal_is_made_v2_with_its_status():
    torchserve = b'{"code": 400, "type": "InvalidKeyException", "message": "Token Authorization failed."}'
    status, headers, body = call("POST", "/v2/models/minilm/infer", upstream=refusing_upstream(400, torchserve), data=b"{}")
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"error": "InvalidKeyException: Token Authorization failed."}


def test_a_v2_error_of_the_handler_is_relayed_as_it_is():
    handler = b'{"error": "input text: expected BYTES"}'
    status, _, body = call("POST", "/v2/models/minilm/infer", upstream=refusing_upstream(400, handler), data=b"{}")
    assert (status, body) == (400, handler)


def test_a_refusal_before_the_body_is_read_still_reaches_the_client():
    status, _, body = call("POST", "/v2/models/minilm/infer", upstream=refusing_upstream(413, b"", "text/plain"), data=b"x" * 3_000_000)
    assert status == 413 and json.loads(body) == {"error": "the request body is over TorchServe's max_request_size"}


def test_no_torchserve_is_a_502_that_says_where_it_looked():
    status, _, body = call("POST", "/v2/models/minilm/infer", front=SayingFront(f"http://127.0.0.1:{free_port()}"), data=b"{}")
    assert status == 502 and "no answer from TorchServe's inference API at http://127.0.0.1:" in json.loads(body)["error"]


def test_running_serves_in_a_thread_until_stopped():
    running = Running(app(SayingFront()), "127.0.0.1", 0).start()
    try:
        assert requests.get(f"{running.url}/v2/health/live", timeout=10).json() == {"asked": "live"}
    finally:
        running.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{running.url}/v2/health/live", timeout=5)


def test_a_taken_port_is_an_oserror_at_start():
    first = Running(app(SayingFront()), "127.0.0.1", 0).start()
    try:
        with pytest.raises(OSError):
            Running(app(SayingFront()), "127.0.0.1", first.port).start()
    finally:
        first.stop()


def predictions_upstream(seen: list) -> web.Application:
    """A stand-in for TorchServe's /predictions/{model}: the handler's texts form, three-dimensional vectors."""

    async def answer(request: web.Request) -> web.Response:
        texts = (await request.json())["texts"]
        seen.append({"path": request.path, "texts": texts, "authorization": request.headers.get("Authorization")})
        return web.json_response({"embeddings": [[float(len(t)), 0.0, 1.0] for t in texts], "truncated": [False] * len(texts),
                                  "tokens": [len(t) + 2 for t in texts]})

    upstream = web.Application()
    upstream.router.add_post("/predictions/{model}", answer)
    return upstream


def test_openai_embeddings_make_one_texts_request():
    seen = []
    sent = {"model": "minilm", "input": ["ab", "cde"], "encoding_format": "float"}
    status, _, body = call("POST", "/v1/embeddings", upstream=predictions_upstream(seen), json=sent, headers={"Authorization": "Bearer k"})
    assert status == 200, body
    assert json.loads(body) == {"object": "list", "model": "minilm", "usage": {"prompt_tokens": 9, "total_tokens": 9},
                                "data": [{"object": "embedding", "index": 0, "embedding": [2.0, 0.0, 1.0]},
                                         {"object": "embedding", "index": 1, "embedding": [3.0, 0.0, 1.0]}]}
    assert seen == [{"path": "/predictions/minilm", "texts": ["ab", "cde"], "authorization": "Bearer k"}]


@pytest.mark.parametrize(("sent", "status", "code"), [
    ({"model": "nope", "input": "x"}, 404, "model_not_found"),
    ({"model": "minilm", "input": "x", "dimensions": 2}, 400, None),
    ({"model": "minilm", "input": [[1, 2]]}, 400, None),
])
def test_openai_refusals_never_reach_torchserve(sent, status, code):
    seen = []
    answered, _, body = call("POST", "/v1/embeddings", upstream=predictions_upstream(seen), json=sent)
    error = json.loads(body)["error"]
    assert (answered, error["code"]) == (status, code) and set(error) == {"message", "type", "param", "code"}
    assert seen == []


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps({api: {"key": f"{api}-key", "expiration time": "2099-01-01T00:00:00Z"} for api in ("management", "inference", "API")}))
    return path


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/embeddings"), ("GET", "/v1/models"), ("GET", "/v1/models/minilm")])
@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Bearer management-key", "inference-key"])
def test_openai_routes_want_the_inference_key(key_file, method, path, authorization):
    seen = []
    headers = {"Authorization": authorization} if authorization else {}
    status, _, body = call(method, path, front=SayingFront(key_file=key_file), upstream=predictions_upstream(seen),
                           json={"model": "minilm", "input": "x"}, headers=headers)
    assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error" and seen == []


def test_openai_models_with_the_key(key_file):
    auth = {"Authorization": "Bearer inference-key"}
    status, _, body = call("GET", "/v1/models", front=SayingFront(key_file=key_file), headers=auth)
    assert (status, [m["id"] for m in json.loads(body)["data"]]) == (200, ["minilm"])
    assert json.loads(call("GET", "/v1/models/minilm", front=SayingFront(key_file=key_file), headers=auth)[2])["id"] == "minilm"
    assert call("GET", "/v1/models/nope", front=SayingFront(key_file=key_file), headers=auth)[0] == 404


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/v1/embeddings", 405), ("POST", "/v1/completions", 404)])
def test_openai_paths_refuse_in_openais_shape(method, path, status):
    answered, _, body = call(method, path)
    assert answered == status and path in json.loads(body)["error"]["message"]


def test_a_body_over_max_request_size_is_a_413_in_openais_shape():
    status, _, body = call("POST", "/v1/embeddings", front=SayingFront(max_request_size=1000), data=b"x" * 5000)
    assert status == 413 and "max_request_size (1000 bytes)" in json.loads(body)["error"]["message"]

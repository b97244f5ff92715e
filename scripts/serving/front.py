"""The bundle's HTTP front beside TorchServe, on aiohttp: the v2 routes TorchServe 0.12 lacks, and
OpenAI's embeddings API over the text model.

    python -m scripts.serving.serve --front 127.0.0.1:8090 ...      # make serve, the image: in serve.py's process
    python -m scripts.serving.front --listen 127.0.0.1:8090 --config config.properties --key-file key_file.json \\
        --workflows photo_embedding.war                              # by hand, beside a running TorchServe

Health, readiness and metadata (scripts/serving/v2.py) need no token, as in Triton: they are
probes. Infer is streamed to TorchServe both ways with the client's Authorization, and TorchServe
checks it; its refusals come back as v2 errors ({"error": ...}) with their status.

    POST /v1/embeddings, GET /v1/models[/{model}]   OpenAI's API (scripts/serving/embeddings.py)

The /v1 routes check the inference key themselves (Authorization: Bearer <key>, 401 otherwise) and
refuse what they can before TorchServe sees it; every /v1 error is in OpenAI's shape. aiohttp does the
HTTP/1.1 (keep-alive, chunked bodies both ways, back-pressure) and keeps a pool of kept-alive
connections to TorchServe. The answers that ask the management API block, so they run in threads.
orjson reads and writes the JSON the front makes: an embeddings answer is hundreds of floats, which
the json module formats at ~0.5 us each (180 us a vector, a quarter of the front's CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import sys
import threading
import traceback
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web

from scripts.serving import embeddings
from scripts.serving.embeddings import OpenAIError
from scripts.serving.overload import RETRY_AFTER_S
from scripts.serving.v2 import (
    FORGOTTEN,
    FORWARD_TIMEOUT_S,
    HOP_BY_HOP,
    NOT_RELAYED,
    NOT_RELAYED_WHEN_WRAPPED,
    PATHS,
    Front,
    V2Error,
    check_infer_body_type,
    infer_target,
    server_metadata,
    wrapped_error,
)

FRONT = web.AppKey("front", Front)
UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
CONNECT_TIMEOUT_S = 10
WHOLE = 64 * 1024
"""Bodies up to this size are relayed in one piece (one write each way); larger ones are streamed."""
STOP_TIMEOUT_S = 5  # serve.py stops the front after TorchServe: nothing is left in flight to wait for


OPENAI_PATHS = "POST /v1/embeddings, GET /v1/models[/<model>]"


def json_response(body: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def refusal(request: web.Request, status: int, message: str) -> web.Response:
    """A refusal in the shape of the path's protocol: OpenAI's under /v1/, v2's elsewhere."""
    if request.path.startswith("/v1/"):
        return json_response(OpenAIError(status, message).body(), status)
    return json_response({"error": message}, status)


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Every refusal in its protocol's shape: the front's own, aiohttp's 404, 405 and 413, and a
    failure of the front itself (500, logged with its traceback; the client gets no internals).
    5xx are logged; a 503 (a full job queue, a model not ready) says when to retry."""
    response = await _answer_or_refusal(request, handler)
    if response.status == 503 and not response.prepared:
        response.headers.setdefault("Retry-After", str(RETRY_AFTER_S))
    if response.status >= 500:  # only these: probes every few seconds would drown the rest (TorchServe logs the infers)
        print(f"front: {request.method} {request.path_qs} -> {response.status}", file=sys.stderr, flush=True)
    return response


async def _answer_or_refusal(request: web.Request, handler) -> web.StreamResponse:
    """The handler's response, or what it raised as a refusal in the path's protocol."""
    try:
        return await handler(request)
    except OpenAIError as error:
        return json_response(error.body(), error.status)
    except V2Error as error:
        return json_response(error.body(), error.status) if not request.path.startswith("/v1/") else refusal(request, error.status, str(error))
    except web.HTTPNotFound:
        paths = OPENAI_PATHS if request.path.startswith("/v1/") else f"the v2 paths: {PATHS}"
        return refusal(request, 404, f"no such path: {request.path} ({paths})")
    except web.HTTPMethodNotAllowed as refused:
        wanted = "GET" if "GET" in refused.allowed_methods else "POST"
        return refusal(request, 405, f"{request.method} {request.path}: use {wanted}")
    except web.HTTPRequestEntityTooLarge:
        return refusal(request, 413, f"the request body is over max_request_size ({request.app[FRONT].max_request_size} bytes)")
    except (web.HTTPException, asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        print(f"front: unexpected error on {request.method} {request.path}", file=sys.stderr, flush=True)
        traceback.print_exc(file=sys.stderr)
        return refusal(request, 500, "the front failed on this request; see its log")


async def answer(request: web.Request, ask, *args) -> web.Response:
    """A v2 answer from the management API, asked in a thread (readiness.py's calls block)."""
    return json_response(await asyncio.to_thread(ask, *args))


async def server(_request: web.Request) -> web.Response:
    return json_response(server_metadata())


async def live(request: web.Request) -> web.Response:
    return await answer(request, request.app[FRONT].live)


async def ready(request: web.Request) -> web.Response:
    return await answer(request, request.app[FRONT].ready)


async def model(request: web.Request) -> web.Response:
    return await answer(request, request.app[FRONT].model_metadata, request.match_info["model"], request.match_info.get("version"))


async def model_ready(request: web.Request) -> web.Response:
    return await answer(request, request.app[FRONT].model_ready, request.match_info["model"], request.match_info.get("version"))


async def infer(request: web.Request) -> web.StreamResponse:
    """Stream the request to TorchServe and its answer back; error bodies made v2 ({"error": ...})."""
    front = request.app[FRONT]
    check_infer_body_type(request.content_type)
    headers = [(name, value) for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP]
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        headers = [(name, value) for name, value in headers if name.lower() != "content-length"]  # chunked on to TorchServe
    url = front.inference_url + infer_target(request.match_info["model"], request.match_info.get("version"), request.query_string)
    small = request.content_length is not None and request.content_length <= WHOLE
    data = (await request.read()) if small else request.content if request.body_exists else None
    try:
        async with request.app[UPSTREAM].post(url, data=data, headers=headers) as upstream:
            return await relay(request, upstream)
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        raise V2Error(502, f"no answer from TorchServe's inference API at {front.inference_url}: {error or type(error).__name__}") from None


async def relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
    if upstream.status >= 400:  # error bodies are small; a v2 client wants {"error": ...}
        data = await upstream.read()
        wrapped = wrapped_error(upstream.status, data)
        skip = NOT_RELAYED if wrapped is None else NOT_RELAYED_WHEN_WRAPPED
        response = web.Response(status=upstream.status, reason=upstream.reason, body=wrapped or data, headers=kept(upstream, skip))
        if wrapped is not None:
            response.content_type = "application/json"
        return response
    if upstream.content_length is not None and upstream.content_length <= WHOLE:
        return web.Response(status=upstream.status, reason=upstream.reason, body=await upstream.read(), headers=kept(upstream, NOT_RELAYED))
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=kept(upstream, NOT_RELAYED))
    if upstream.content_length is not None:
        response.content_length = upstream.content_length  # else chunked, as TorchServe streamed it
    await response.prepare(request)
    async for chunk in upstream.content.iter_any():
        await response.write(chunk)
    await response.write_eof()
    return response


def kept(upstream: aiohttp.ClientResponse, skip: frozenset) -> list[tuple[str, str]]:
    return [(name, value) for name, value in upstream.headers.items() if name.lower() not in skip]


def check_key(request: web.Request) -> None:
    """The /v1 routes' token check, before anything else: the inference key, as OpenAI's clients send it."""
    key = request.app[FRONT].inference_key()
    if key is not None and not hmac.compare_digest(request.headers.get("Authorization", "").encode(), f"Bearer {key}".encode()):
        raise OpenAIError(401, "wrong or missing API key: send the inference key of key_file.json as Authorization: Bearer <key>",
                          code="invalid_api_key")


async def openai_embeddings(request: web.Request) -> web.Response:
    """One OpenAI request -> one request to the model's handler ({"texts": [...]}) -> OpenAI's answer."""
    front = request.app[FRONT]
    check_key(request)
    asked = embeddings.parse_request(await request.read())
    size = front.remembered_embedding_dimensions(asked.model)
    if size is FORGOTTEN:  # asking TorchServe's management API blocks: a thread
        size = await asyncio.to_thread(front.embedding_dimensions, asked.model)
    if size is None:
        raise OpenAIError(404, f"model {asked.model!r} does not exist or serves no embeddings (GET /v1/models lists those that do)",
                          param="model", code="model_not_found")
    embeddings.check_dimensions(asked, size)
    headers = {"Content-Type": "application/json", **{k: v for k, v in request.headers.items() if k.lower() == "authorization"}}
    try:
        async with request.app[UPSTREAM].post(f"{front.inference_url}/predictions/{quote(asked.model, safe='')}",
                                              data=embeddings.torchserve_body(asked), headers=headers) as upstream:
            status, data = upstream.status, await upstream.read()
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        raise OpenAIError(502, f"no answer from TorchServe's inference API at {front.inference_url}: {error or type(error).__name__}") from None
    if status >= 400:
        raise embeddings.torchserve_error(status, data)
    try:
        return json_response(embeddings.response(asked, orjson.loads(data)))
    except (ValueError, KeyError, TypeError):
        raise OpenAIError(502, f"model {asked.model} answered in a shape other than its handler's texts form: {data[:200]!r}") from None


async def openai_models(request: web.Request) -> web.Response:
    check_key(request)
    return json_response(embeddings.models_list(await asyncio.to_thread(request.app[FRONT].embedding_models)))


async def openai_model(request: web.Request) -> web.Response:
    check_key(request)
    name = request.match_info["model"]
    if await asyncio.to_thread(request.app[FRONT].embedding_dimensions, name) is None:
        raise OpenAIError(404, f"model {name!r} does not exist or serves no embeddings", param="model", code="model_not_found")
    return json_response(embeddings.model_object(name))


async def upstream_session(app: web.Application):
    """Kept-alive connections to TorchServe; bodies relayed as they are (no decompression, no added headers)."""
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_read=FORWARD_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False, connector=aiohttp.TCPConnector(limit=0),
                                     skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type")) as session:
        app[UPSTREAM] = session
        yield


def app(front: Front) -> web.Application:
    """The front's routes (v2, then OpenAI's); a trailing slash is accepted, as clients sometimes send one."""
    application = web.Application(middlewares=[errors], client_max_size=front.max_request_size)
    application[FRONT] = front
    application.cleanup_ctx.append(upstream_session)
    for path, handler, method in [("/v2", server, "GET"), ("/v2/health/live", live, "GET"), ("/v2/health/ready", ready, "GET"),
                                  ("/v2/models/{model}", model, "GET"), ("/v2/models/{model}/versions/{version}", model, "GET"),
                                  ("/v2/models/{model}/ready", model_ready, "GET"),
                                  ("/v2/models/{model}/versions/{version}/ready", model_ready, "GET"),
                                  ("/v2/models/{model}/infer", infer, "POST"),
                                  ("/v2/models/{model}/versions/{version}/infer", infer, "POST"),
                                  ("/v1/embeddings", openai_embeddings, "POST"), ("/v1/models", openai_models, "GET"),
                                  ("/v1/models/{model}", openai_model, "GET")]:
        for variant in (path, f"{path}/"):
            if method == "GET":
                application.router.add_get(variant, handler)
            else:
                application.router.add_post(variant, handler)
    return application


class Running:
    """The front served by an event loop in a thread of this process (serve.py's): it lives and dies
    with the server's own process, so there is no second process to watch."""

    def __init__(self, application: web.Application, host: str, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(application, access_log=None, handle_signals=False, shutdown_timeout=STOP_TIMEOUT_S)
        self.host, self.port = host, port
        self.thread = threading.Thread(target=self.loop.run_forever, name="front", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> "Running":
        """Listening when this returns; OSError (the port is taken) when it cannot."""
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=30)
        except BaseException:
            self.stop()
            raise
        return self

    async def _listen(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        self.port = self.runner.addresses[0][1]  # port 0: the one chosen

    def stop(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=STOP_TIMEOUT_S * 2)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=STOP_TIMEOUT_S)


def listen_arg(text: str) -> str:
    """An argparse type: HOST:PORT checked, kept as written."""
    parse_listen(text)
    return text


def parse_listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:8090")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090), metavar="HOST:PORT")
    parser.add_argument("--config", type=Path, default=Path("config.properties"), help="TorchServe's config (its addresses)")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="TorchServe's; absent: token auth off")
    parser.add_argument("--workflows", nargs="*", default=[], help="workflow names or .war archives /v2/health/ready waits for")
    args = parser.parse_args(argv)
    front = Front.from_config(args.config, args.key_file, args.workflows)
    host, port = args.listen
    print(f"front: http://{host}:{port} -> TorchServe {front.inference_url} (management {front.server.management_url})", flush=True)
    web.run_app(app(front), host=host, port=port, access_log=None, print=None, shutdown_timeout=STOP_TIMEOUT_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())

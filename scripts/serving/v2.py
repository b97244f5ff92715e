"""The Open Inference Protocol (KServe v2) answers that TorchServe 0.12 lacks, from its management API.

TorchServe 0.12 routes POST /v2/models/{m}/infer (no version) to the model's handler, but has no
model metadata or model ready route (404), and its /v2/health/ready (ts_open_inference_protocol=true
only) says ready:true with no worker up. A v2 client (tritonclient.http) talks to one URL for all
of them, so the front (scripts/serving/front.py) serves them:

    GET  /v2/health/live                      200 while TorchServe's inference API answers at all
    GET  /v2/health/ready                     200 when scripts/serving/readiness.py says ready, else 400 and why
    GET  /v2                                  server metadata
    GET  /v2/models/{m}[/versions/{v}]        model metadata: the v2 block of the handler's describe_handle()
    GET  /v2/models/{m}[/versions/{v}]/ready  200 when that model's workers are READY, else 400 (404: unknown)
    POST /v2/models/{m}[/versions/{v}]/infer  streamed to TorchServe: /v2/models/{m}/infer, /predictions/{m}/{v}

This module holds the answers (blocking calls to the management API, with the management key
from TorchServe's key_file.json) and the pure transforms; the HTTP side is the front's. Every
error is {"error": ...}: TorchServe's refusals (wrong key, unknown model, 413, 503) keep their
status, their message wrapped. docs/protocols.md says more.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from http import HTTPStatus
from importlib import metadata as package_metadata
from pathlib import Path
from urllib.parse import quote

from scripts.serving import keyfile, readiness
from scripts.serving.overload import busy_message
from scripts.serving.ts_config import local_url, read_properties, setting

NAME = "torchserve"
EXTENSIONS = ("binary_tensor_data",)
DEFAULT_PLATFORM = "torchserve"  # when a handler's v2 block names none
DESCRIBE_TIMEOUT_S = 30  # a describe is a job in the worker's queue, behind the requests waiting there
FORWARD_TIMEOUT_S = 120  # above default_response_timeout (60 s), as the k8s gateway's proxy_read_timeout
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "expect"})
NOT_RELAYED = HOP_BY_HOP | {"server", "date", "content-length"}
NOT_RELAYED_WHEN_WRAPPED = NOT_RELAYED | {"content-type", "inference-header-content-length"}
TORCHSERVE_MAX_REQUEST_SIZE = 6553500  # TorchServe's default max_request_size
EMBEDDING_OUTPUT = "embedding"  # the v2 output that makes a model an embeddings model (/v1/embeddings)
LOOKUP_TTL_S = 10  # how long which models serve embeddings is remembered: no management call per request
FORGOTTEN = object()  # remembered_embedding_dimensions: not known, or known too long ago
PATHS = "/v2, /v2/health/live, /v2/health/ready, /v2/models/<model>[/versions/<version>][/ready | /infer]"


class V2Error(Exception):
    """A refusal: an HTTP status and the message of the {"error": ...} body (plus `extra` fields)."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def body(self) -> dict:
        return {**self.extra, "error": str(self)}


FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


def check_infer_body_type(media_type: str) -> None:
    """v2 infer bodies are JSON or the binary tensor extension, never a form: TorchServe would decode
    every field of one into a parameter for the worker first (Netty 4.1.53, CVE-2024-29025: 19 MiB
    of fields held a worker 47 s; docs/security.md), so a form is refused before it is relayed."""
    kind = media_type.strip().lower()
    if kind in FORM_TYPES:
        raise V2Error(415, f"v2 infer takes JSON or the binary tensor extension, not a form ({kind})")


def infer_target(model: str, version: str | None, query: str = "") -> str:
    """Where TorchServe takes an infer: its v2 route has no version, /predictions/{m}/{v} does."""
    path = f"/predictions/{quote(model, safe='')}/{quote(version, safe='')}" if version else f"/v2/models/{quote(model, safe='')}/infer"
    return f"{path}?{query}" if query else path


WORDLESS = {413: "the request body is over TorchServe's max_request_size"}
"""What TorchServe means by a status it sends with no body: Netty refuses a body over max_request_size
before any handler runs, and says nothing."""


def torchserve_message(status: int, body: bytes) -> str:
    """What TorchServe said, in one line: its JSON error's type and message, else its text, else the status."""
    text = body.decode("utf-8", errors="replace").strip()
    data = _json(text)
    if isinstance(data, dict) and "message" in data:
        busy = busy_message(str(data["message"]))
        if busy:
            return busy
        return f"{data['type']}: {data['message']}" if data.get("type") else str(data["message"])
    if text:
        return text
    if status in WORDLESS:
        return WORDLESS[status]
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def wrapped_error(status: int, body: bytes) -> bytes | None:
    """None when an error body is v2 already ({"error": "..."}); else {"error": what TorchServe said}."""
    data = _json(body)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return None
    return json.dumps({"error": torchserve_message(status, body)}).encode()


def _json(data: str | bytes):
    try:
        return json.loads(data)
    except (ValueError, TypeError):
        return None


def v2_block(customized) -> dict | None:
    """The "v2" object of a customized describe; TorchServe may give either level as an object or a JSON string."""
    outer = _object(customized)
    return _object(outer.get("v2")) if outer is not None else None


def _object(value) -> dict | None:
    if isinstance(value, (str, bytes)):
        value = _json(value)
    return value if isinstance(value, dict) else None


def tensors(block: dict, key: str) -> list[dict]:
    """The handler's inputs or outputs as v2 tensor metadata; ValueError naming what is missing."""
    found = block.get(key)
    if not isinstance(found, list):
        raise ValueError(f"{key} is not a list")
    for tensor in found:
        if not (isinstance(tensor, dict) and isinstance(tensor.get("name"), str) and isinstance(tensor.get("datatype"), str)
                and isinstance(tensor.get("shape"), list) and all(isinstance(d, int) for d in tensor["shape"])):
            raise ValueError(f"{key}: {tensor!r} is not {{name: str, datatype: str, shape: [int, ...]}}")
    return [{"name": t["name"], "datatype": t["datatype"], "shape": t["shape"]} for t in found]


def model_metadata(name: str, versions: list[str], block: dict) -> dict:
    """The v2 model metadata response, from the model's versions and its handler's v2 block."""
    return {"name": name, "versions": versions, "platform": block.get("platform") or DEFAULT_PLATFORM,
            "inputs": tensors(block, "inputs"), "outputs": tensors(block, "outputs")}


def server_metadata() -> dict:
    try:
        version = package_metadata.version("torchserve")
    except package_metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": NAME, "version": version, "extensions": list(EXTENSIONS)}


def embedding_size(metadata: dict) -> int | None:
    """The vector size of a model whose v2 outputs hold `embedding` [-1, size]; None for any other model."""
    for output in metadata.get("outputs", []):
        shape = output.get("shape", [])
        if output.get("name") == EMBEDDING_OUTPUT and len(shape) == 2 and isinstance(shape[1], int) and shape[1] > 0:
            return shape[1]
    return None


class Front:
    """The answers, from TorchServe's inference and management APIs; model metadata cached per version."""

    def __init__(self, server: readiness.Server, inference_url: str, max_request_size: int = TORCHSERVE_MAX_REQUEST_SIZE) -> None:
        self.server = server
        self.inference_url = inference_url.rstrip("/")
        self.max_request_size = max_request_size
        self._described: dict[tuple[str, str, str], dict] = {}
        self._describing: dict[tuple[str, str, str], threading.Lock] = {}
        self._embedding_sizes: dict[str, tuple[int | None, float]] = {}
        self._key: tuple[int, str | None] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Path, key_file: Path, workflows: list[str], env: dict[str, str] | None = None) -> "Front":
        """TorchServe's addresses and max_request_size as scripts/serving/ts_config.py reads them (TS_<KEY> wins)."""
        env = dict(os.environ) if env is None else env
        text = Path(config).read_text()
        size = setting(read_properties(text), "max_request_size", env)
        return cls(readiness.Server.from_config(config, key_file, workflows, env), local_url(text, "inference", env),
                   int(size) if size else TORCHSERVE_MAX_REQUEST_SIZE)

    def inference_key(self) -> str | None:
        """The inference key of key_file.json, read again when the file changes; None with token auth off."""
        try:
            changed = self.server.key_file.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._key is None or self._key[0] != changed:
            self._key = (changed, keyfile.read_keys(self.server.key_file).get("inference"))
        return self._key[1]

    def embedding_dimensions(self, name: str) -> int | None:
        """The vector size of model `name` if it serves embeddings, else None (not registered, or another
        kind of model); remembered for LOOKUP_TTL_S."""
        cached = self.remembered_embedding_dimensions(name)
        if cached is not FORGOTTEN:
            return cached
        try:
            size = embedding_size(self.model_metadata(name, None))
        except V2Error as error:
            if error.status not in (404, 501):
                raise
            size = None
        with self._lock:
            self._embedding_sizes[name] = (size, time.monotonic() + LOOKUP_TTL_S)
        return size

    def remembered_embedding_dimensions(self, name: str):
        """embedding_dimensions' answer while it is remembered, else FORGOTTEN: no management call,
        so the event loop may ask without a thread."""
        with self._lock:
            cached = self._embedding_sizes.get(name)
        return cached[0] if cached is not None and time.monotonic() < cached[1] else FORGOTTEN

    def embedding_models(self) -> list[str]:
        """The registered models that serve embeddings; those with no READY worker yet, and the models
        TorchServe registers for a workflow's nodes, are left out."""
        status, listing = self._management("/models?limit=1000")
        if status != 200 or not isinstance(listing, dict):
            raise V2Error(502, f"TorchServe's management API answered GET /models with {status}: {listing}")
        status, workflows = self._management("/workflows?limit=1000")
        inner = tuple(f"{w.get('workflowName')}__" for w in (workflows.get("workflows", []) if status == 200 and isinstance(workflows, dict) else []))
        names = []
        for name in (m["modelName"] for m in listing.get("models", [])):
            if inner and name.startswith(inner):  # a workflow's own copy of a model (<workflow>__<model>): not served alone
                continue
            try:
                if self.embedding_dimensions(name) is not None:
                    names.append(name)
            except V2Error as error:
                if error.status != 503:  # 503: no READY worker to describe it yet
                    raise
        return names

    def live(self) -> dict:
        """Live while the inference API answers at all (/ping with the key when there is one)."""
        try:
            key = readiness.fresh_key(self.server.key_file, "inference", self.server.management_url)
        except (OSError, ValueError, KeyError):  # a key file being rewritten: ask without a key
            key = None
        try:
            readiness.request(f"{self.inference_url}/ping", key)
        except (OSError, http.client.HTTPException) as error:
            raise V2Error(400, f"TorchServe's inference API at {self.inference_url} does not answer: {error}", live=False) from None
        return {"live": True}

    def ready(self) -> dict:
        problems = readiness.missing(self.server)
        if problems:
            raise V2Error(400, "not ready: " + "; ".join(problems), ready=False)
        return {"ready": True}

    def model_ready(self, name: str, version: str | None) -> dict:
        """Every version asked about has at least minWorkers workers, all READY (readiness.model_problems)."""
        problems = readiness.model_problems(name, self.versions(name, version))
        answer = {"name": name, **({"version": version} if version else {})}
        if problems:
            raise V2Error(400, "not ready: " + "; ".join(problems), **answer, ready=False)
        return {**answer, "ready": True}

    def model_metadata(self, name: str, version: str | None) -> dict:
        every = self.versions(name)
        names = [str(v.get("modelVersion")) for v in every]
        chosen = self.versions(name, "")[0] if version is None else next((v for v in every if v.get("modelVersion") == version), None)
        if chosen is None:
            raise V2Error(404, f"model {name} has no version {version} (versions: {', '.join(names)})")
        key = (name, str(chosen.get("modelVersion")), str(chosen.get("modelUrl")))
        with self._lock:
            block = self._described.get(key)
            describing = self._describing.setdefault(key, threading.Lock())
        if block is None:
            with describing:  # the first askers wait for one describe: each is a job in the model's queue
                with self._lock:
                    block = self._described.get(key)
                if block is None:
                    block = self._describe(name, key[1], chosen)
                    answer = self._metadata(name, names, key, block)  # a malformed block is not kept
                    with self._lock:
                        self._described[key] = block
                    return answer
        return self._metadata(name, names, key, block)

    @staticmethod
    def _metadata(name: str, names: list[str], key: tuple[str, str, str], block: dict) -> dict:
        try:
            return model_metadata(name, names, block)
        except ValueError as error:
            raise V2Error(500, f"model {name} version {key[1]}: its handler's v2 metadata is malformed: {error}") from None

    def versions(self, name: str, version: str | None = None) -> list[dict]:
        """GET /models/{name}/all, /models/{name}/{version}, or (version "") the default version's."""
        path = f"/models/{quote(name, safe='')}" + ("/all" if version is None else f"/{quote(version, safe='')}" if version else "")
        status, body = self._management(path)
        if status == 404:
            raise V2Error(404, f"model {name}{f' version {version}' if version else ''} is not registered")
        if status != 200 or not isinstance(body, list) or not body:
            raise V2Error(502, f"TorchServe's management API answered GET {path} with {status}: {body}")
        return body

    def _describe(self, name: str, version: str, described: dict) -> dict:
        """The handler's v2 block, asked of a worker (GET /models/{m}/{v}?customized=true)."""
        if not any(w.get("status") == "READY" for w in described.get("workers", [])):
            raise V2Error(503, f"model {name} version {version} has no READY worker to describe it")
        path = f"/models/{quote(name, safe='')}/{quote(version, safe='')}?customized=true"
        status, body = self._management(path, DESCRIBE_TIMEOUT_S)
        if status != 200:
            message = torchserve_message(status, json.dumps(body).encode() if not isinstance(body, str) else body.encode())
            raise V2Error(status if 400 <= status < 600 else 502, f"describe of model {name} version {version}: {message}")
        block = v2_block(body[0].get("customizedMetadata") if isinstance(body, list) and body else None)
        if block is None:
            raise V2Error(501, f"model {name} version {version}: its handler describes no v2 tensors "
                               '(describe_handle() returning {"v2": {"platform", "inputs", "outputs"}}: docs/protocols.md)')
        return block

    def _management(self, path: str, timeout_s: float = readiness.TIMEOUT_S) -> tuple[int, object]:
        try:
            return self.server.get(path, timeout_s)
        except TimeoutError:
            raise V2Error(504, f"TorchServe's management API did not answer GET {path} within {timeout_s:g} s") from None
        except (OSError, ValueError, KeyError, http.client.HTTPException) as error:
            raise V2Error(503, f"TorchServe's management API at {self.server.management_url} does not answer: {error}") from None

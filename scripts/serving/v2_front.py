"""The Open Inference Protocol (KServe v2) in front of TorchServe: health, readiness, metadata, infer.

    python -m scripts.serving.v2_front --listen 127.0.0.1:8090 --config config.properties --key-file key_file.json \\
        --workflows photo_embedding.war
    python -m scripts.serving.serve --v2-front 127.0.0.1:8090 ...     # make serve, SERVE_V2_FRONT: beside TorchServe
                                                               # (as a child: scripts/serving/v2_sidecar.py)

TorchServe 0.12 routes POST /v2/models/{m}/infer (no version) to the model's handler, but has no
model metadata or model ready route (404), and its /v2/health/ready (ts_open_inference_protocol=true
only) says ready:true with no worker up. A v2 client (tritonclient.http) talks to one URL for all
of them, so this small server answers them:

    GET  /v2/health/live                      200 while TorchServe's inference API answers at all
    GET  /v2/health/ready                     200 when scripts/serving/readiness.py says ready, else 400 and why
    GET  /v2                                  server metadata
    GET  /v2/models/{m}[/versions/{v}]        model metadata: the v2 block of the handler's describe_handle()
    GET  /v2/models/{m}[/versions/{v}]/ready  200 when that model's workers are READY, else 400 (404: unknown)
    POST /v2/models/{m}[/versions/{v}]/infer  streamed to TorchServe: /v2/models/{m}/infer, /predictions/{m}/{v}

Health, readiness and metadata need no token (probes, as in Triton); the front's own management
calls carry the management key from TorchServe's key_file.json (absent: token auth off). Infer
carries the client's Authorization to TorchServe, which checks it. Every error is {"error": ...}:
TorchServe's refusals (wrong key, unknown model, 413, 503) keep their status, their message wrapped.
Standard library only, like scripts/serving/readiness.py: the image's runtime has nothing else to spare.
docs/protocols.md says more.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata as package_metadata
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from scripts.serving import readiness
from scripts.serving.ts_config import local_url

NAME = "torchserve"
EXTENSIONS = ("binary_tensor_data",)
DEFAULT_PLATFORM = "torchserve"  # when a handler's v2 block names none
DESCRIBE_TIMEOUT_S = 30  # a describe is a job in the worker's queue, behind the requests waiting there
FORWARD_TIMEOUT_S = 120  # above default_response_timeout (60 s), as the k8s gateway's proxy_read_timeout
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "expect"})
NOT_RELAYED = HOP_BY_HOP | {"server", "date", "content-length"}
NOT_RELAYED_WHEN_WRAPPED = NOT_RELAYED | {"content-type", "inference-header-content-length"}
PATHS = "/v2, /v2/health/live, /v2/health/ready, /v2/models/<model>[/versions/<version>][/ready | /infer]"


class V2Error(Exception):
    """A refusal: an HTTP status and the message of the {"error": ...} body (plus `extra` fields)."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def body(self) -> dict:
        return {**self.extra, "error": str(self)}


@dataclass(frozen=True)
class Route:
    """What a request asks for; kind: server, live, ready, model, model_ready or infer."""

    kind: str
    model: str | None = None
    version: str | None = None


def route(method: str, target: str) -> Route:
    """The Route of a request line (path and query); V2Error 404 for no such path, 405 for a wrong method."""
    path = urlsplit(target).path
    found = _match([unquote(part) for part in path.rstrip("/").split("/")[1:]])
    if found is None:
        raise V2Error(404, f"no such path: {path} (the v2 paths: {PATHS})")
    wanted = "POST" if found.kind == "infer" else "GET"
    if method not in (wanted, "HEAD" if wanted == "GET" else wanted):
        raise V2Error(405, f"{method} {path}: use {wanted}")
    return found


def _match(parts: list[str]) -> Route | None:
    fixed = {("v2",): "server", ("v2", "health", "live"): "live", ("v2", "health", "ready"): "ready"}
    if tuple(parts) in fixed:
        return Route(fixed[tuple(parts)])
    if len(parts) < 3 or parts[:2] != ["v2", "models"] or not parts[2]:
        return None
    model, rest, version = parts[2], parts[3:], None
    if len(rest) >= 2 and rest[0] == "versions" and rest[1]:
        version, rest = rest[1], rest[2:]
    kind = {(): "model", ("ready",): "model_ready", ("infer",): "infer"}.get(tuple(rest))
    return Route(kind, model, version) if kind else None


def infer_target(found: Route, query: str = "") -> str:
    """Where TorchServe takes an infer: its v2 route has no version, /predictions/{m}/{v} does."""
    model = quote(found.model, safe="")
    path = f"/predictions/{model}/{quote(found.version, safe='')}" if found.version else f"/v2/models/{model}/infer"
    return f"{path}?{query}" if query else path


def torchserve_message(status: int, body: bytes) -> str:
    """What TorchServe said, in one line: its JSON error's type and message, else its text, else the status."""
    text = body.decode("utf-8", errors="replace").strip()
    data = _json(text)
    if isinstance(data, dict) and "message" in data:
        return f"{data['type']}: {data['message']}" if data.get("type") else str(data["message"])
    if text:
        return text
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


class Front:
    """The answers, from TorchServe's inference and management APIs; model metadata cached per version."""

    def __init__(self, server: readiness.Server, inference_url: str) -> None:
        self.server = server
        self.inference_url = inference_url.rstrip("/")
        self._described: dict[tuple[str, str, str], dict] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Path, key_file: Path, workflows: list[str], env: dict[str, str] | None = None) -> "Front":
        """TorchServe's addresses as scripts/serving/ts_config.py reads them (TS_<API>_ADDRESS wins over the config)."""
        env = dict(os.environ) if env is None else env
        return cls(readiness.Server.from_config(config, key_file, workflows, env), local_url(Path(config).read_text(), "inference", env))

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
        if block is None:
            block = self._describe(name, key[1], chosen)
        try:
            answer = model_metadata(name, names, block)
        except ValueError as error:
            raise V2Error(500, f"model {name} version {key[1]}: its handler's v2 metadata is malformed: {error}") from None
        with self._lock:
            self._described[key] = block
        return answer

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


class Body:
    """The request body as a file http.client sends from: Content-Length bytes, or a chunked body decoded."""

    def __init__(self, stream, length: int | None) -> None:
        self.stream = stream
        self.left = length  # None: chunked, and `chunk_left` counts down the current chunk
        self.chunk_left = 0
        self.done = length == 0

    def read(self, size: int = CHUNK) -> bytes:
        if self.done:
            return b""
        if self.left is not None:
            data = self.stream.read(min(size, self.left))
            self.left -= len(data)
            self.done = self.left == 0 or not data
            return data
        if self.chunk_left == 0:
            self.chunk_left = int(self.stream.readline(1024).split(b";")[0].strip() or b"0", 16)
            if self.chunk_left == 0:  # the last chunk: skip the trailers
                while self.stream.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self.done = True
                return b""
        data = self.stream.read(min(size, self.chunk_left))
        self.chunk_left -= len(data)
        if not data:
            self.done = True
        elif self.chunk_left == 0:
            self.stream.readline(1024)  # the CRLF after a chunk
        return data


class Upstream(http.client.HTTPConnection):
    """A connection to TorchServe with Nagle off: http.client sends headers and body in separate
    writes, and Nagle's wait for the ACK of the first (delayed by the peer) cost 40 ms a request."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Handler(BaseHTTPRequestHandler):
    """One request: a v2 answer of the front's own, or an infer relayed to TorchServe."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes here too
    server_version = "torchserve-v2-front"
    server: FrontServer
    body: Body | None = None

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self.body = None  # one handler serves every request of a kept-alive connection
        try:
            found = route(self.command, self.path)
            if found.kind == "infer":
                self.forward(found)
            else:
                self.send_json(200, self.answer(found))
        except V2Error as error:
            self.send_json(error.status, error.body())
        except (BrokenPipeError, ConnectionResetError):  # the client left
            self.close_connection = True
        except Exception:  # logged with its traceback; the client gets no internals
            self.log_error("unexpected error on %s %s", self.command, self.path)
            traceback.print_exc(file=sys.stderr)
            self.send_json(500, {"error": "the v2 front failed on this request; see its log"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def answer(self, found: Route) -> dict:
        front = self.server.front
        if found.kind == "server":
            return server_metadata()
        if found.kind == "live":
            return front.live()
        if found.kind == "ready":
            return front.ready()
        if found.kind == "model":
            return front.model_metadata(found.model, found.version)
        return front.model_ready(found.model, found.version)

    def forward(self, found: Route) -> None:
        """Stream the request to TorchServe and its answer back; error bodies made v2 ({"error": ...})."""
        self.body = self.request_body()
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        if self.body.left is None:
            headers.pop("Content-Length", None)  # chunked on: http.client chunks it again
        elif self.body.left == 0:
            headers["Content-Length"] = "0"  # else http.client would send an empty chunked body
        url = urlsplit(self.server.front.inference_url)
        connection = Upstream(url.hostname, url.port, timeout=FORWARD_TIMEOUT_S, blocksize=CHUNK)
        try:
            sent = None
            try:
                connection.request("POST", infer_target(found, urlsplit(self.path).query), body=self.body, headers=headers)
            except OSError as error:  # TorchServe may answer (413) and stop reading: its answer can still be read
                sent = error
            try:
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as error:
                raise V2Error(502, f"no answer from TorchServe's inference API at {self.server.front.inference_url}: {sent or error}") from None
            self.relay(response)
        finally:
            connection.close()

    def request_body(self) -> Body:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return Body(self.rfile, None)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise V2Error(400, f"Content-Length {self.headers['Content-Length']!r} is not a number") from None
        return Body(self.rfile, length)

    def relay(self, response: http.client.HTTPResponse) -> None:
        if response.status >= 400:
            data = response.read()  # error bodies are small; a v2 client wants {"error": ...}
            wrapped = wrapped_error(response.status, data)
            skip = NOT_RELAYED if wrapped is None else NOT_RELAYED_WHEN_WRAPPED
            extra = [] if wrapped is None else [("Content-Type", "application/json")]
            self.start(response, skip, extra + [("Content-Length", str(len(wrapped or data)))])
            self.wfile.write(wrapped or data)
            return
        length = response.getheader("Content-Length")
        self.start(response, NOT_RELAYED, [("Content-Length", length)] if length is not None else [("Transfer-Encoding", "chunked")])
        while chunk := response.read1(CHUNK):
            self.wfile.write(chunk if length is not None else b"%X\r\n%s\r\n" % (len(chunk), chunk))
        if length is None:
            self.wfile.write(b"0\r\n\r\n")

    def start(self, response: http.client.HTTPResponse, skip: frozenset, extra: list[tuple[str, str]]) -> None:
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in skip:
                self.send_header(name, value)
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers_closing_if_unread()

    def send_json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers_closing_if_unread()
        if self.command != "HEAD":
            self.wfile.write(data)

    def end_headers_closing_if_unread(self) -> None:
        """A request body left (partly) unread would be taken for the next request: close the connection."""
        if self.body_unread():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    def body_unread(self) -> bool:
        if self.body is not None:
            return not self.body.done
        return self.headers.get("Content-Length", "0").strip() not in ("", "0") or "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def log_request(self, code="-", size="-") -> None:
        """Only 5xx: probes every few seconds would drown the rest (TorchServe's access log has the infers)."""
        if isinstance(code, int) and code >= 500:
            super().log_request(code, size)


class FrontServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], front: Front) -> None:
        super().__init__(address, Handler)
        self.front = front


def listen_arg(text: str) -> str:
    """An argparse type: HOST:PORT checked, kept as written."""
    parse_listen(text)
    return text


def parse_listen(text: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:8090")
    return host or "0.0.0.0", int(port)


def exit_with_parent(parent_pid: int, shut_down, poll_s: float = 1.0) -> None:
    """Shut down once the parent is gone: a SIGKILLed serve.py must not leave the front holding its
    port. An orphan is re-parented (to init or a subreaper), so its parent pid changes."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    print(f"v2 front: parent {parent_pid} is gone, shutting down", flush=True)
    shut_down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090), metavar="HOST:PORT")
    parser.add_argument("--config", type=Path, default=Path("config.properties"), help="TorchServe's config (its addresses)")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="TorchServe's; absent: token auth off")
    parser.add_argument("--workflows", nargs="*", default=[], help="workflow names or .war archives /v2/health/ready waits for")
    parser.add_argument("--parent-pid", type=int, help="exit once this process is gone (set by scripts/serving/v2_sidecar.py)")
    args = parser.parse_args(argv)
    front = Front.from_config(args.config, args.key_file, args.workflows)
    httpd = FrontServer(args.listen, front)

    def shut_down(_signum=None, _frame=None):  # shutdown() waits for serve_forever, which runs in this thread
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    if args.parent_pid:
        threading.Thread(target=exit_with_parent, args=(args.parent_pid, shut_down), daemon=True).start()
    host, port = httpd.server_address[:2]
    print(f"v2 front: http://{host}:{port} -> TorchServe {front.inference_url} (management {front.server.management_url})", flush=True)
    httpd.serve_forever()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

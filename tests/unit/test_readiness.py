"""scripts/serving/readiness.py without a server: what the config asks for, what a describe answer lacks,
and the whole check against a stub management API (real HTTP on a free port)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.serving import readiness, server_stop
from scripts.serving.ts_config import read_properties


@pytest.mark.parametrize(("lines", "expected"), [
    ("load_models=efficientnet_lite0=efficientnet_lite0.mar,minilm=minilm.mar", ["efficientnet_lite0", "minilm"]),
    ("load_models=ALL", []),
    ("load_models=resnet.mar, bert", ["resnet", "bert"]),
    ('models={"a": {"1.0": {"marName": "a.mar"}}}\nload_models=a.mar,b', ["a", "b"]),
    ('models={"a": {"1.0": \\\n  {"marName": "a.mar"}}}', ["a"]),
    ("# load_models=x\ninference_address=http://127.0.0.1:1", []),
])
def test_configured_models(lines, expected):
    assert readiness.configured_models(read_properties(lines)) == expected


def worker(status):
    return {"id": "9000", "status": status}


@pytest.mark.parametrize(("versions", "problem"), [
    ([{"modelVersion": "1.0", "minWorkers": 1, "workers": [worker("READY")]}], None),
    ([{"modelVersion": "1.0", "minWorkers": 2, "workers": [worker("READY"), worker("READY")]}], None),
    ([{"modelVersion": "1.0", "minWorkers": 0, "workers": []}], None),          # scaled to zero on purpose
    ([{"modelVersion": "1.0", "minWorkers": 1, "workers": []}], "0 of 1 workers READY (none started)"),
    ([{"modelVersion": "1.0", "minWorkers": 2, "workers": [worker("READY")]}], "1 of 2"),
    ([{"modelVersion": "1.0", "minWorkers": 1, "workers": [worker("READY"), worker("UNLOADING")]}], "1 of 2"),
    ([{"modelVersion": "1.0", "minWorkers": 1, "workers": [worker("READY")]},
      {"modelVersion": "2.0", "minWorkers": 3, "workers": [worker("READY")]}], "m 2.0: 1 of 3"),
])
def test_model_problems(versions, problem):
    problems = readiness.model_problems("m", versions)
    assert (problems == []) if problem is None else (len(problems) == 1 and problem in problems[0])


class StubManagement(BaseHTTPRequestHandler):
    """GET /models, /models/{name}/all, /workflows/{name}, answering from the class's `state`."""

    state: dict = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.seen_auth.append(self.headers.get("Authorization"))
        path = self.path.split("?")[0].strip("/").split("/")
        state = self.state
        if path == ["models"]:
            body = {"models": [{"modelName": name} for name in state["models"]]}
        elif path[0] == "models" and path[1] in state["models"]:
            body = state["models"][path[1]]
        elif path[0] == "workflows" and path[1] in state["workflows"]:
            body = [{"workflowName": path[1]}]
        else:
            return self.answer(404, {"code": 404})
        self.answer(200, body)

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubManagement)
    server.seen_auth = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def ready_version(workers=1):
    return [{"modelVersion": "1.0", "minWorkers": workers, "workers": [worker("READY")] * workers}]


def test_missing_names_each_gap_until_ready(stub, tmp_path):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"management": {"key": "m-key", "expiration time": "2999-01-01T00:00:00Z"}}))
    server = readiness.Server(url, key_file, models=["a", "b"], workflows=["wf"])
    StubManagement.state = {"models": {"a": [{"modelVersion": "1.0", "minWorkers": 1, "workers": []}]}, "workflows": {}}
    problems = readiness.missing(server)
    assert problems == ["model a 1.0: 0 of 1 workers READY (none started)", "model b: not registered",
                        "workflow wf: not registered (404)"]
    StubManagement.state = {"models": {"a": ready_version(), "b": ready_version(2), "wf__a": ready_version()},
                            "workflows": {"wf": {}}}
    assert readiness.missing(server) == []
    assert set(stub.seen_auth) == {"Bearer m-key"}
    assert "3 models" in readiness.summary(server) and "workflows: wf" in readiness.summary(server)


def test_a_stopping_server_is_not_ready_however_ready_its_workers(stub, tmp_path):
    """scripts/serving/serve.py on SIGTERM (or the preStop hook) marks it: no new traffic while it drains."""
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    server = readiness.Server(url, tmp_path / "key_file.json", models=["a"])
    StubManagement.state = {"models": {"a": ready_version()}, "workflows": {}}
    assert readiness.missing(server) == []
    server_stop.mark_stopping(tmp_path, "scripts/serving/serve.py got SIGTERM")
    assert readiness.missing(server) == ["stopping: scripts/serving/serve.py got SIGTERM"]
    server_stop.clear_stopping(tmp_path)
    assert readiness.missing(server) == []


def test_a_server_that_is_not_listening_is_not_ready(tmp_path):
    server = readiness.Server("http://127.0.0.1:9", tmp_path / "none.json")
    assert readiness.missing(server)[0].startswith("management API at http://127.0.0.1:9: ")


def test_env_address_wins_and_0000_is_reached_on_loopback(tmp_path):
    config = tmp_path / "c.properties"
    config.write_text("management_address=http://0.0.0.0:8081\nload_models=ALL\n")
    assert readiness.Server.from_config(config, tmp_path / "k", [], env={}).management_url == "http://127.0.0.1:8081"
    env = {"TS_MANAGEMENT_ADDRESS": "http://127.0.0.1:9999"}
    server = readiness.Server.from_config(config, tmp_path / "k", ["photo_embedding.war"], env=env)
    assert server.management_url == "http://127.0.0.1:9999" and server.workflows == ["photo_embedding"]

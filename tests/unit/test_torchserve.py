"""scripts/client/torchserve.py: the poll helper's deadline, and the client's URLs and auth headers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from scripts.client.torchserve import Client, TorchServe, poll_until, write_config


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps({"inference": {"key": "inf-key"}, "management": {"key": "mgmt-key"}, "API": {"key": "api"}}))
    return path


def test_poll_until_returns_the_first_truthy_result():
    answers = iter([None, 0, "", "ready", "later"])
    assert poll_until(lambda: next(answers), 5, "an answer", interval_s=0) == "ready"


def test_poll_until_says_what_it_waited_for_at_the_deadline():
    calls = []
    with pytest.raises(TimeoutError, match=r"gave up after 0.05 s waiting for the photo model to load"):
        poll_until(lambda: calls.append(1), 0.05, "the photo model to load", interval_s=0.01)
    assert len(calls) >= 2  # it polled until the deadline, not once


def test_poll_until_retries_ignored_errors_and_raises_others():
    answers = iter([ConnectionError("not listening"), ConnectionError("still not"), True])

    def check():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll_until(check, 5, "a connection", interval_s=0, ignore=(ConnectionError,)) is True

    def died():
        raise RuntimeError("the server died")

    with pytest.raises(RuntimeError, match="died"):  # at once, not after the 5 s
        poll_until(died, 5, "a connection", interval_s=0, ignore=(ConnectionError,))


def test_auth_headers_come_from_the_key_file(tmp_path):
    client = Client({"inference": "http://127.0.0.1:1", "management": "http://127.0.0.1:2"}, key_file(tmp_path))
    assert client.auth("inference") == {"Authorization": "Bearer inf-key"}
    assert client.auth("management") == {"Authorization": "Bearer mgmt-key"}
    assert client.keys["API"] == "api"
    assert Client(client.urls, tmp_path / "absent.json").auth("inference") == {}  # token auth off


def test_urls_are_joined_with_one_slash(tmp_path):
    client = Client.attach("http://127.0.0.1:8080/", "http://127.0.0.1:8081", tmp_path / "k.json")
    assert client.prediction_url("minilm") == "http://127.0.0.1:8080/predictions/minilm"
    assert client.url("management", "models/minilm/all") == "http://127.0.0.1:8081/models/minilm/all"
    assert "metrics" not in client.urls
    assert Client.attach("a", "b", tmp_path, metrics_url="http://127.0.0.1:8082").urls["metrics"] == "http://127.0.0.1:8082"


def test_a_started_server_reads_the_key_file_of_its_working_directory(tmp_path):
    server = TorchServe(tmp_path, {"inference": "http://127.0.0.1:1"}, process=None)
    assert server.key_file == tmp_path / "key_file.json"


def test_write_config_gives_free_ports_this_store_and_these_models(tmp_path):
    urls = write_config(tmp_path / "config.properties", tmp_path / "store", "m=m.mar")
    text = (tmp_path / "config.properties").read_text()
    assert len({url.rsplit(":", 1)[1] for url in urls.values()}) == 3
    for api, url in urls.items():
        assert f"{api}_address={url}" in text
    assert f"model_store={tmp_path / 'store'}" in text and "load_models=m=m.mar" in text


class _Echo(BaseHTTPRequestHandler):
    """Answers with the method, path and Authorization header it got."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = do_PUT = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def echo():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_each_api_gets_its_own_key(tmp_path, echo):
    client = Client.attach(echo, echo, key_file(tmp_path))
    assert client.predict("minilm", data=b"x").json() == {"method": "POST", "path": "/predictions/minilm",
                                                          "auth": "Bearer inf-key"}
    registered = client.register("m.mar", model_name="m", batch_size=4).json()
    assert registered == {"method": "POST", "path": "/models?url=m.mar&model_name=m&batch_size=4", "auth": "Bearer mgmt-key"}
    assert client.unregister("m/2.0").json()["path"] == "/models/m/2.0"
    assert client.describe("m").json()["method"] == "GET"
    assert client.register_workflow("w.war").json()["path"] == "/workflows?url=w.war"

"""Token auth on both APIs, registration from remote URLs refused, every port on loopback."""

from __future__ import annotations

import ipaddress
import shutil

import psutil
import pytest
import requests

pytestmark = [pytest.mark.reliability, pytest.mark.usefixtures("settled")]  # 10 s timeouts below


@pytest.mark.parametrize("api,path", [("inference", "/predictions/efficientnet_lite0"), ("management", "/models")])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_refused(server, api, path, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    method = "POST" if api == "inference" else "GET"
    response = requests.request(method, f"{server.urls[api]}{path}", headers=headers, data=b"x", timeout=10)
    assert response.status_code == 400
    assert response.json()["type"] == "InvalidKeyException"


def test_inference_key_does_not_open_management(server):
    response = requests.get(f"{server.urls['management']}/models", headers=server.auth("inference"), timeout=10)
    assert response.status_code == 400


@pytest.mark.parametrize("url", ["https://example.com/evil.mar", "http://127.0.0.1:1/evil.mar", "file:///tmp/evil.mar"])
def test_registration_outside_the_model_store_is_refused(server, url):
    response = server.manage("POST", "/models", params={"url": url})
    assert response.status_code == 404
    assert "allowed URL" in response.json()["message"]


@pytest.fixture
def outside_store(tmp_path, model_store):
    """A real archive in another folder that is also named model-store."""
    folder = tmp_path / "model-store"
    folder.mkdir()
    shutil.copy(model_store / "efficientnet_lite0.mar", folder / "evil.mar")
    return folder


@pytest.mark.parametrize("form, message", [
    ("file://{folder}/evil.mar", "does not match any allowed URL"),
    ("{folder}/evil.mar", "Model not found"),  # cut to its name, looked up in the store
    ("file://{folder}/../model-store/evil.mar", "Relative path is not allowed"),
    ("{folder}/../model-store/evil.mar", "Relative path is not allowed"),
    ("../{name}/evil.mar", "Relative path is not allowed"),
])
def test_registration_only_from_the_servers_own_store(server, outside_store, form, message):
    url = form.format(folder=outside_store, name=outside_store.name)
    params = {"url": url, "model_name": "evil", "initial_workers": 0, "synchronous": "true"}
    response = server.manage("POST", "/models", params=params)
    assert response.status_code == 404, response.text
    assert message in response.json()["message"]
    assert server.manage("GET", "/models/evil").status_code == 404


def test_a_bare_name_in_the_store_still_registers(server):
    params = {"url": "efficientnet_lite0.mar", "model_name": "bare_name", "initial_workers": 0, "synchronous": "true"}
    assert server.manage("POST", "/models", params=params).status_code == 200
    try:
        assert server.manage("GET", "/models/bare_name").status_code == 200
    finally:
        server.manage("DELETE", "/models/bare_name")


def named(process: psutil.Process, name: str) -> bool:
    """Whether `process` is `name`; False for one that ended after it was listed: Java starts TorchServe's
    metric collector (a Python child) every minute, and CI once met one ending between children() and name()."""
    try:
        return process.name() == name
    except psutil.NoSuchProcess:
        return False


def test_every_port_the_server_opens_is_on_loopback(server):
    """What Java really binds: inference, management, metrics and both gRPC ports (which the
    config does not name; TorchServe's default is loopback)."""
    java = [p for p in psutil.Process(server.process.pid).children(recursive=True) if named(p, "java")]
    assert len(java) == 1
    listening = [c.laddr for c in java[0].net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert len(listening) == 5, listening
    for address in listening:
        ip = ipaddress.ip_address(address.ip)
        assert (ip.ipv4_mapped or ip).is_loopback, address  # Java reports ::ffff:127.0.0.1
    ports = {address.port for address in listening}
    assert {int(url.rsplit(":", 1)[1]) for url in server.urls.values()} <= ports

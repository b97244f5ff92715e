"""Token auth on both APIs, and registration from remote URLs refused."""

from __future__ import annotations

import pytest
import requests


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

"""config.properties, the local config (`make serve`): what keeps the server private and locked."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from scripts.serving.ts_config import listen_addresses

pytestmark = pytest.mark.reliability

REPO = Path(__file__).resolve().parents[2]
CONFIG = (REPO / "config.properties").read_text()


def properties(text: str) -> dict[str, str]:
    """key=value lines, with java.util.Properties' backslash escapes undone."""
    pairs = re.findall(r"^([\w.]+)=(.*)$", text, flags=re.M)
    return {key: re.sub(r"\\(.)", r"\1", value) for key, value in pairs}


PROPERTIES = properties(CONFIG)


def test_every_api_listens_on_loopback():
    addresses = listen_addresses(CONFIG)
    assert set(addresses) == {"inference", "management", "metrics"}
    for api, (host, _) in addresses.items():
        assert ipaddress.ip_address(host).is_loopback, api


def test_grpc_stays_on_torchserves_loopback_default():
    """TorchServe binds gRPC to 127.0.0.1 unless grpc_*_address says otherwise (see test_auth)."""
    for key in ("grpc_inference_address", "grpc_management_address"):
        assert ipaddress.ip_address(PROPERTIES.get(key, "127.0.0.1")).is_loopback


def test_token_authorization_is_on():
    assert PROPERTIES["disable_token_authorization"] == "false"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/model-store/evil.mar",
        "http://127.0.0.1:8000/model-store/evil.mar",
        "HTTPS://EXAMPLE.COM/evil.mar",
        "s3://bucket/model-store/evil.mar",
        "file:///etc/passwd",
        "file:///tmp/evil.mar",
        "file:///tmp/x/model-store/evil.mar",
        "file:///srv/model-store/../model-store/evil.mar",
        "/tmp/x/model-store/evil.mar",
        "efficientnet_lite0.mar",
    ],
)
def test_allowed_urls_admit_no_url(url):
    """TorchServe matches each comma-separated regex against the whole URL, ignoring case. One
    that matches is copied into the store; none may match, so only names in the store register."""
    patterns = PROPERTIES["allowed_urls"].split(",")
    assert not any(re.fullmatch(p, url, flags=re.IGNORECASE) for p in patterns)


def test_the_container_config_admits_no_url_either():
    container = properties((REPO / "docker" / "config.properties").read_text())
    assert container["allowed_urls"] == PROPERTIES["allowed_urls"] == "^$"

"""Reading a TorchServe config.properties: the few values the scripts need."""

from __future__ import annotations

import re


def listen_addresses(config_text: str) -> dict[str, tuple[str, int]]:
    """inference/management/metrics -> (host, port), from the *_address lines."""
    found = {}
    for name, host, port in re.findall(r"^(\w+)_address=https?://([^:/\s]+):(\d+)", config_text, flags=re.M):
        found[name] = (host, int(port))
    return found


def local_url(config_text: str, api: str) -> str:
    """http://host:port of one API as seen from this machine (0.0.0.0 is reached on loopback)."""
    host, port = listen_addresses(config_text)[api]
    return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"

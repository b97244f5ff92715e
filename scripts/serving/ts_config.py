"""The one reader of a TorchServe config.properties: what the scripts need, as TorchServe resolves it.

TorchServe reads `key=value` lines (comments with # or !, values continued with a backslash) and,
where the config says `enable_envvars_config=true` (the image's and KServe's do), lets a
`TS_<KEY>` environment variable override a key: TS_INFERENCE_ADDRESS moves the inference API.
Every script that needs an address or a setting reads it here, with the environment the server
runs with, so that no two of them disagree on where the server listens. Standard library only:
the health check imports it.
"""

from __future__ import annotations

import os
from typing import Mapping
from urllib.parse import urlsplit

APIS = ("inference", "management", "metrics")


def read_properties(text: str) -> dict[str, str]:
    """key=value lines of a config.properties (comments and blank lines skipped)."""
    lines = text.replace("\\\n", "").splitlines()  # a value continued with a trailing backslash
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith(("#", "!")))
    return {key.strip(): value.strip() for key, value in pairs}


def setting(properties: Mapping[str, str], key: str, env: Mapping[str, str] | None = None) -> str | None:
    """One key's value: its TS_<KEY> environment variable if set, else the file's (None: neither)."""
    env = os.environ if env is None else env
    return env.get(f"TS_{key.upper()}") or properties.get(key)


def address(properties: Mapping[str, str], api: str, env: Mapping[str, str] | None = None) -> str:
    """One API's URL (inference, management, metrics) as reached from this host: 0.0.0.0 on loopback."""
    url = setting(properties, f"{api}_address", env)
    if not url:
        raise KeyError(f"{api}_address is not set in the config (nor TS_{api.upper()}_ADDRESS)")
    return url.replace("://0.0.0.0:", "://127.0.0.1:")


def listen_addresses(config_text: str, env: Mapping[str, str] | None = None) -> dict[str, tuple[str, int]]:
    """inference/management/metrics -> (host, port) where TorchServe binds them (env: {} for the file alone)."""
    properties = read_properties(config_text)
    found = {}
    for api in APIS:
        url = setting(properties, f"{api}_address", env)
        if url:
            parts = urlsplit(url)
            found[api] = (parts.hostname, parts.port)
    return found


def local_url(config_text: str, api: str, env: Mapping[str, str] | None = None) -> str:
    """http://host:port of one API as seen from this machine (0.0.0.0 is reached on loopback)."""
    return address(read_properties(config_text), api, env)

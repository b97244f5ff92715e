"""TorchServe's key_file.json: the one reader of its format (standard library only).

TorchServe 0.12 writes, in its working directory at start (token authorization on):

    {"management": {"key": "...", "expiration time": "2026-12-01T10:00:00.000Z"},
     "inference":  {"key": "...", "expiration time": "..."},
     "API":        {"key": "..."}}

The client (scripts/client/torchserve.py), the scripts and the container health check all read keys
through here, so a format change is mended in one place. Standard library only, because the
health check runs every few seconds inside the container.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

APIS = ("inference", "management", "API")


def read_keys(key_file: Path) -> dict[str, str]:
    """{"inference": key, "management": key, "API": key}; {} when the file is absent (auth off)."""
    key_file = Path(key_file)
    if not key_file.is_file():
        return {}
    data = json.loads(key_file.read_text())
    return {api: data[api]["key"] for api in APIS if api in data}


def auth_header(key_file: Path, api: str) -> dict[str, str]:
    """The `Authorization: Bearer` header for `api`, or {} with token auth off."""
    key = read_keys(key_file).get(api)
    return {"Authorization": f"Bearer {key}"} if key else {}


def expired(key_file: Path, api: str, now: datetime | None = None) -> bool:
    """Whether `api`'s key has passed its expiration time (keys without one never expire)."""
    data = json.loads(Path(key_file).read_text())
    stamp = data.get(api, {}).get("expiration time")
    if stamp is None:
        return False
    return datetime.fromisoformat(stamp) <= (now or datetime.now(timezone.utc))

"""Container health: GET /ping with the inference key from key_file.json; exit 0 when Healthy.

    python /app/docker/healthcheck.py       # the Dockerfile's HEALTHCHECK and the k8s exec probes

TorchServe 0.12 wants the inference key on /ping, and the key is made at start and written only
to key_file.json in the server's working directory. An HTTP probe cannot send a key read from a
file; a command run inside the container can. When the inference key has expired
(token_expiration_min) this asks for a fresh one with the API key, which never expires, as an
operator would: otherwise a healthy server would turn unhealthy at that hour and be restarted.
With token auth off there is no key file, and /ping is sent without a key.

Paths and addresses come from the environment docker/entrypoint.sh reads. Standard library only:
it runs every few seconds.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

APP = Path(__file__).resolve().parent.parent
TIMEOUT_S = 4


def read_properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def local_url(env: dict[str, str], config: dict[str, str], api: str) -> str:
    """The API's address, as TorchServe resolves it (TS_<API>_ADDRESS wins), seen from inside."""
    address = env.get(f"TS_{api.upper()}_ADDRESS") or config[f"{api}_address"]
    return address.replace("://0.0.0.0:", "://127.0.0.1:")


def expired(entry: dict, now: datetime) -> bool:
    return datetime.fromisoformat(entry["expiration time"]) <= now


def request(url: str, key: str | None, method: str = "GET") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=TIMEOUT_S) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def inference_key(key_file: Path, management_url: str) -> str | None:
    """The current inference key, renewed first when it has expired; None with token auth off."""
    if not key_file.is_file():
        return None
    keys = json.loads(key_file.read_text())
    if expired(keys["inference"], datetime.now(timezone.utc)):
        request(f"{management_url}/token?type=inference", keys["API"]["key"], method="POST")
        keys = json.loads(key_file.read_text())  # TorchServe rewrites the file with the new key
    return keys["inference"]["key"]


def healthy(env: dict[str, str]) -> bool:
    config = read_properties(Path(env.get("SERVE_CONFIG", APP / "docker/config.properties")))
    key_file = Path(env.get("SERVE_WORKDIR", "/home/model-server")) / "key_file.json"
    key = inference_key(key_file, local_url(env, config, "management"))
    status, body = request(f"{local_url(env, config, 'inference')}/ping", key)
    return status == 200 and json.loads(body).get("status") == "Healthy"


def main() -> int:
    try:
        ok = healthy(dict(os.environ))
    except (OSError, ValueError, KeyError) as error:  # not up yet, or a key file being rewritten
        print(f"healthcheck: {error}", file=sys.stderr)
        return 1
    print("healthcheck: " + ("Healthy" if ok else "not healthy"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Register workflow archives once TorchServe answers: it keeps no workflows across restarts
(no snapshot, no versioning), so `make serve` registers them at every start.

    python -m scripts.workflows photo_embedding.war            # against a running make serve
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import requests

from scripts.ts_config import local_url

READY_TIMEOUT_S = 300
REGISTER_TIMEOUT_S = 600


def management_headers(key_file: Path) -> dict[str, str]:
    """The management key when token auth is on (TorchServe wrote key_file.json), else nothing."""
    if not key_file.is_file():
        return {}
    return {"Authorization": f"Bearer {json.loads(key_file.read_text())['management']['key']}"}


def wait_for_management(url: str, key_file: Path, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/workflows", headers=management_headers(key_file), timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout, ValueError, KeyError):
            pass  # not listening yet, or the key file is still being written
        time.sleep(0.5)
    raise TimeoutError(f"the management API at {url} did not answer within {timeout_s:.0f} s")


def register(url: str, war: str, key_file: Path) -> str:
    """Register one archive of the workflow store; returns TorchServe's status message."""
    response = requests.post(f"{url}/workflows", params={"url": war}, headers=management_headers(key_file),
                             timeout=REGISTER_TIMEOUT_S)
    message = response.json().get("status") or response.json().get("message", response.text)
    if response.status_code != 200:
        raise RuntimeError(f"registering {war} failed ({response.status_code}): {message}")
    return message


def register_all(config: Path, wars: list[str], key_file: Path = Path("key_file.json")) -> None:
    url = local_url(config.read_text(), "management")
    wait_for_management(url, key_file)
    for war in wars:
        print(f"workflows: {register(url, war, key_file)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wars", nargs="+", help="archive names in the workflow store")
    parser.add_argument("--config", type=Path, default=Path("config.properties"))
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    args = parser.parse_args(argv)
    try:
        register_all(args.config, args.wars, args.key_file)
    except (RuntimeError, TimeoutError, requests.RequestException) as exc:
        print(f"workflows: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

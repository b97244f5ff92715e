"""Register workflow archives once TorchServe answers: it keeps no workflows across restarts
(no snapshot, no versioning), so `make serve` registers them at every start.

    python -m scripts.workflows photo_embedding.war            # against a running make serve
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import requests

from scripts.torchserve import Client, poll_until
from scripts.ts_config import local_url

READY_TIMEOUT_S = 300
REGISTER_TIMEOUT_S = 600


def wait_for_management(client: Client, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until GET /workflows answers 200: not listening yet, or the key file half-written, is "not yet"."""
    poll_until(lambda: client.manage("GET", "/workflows", timeout_s=5).status_code == 200, timeout_s,
               f"the management API at {client.urls['management']}",
               ignore=(requests.ConnectionError, requests.Timeout, ValueError, KeyError))


def register(client: Client, war: str) -> str:
    """Register one archive of the workflow store; returns TorchServe's status message."""
    response = client.register_workflow(war, timeout_s=REGISTER_TIMEOUT_S)
    message = response.json().get("status") or response.json().get("message", response.text)
    if response.status_code != 200:
        raise RuntimeError(f"registering {war} failed ({response.status_code}): {message}")
    return message


def register_all(config: Path, wars: list[str], key_file: Path = Path("key_file.json")) -> None:
    client = Client({"management": local_url(config.read_text(), "management")}, key_file)
    wait_for_management(client)
    for war in wars:
        print(f"workflows: {register(client, war)}", flush=True)


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

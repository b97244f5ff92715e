"""Register workflow archives once TorchServe answers: it keeps no workflows across restarts
(no snapshot, no versioning), so `make serve` registers them at every start.

    python -m scripts.serving.workflows photo_embedding.war            # against a running make serve

Standard library only (scripts/serving/readiness.py's requests): the server runs it, and needs no client library.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import quote

from scripts.serving.readiness import Server, management_key, poll_until, request

READY_TIMEOUT_S = 300
REGISTER_TIMEOUT_S = 600


def wait_for_management(server: Server, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until GET /workflows answers 200: not listening yet, or the key file half-written, is "not yet"."""
    poll_until(lambda: server.get("/workflows")[0] == 200, timeout_s, f"the management API at {server.management_url}",
               ignore=(OSError, ValueError, KeyError))


def register(server: Server, war: str) -> str:
    """Register one archive of the workflow store; returns TorchServe's status message."""
    status, body = request(f"{server.management_url}/workflows?url={quote(war, safe='')}",
                           management_key(server.key_file, server.management_url), method="POST", timeout_s=REGISTER_TIMEOUT_S)
    message = (body.get("status") or body.get("message")) if isinstance(body, dict) else body
    if status != 200:
        raise RuntimeError(f"registering {war} failed ({status}): {message}")
    return str(message)


def register_all(config: Path, wars: list[str], key_file: Path = Path("key_file.json")) -> None:
    server = Server.from_config(config, key_file, [])
    wait_for_management(server)
    for war in wars:
        print(f"workflows: {register(server, war)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wars", nargs="+", help="archive names in the workflow store")
    parser.add_argument("--config", type=Path, default=Path("config.properties"))
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    args = parser.parse_args(argv)
    try:
        register_all(args.config, args.wars, args.key_file)
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"workflows: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

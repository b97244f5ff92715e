"""Container health, with the keys from key_file.json that only the container can read.

    python /app/docker/healthcheck.py          # ready: the image's HEALTHCHECK, k8s startup/readiness probes
    python /app/docker/healthcheck.py --live   # alive: GET /ping only, the k8s liveness probe
    python /app/docker/healthcheck.py --stopping 5   # k8s preStop: not ready from now, then wait 5 s

Ready is scripts/serving/readiness.py's check, the same as `make ready` and the `ready:` line: every
model has all its workers READY and every workflow of SERVE_WORKFLOWS is registered. Alive is
lighter: /ping with the inference key (TorchServe 0.12 wants it there), so that a server busy
loading or scaling workers is not killed. Expired keys are renewed with the API key first, as an
operator would; otherwise a healthy server would turn unhealthy at that hour and be restarted.
With token auth off there is no key file, and the requests carry no key.

--stopping is the Kubernetes preStop hook: it marks the server stopping, as scripts/serving/serve.py does
on SIGTERM, so readiness fails at once, then waits while the Service stops sending requests here;
the SIGTERM that follows stops TorchServe, which answers the requests it holds (docs/docker.md).

Paths and addresses come from the environment docker/entrypoint.sh reads. Standard library only:
it runs every few seconds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from scripts.serving.readiness import Server, fresh_key, missing, request  # the installed project (pyproject.toml)
from scripts.serving.server_stop import mark_stopping
from scripts.serving.ts_config import address, read_properties

APP = Path(__file__).resolve().parent.parent  # /app in the image: docker/config.properties beside this file

DEFAULT_WORKFLOWS = "photo_embedding.war"  # docker/entrypoint.sh's default; the image sets SERVE_WORKFLOWS


def paths(env: dict[str, str]) -> tuple[Path, Path]:
    config = Path(env.get("SERVE_CONFIG", APP / "docker" / "config.properties"))
    return config, Path(env.get("SERVE_WORKDIR", "/home/model-server")) / "key_file.json"


def alive(env: dict[str, str]) -> list[str]:
    config, key_file = paths(env)
    properties = read_properties(config.read_text())
    key = fresh_key(key_file, "inference", address(properties, "management", env))
    status, body = request(f"{address(properties, 'inference', env)}/ping", key)
    healthy = status == 200 and isinstance(body, dict) and body.get("status") == "Healthy"
    return [] if healthy else [f"/ping answered {status}: {body}"]


def ready(env: dict[str, str]) -> list[str]:
    config, key_file = paths(env)
    workflows = env.get("SERVE_WORKFLOWS", DEFAULT_WORKFLOWS).split()
    return missing(Server.from_config(config, key_file, workflows, env))


def stopping(env: dict[str, str], wait_s: float) -> int:
    mark_stopping(paths(env)[1].parent, "preStop hook (docker/healthcheck.py --stopping)")
    print(f"healthcheck: marked stopping; waiting {wait_s:g} s for traffic to drain away", flush=True)
    time.sleep(wait_s)  # the point of the hook: time for the endpoints to drop this pod
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--stopping"]:
        return stopping(dict(os.environ), float(argv[1]) if len(argv) > 1 else 0)
    live = "--live" in argv
    try:
        problems = (alive if live else ready)(dict(os.environ))
    except (OSError, ValueError, KeyError) as error:  # not up yet, or a key file being rewritten
        problems = [str(error)]
    if problems:
        print("healthcheck: not " + ("healthy" if live else "ready") + ": " + "; ".join(problems), file=sys.stderr)
        return 1
    print("healthcheck: " + ("Healthy" if live else "ready"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

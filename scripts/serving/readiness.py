"""Ready means ready: every model has all its workers READY and every workflow is registered.

    python -m scripts.serving.readiness --workflows photo_embedding.war              # one look: exit 0 or 1
    python -m scripts.serving.readiness --workflows photo_embedding.war --wait 300   # `make ready`

TorchServe's /ping says Healthy seconds after start, long before the workers have loaded their
models and before a workflow is registered (`/wfpredict` answers 404 until then; a request in
that window waited 20 s here). This is the one check that means "requests are served now", used
by `make ready`, the `ready:` line of `make serve` (scripts/serving/serve.py), the image's HEALTHCHECK and
the Kubernetes readiness probe (docker/healthcheck.py). On the management API it asks:

- GET /models: every model registered, plus every model the config names (`models=` and a
  `load_models` list; with `load_models=ALL` TorchServe registers the store's archives before its
  API answers, so the listing holds them);
- GET /models/{name}/all: every version of each has at least minWorkers workers, all READY;
- GET /workflows/{name}: 200 for every workflow asked for.

A server that is stopping (STOPPING_MARKER beside the key file) is not ready, so that no new
traffic is sent to it while it answers the requests it has.

Standard library only (urllib, scripts.serving.keyfile and scripts.serving.ts_config): the health check runs it every few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

from scripts.serving import keyfile
from scripts.serving.ts_config import address, read_properties

TIMEOUT_S = 5
POLL_S = 0.5
STOPPING_MARKER = "serve.stopping"
"""Written beside key_file.json by scripts/serving/serve.py on SIGTERM (or by the Kubernetes preStop hook,
docker/healthcheck.py --stopping): the server is stopping, so it is not ready, whatever its workers say."""
T = TypeVar("T")


def poll_until(check: Callable[[], T], timeout_s: float, what: str, interval_s: float = POLL_S,
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """`check()`'s first truthy result; TimeoutError naming `what` once `timeout_s` have passed.

    Every wait of the bundle goes through here. Exceptions of the `ignore` types count as "not
    yet" (a server still starting refuses connections); any other exception ends the wait at once
    (a server that died says so).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except ignore:
            result = None
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"gave up after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)


def configured_models(properties: dict[str, str]) -> list[str]:
    """Model names the config asks for: the keys of `models=` and the entries of a `load_models` list."""
    names = list(json.loads(properties["models"])) if properties.get("models") else []
    for entry in filter(None, (e.strip() for e in properties.get("load_models", "").split(","))):
        if entry.upper() != "ALL":
            name = entry.split("=", 1)[0] if "=" in entry else entry
            names.append(name.removesuffix(".mar").removesuffix(".tar.gz"))
    return list(dict.fromkeys(names))


def workflow_name(archive: str) -> str:
    return Path(archive).name.removesuffix(".war")


@dataclass
class Server:
    """Where to ask: the management URL and the key file TorchServe wrote (absent: token auth off)."""

    management_url: str
    key_file: Path
    models: list[str] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Path, key_file: Path, workflows: list[str], env: dict[str, str] | None = None):
        properties = read_properties(Path(config).read_text())
        env = dict(os.environ) if env is None else env
        return cls(address(properties, "management", env), Path(key_file), configured_models(properties),
                   [workflow_name(w) for w in workflows])

    def get(self, path: str, timeout_s: float = TIMEOUT_S) -> tuple[int, object]:
        return request(f"{self.management_url}{path}", management_key(self.key_file, self.management_url), timeout_s=timeout_s)


def request(url: str, key: str | None, method: str = "GET", timeout_s: float = TIMEOUT_S) -> tuple[int, object]:
    """(status, parsed JSON body or text); connection errors propagate as OSError."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method, headers=headers), timeout=timeout_s) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def fresh_key(key_file: Path, api: str, management_url: str) -> str | None:
    """`api`'s key, renewed with the API key first when it has expired; None with token auth off.

    Keys expire after token_expiration_min; the API key does not. Without the renewal a ready
    server would turn unready at that hour and be restarted by its orchestrator.
    """
    keys = keyfile.read_keys(key_file)
    if api not in keys:
        return None
    if keyfile.expired(key_file, api) and "API" in keys:
        request(f"{management_url}/token?type={api}", keys["API"], method="POST")
        keys = keyfile.read_keys(key_file)  # TorchServe rewrites the file with the new key
    return keys[api]


def management_key(key_file: Path, management_url: str) -> str | None:
    return fresh_key(key_file, "management", management_url)


def model_problems(name: str, versions: object) -> list[str]:
    """What keeps one model's versions (GET /models/{name}/all) from serving; [] when all are."""
    problems = []
    for version in versions if isinstance(versions, list) else []:
        workers = version.get("workers", [])
        ready = sum(1 for w in workers if w.get("status") == "READY")
        wanted = max(int(version.get("minWorkers", 1)), 1 if workers else 0)
        label = f"{name} {version.get('modelVersion', '')}".strip()
        if ready < wanted or ready < len(workers):
            states = ", ".join(sorted(w.get("status", "?") for w in workers)) or "none started"
            problems.append(f"model {label}: {ready} of {max(wanted, len(workers))} workers READY ({states})")
    return problems


def missing(server: Server) -> list[str]:
    """Everything that is not ready yet, each in a few words; [] means ready."""
    try:
        return [f"stopping: {(server.key_file.parent / STOPPING_MARKER).read_text(errors='replace').strip()}"]
    except FileNotFoundError:
        pass
    try:
        status, listing = server.get("/models?limit=1000")
        if status != 200:
            return [f"management API at {server.management_url}: GET /models answered {status}: {listing}"]
        names = list(dict.fromkeys([*server.models, *(m["modelName"] for m in listing.get("models", []))]))
        problems = []
        for name in names:
            status, versions = server.get(f"/models/{name}/all")
            problems += [f"model {name}: not registered"] if status == 404 else model_problems(name, versions)
        for name in server.workflows:
            status, _ = server.get(f"/workflows/{name}")
            if status != 200:
                problems.append(f"workflow {name}: not registered ({status})")
        return problems
    except (OSError, ValueError, KeyError) as error:  # not listening yet, or a key file being written
        return [f"management API at {server.management_url}: {error}"]


def summary(server: Server) -> str:
    """One line naming what is served; call when missing() is []."""
    _, listing = server.get("/models?limit=1000")
    models = [m["modelName"] for m in listing.get("models", [])]
    return f"{len(models)} models with all workers READY ({', '.join(models)}); " \
           f"workflows: {', '.join(server.workflows) or 'none'}"


def wait(server: Server, timeout_s: float) -> list[str]:
    """Poll until ready or timeout_s has passed; returns what was still missing ([] = ready)."""
    problems: list[str] = []

    def ready() -> bool:
        problems[:] = missing(server)
        return not problems

    try:
        poll_until(ready, timeout_s, "readiness")
    except TimeoutError:
        pass
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config.properties"))
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="in the server's working directory")
    parser.add_argument("--workflows", nargs="*", default=[], help="workflow names or .war archives that must be registered")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="poll until ready for this long (0: one look)")
    args = parser.parse_args(argv)
    server = Server.from_config(args.config, args.key_file, args.workflows)
    problems = wait(server, args.wait)
    if problems:
        print("not ready: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"ready: {summary(server)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

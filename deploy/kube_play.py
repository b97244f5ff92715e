"""Run the rendered Kubernetes CPU overlay on this machine under `podman kube play` (no cluster).

    python deploy/kube_play.py up       # make kube-play: gateway on 127.0.0.1:8000, waits until ready
    python deploy/kube_play.py token    # make kube-token: the shared token the gateway checks
    python deploy/kube_play.py down     # make kube-down: pod, volume and secret removed

What runs is `kubectl kustomize deploy/k8s/overlays/cpu`, as rendered, with the changes podman
needs and nothing else (each is printed):

- the Secret torchserve-token is made (as a podman secret), holding a fresh token kept in
  build/kube/token (on a cluster you create it with kubectl, docs/docker.md);
- the Job that fills the model store is run with `podman run` (kube play runs no Jobs): the same
  image, command and volume, into the volume the PersistentVolumeClaim names;
- the PersistentVolumeClaim becomes a podman volume of its name, made before the Job runs (kube
  play would make it too, but refuses to start when it exists already);
- the init container that waits for the Job is left out: the Job has run before the pod starts,
  and podman 4.3 races on init containers ("failed to remove once init container ... as it is
  running", seen here in 2 of 3 runs);
- the HorizontalPodAutoscaler, the PodDisruptionBudget and the Service are left out (no cluster
  to act on them); the gateway's port is published on 127.0.0.1:8000 with a hostPort instead of
  the Service.

The gateway image (nginxinc/nginx-unprivileged) cannot be pulled here: `make kube-gateway` builds a
local stand-in under that name (docker/gateway/Dockerfile, Debian's nginx on the same base).
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OVERLAY = REPO / "deploy" / "k8s" / "overlays" / "cpu"
STATE = REPO / "build" / "kube"
PLAY = STATE / "play.yaml"
TOKEN = STATE / "token"
HOST = ("127.0.0.1", 8000)
READY_TIMEOUT_S = 600


def sh(*command: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=check, text=True, capture_output=capture)


def render(overlay: Path = OVERLAY) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(sh("kubectl", "kustomize", str(overlay), capture=True).stdout) if doc]


def token() -> str:
    if not TOKEN.is_file():
        STATE.mkdir(parents=True, exist_ok=True)
        TOKEN.write_text(secrets.token_hex(32) + "\n")  # 64 characters: what the gateway's map expects
        TOKEN.chmod(0o600)
    return TOKEN.read_text().strip()


def images(docs: list[dict]) -> set[str]:
    return {c["image"] for doc in docs for c in containers(doc)}


def containers(doc: dict) -> list[dict]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return pod.get("initContainers", []) + pod.get("containers", [])


def for_podman(docs: list[dict]) -> tuple[list[dict], list[dict]]:
    """(documents for kube play, Jobs to run by hand), as the module docstring lists."""
    play, jobs = [], []
    for doc in docs:
        kind = doc["kind"]
        if kind == "Job":
            jobs.append(doc)
        elif kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
            print(f"kube-play: leaving out {kind} {doc['metadata']['name']} (no cluster here)")
        elif kind == "PersistentVolumeClaim":  # kube play refuses a claim whose volume exists; the Job fills it first
            print(f"kube-play: PersistentVolumeClaim {doc['metadata']['name']} -> podman volume of that name")
        else:
            play.append(doc)
    for doc in play:
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for init in pod.pop("initContainers", []):
            print(f"kube-play: leaving out init container {init['name']} (the Job has filled the store before the pod starts)")
        for container in containers(doc):
            for port in container.get("ports", []):
                if port.get("name") == "http" and port["containerPort"] == HOST[1]:
                    port.update(hostIP=HOST[0], hostPort=HOST[1])
                    print(f"kube-play: {container['name']} port {HOST[1]} published on {HOST[0]}:{HOST[1]}")
    return play, jobs


SECRET = "torchserve-token"


def create_secret(shared_token: str) -> None:
    """The Secret torchserve-token as the podman secret kube play's secretKeyRef reads.

    podman 4.3 reads such a secret as JSON {key: base64 value} (the `data` of a Secret). Not a
    Secret document in play.yaml: podman 4.3 stores that one as YAML and then cannot parse it
    ("secret torchserve-token is not valid JSON"), seen here.
    """
    sh("podman", "secret", "rm", SECRET, check=False, capture=True)
    data = {"token": base64.b64encode(shared_token.encode()).decode()}
    subprocess.run(["podman", "secret", "create", SECRET, "-"], input=json.dumps(data), text=True, check=True,
                   capture_output=True)


def run_job(job: dict) -> None:
    """A Job's one container under podman run, its PVC volumes as podman volumes (owned by its user)."""
    pod = job["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", []) if "persistentVolumeClaim" in v}
    user = pod.get("securityContext", {})
    for container in pod["containers"]:
        volumes = [f"{claims[m['name']]}:{m['mountPath']}:U" for m in container.get("volumeMounts", [])]
        for claim in claims.values():
            if sh("podman", "volume", "exists", claim, check=False).returncode != 0:
                sh("podman", "volume", "create", claim, capture=True)
        command = ["podman", "run", "--rm", "--user", f"{user.get('runAsUser', 1000)}:{user.get('runAsGroup', 1000)}",
                   *(f"-v={v}" for v in volumes), "--entrypoint", container["command"][0], container["image"],
                   *container["command"][1:], *container.get("args", [])]
        print(f"kube-play: Job {job['metadata']['name']}: {' '.join(command)}", flush=True)
        sh(*command)


def missing_images(docs: list[dict]) -> list[str]:
    return [image for image in sorted(images(docs))
            if sh("podman", "image", "exists", image, check=False).returncode != 0]


def wait_ready(timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the torchserve container's readiness probe (the image's healthcheck) passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        names = sh("podman", "ps", "--format", "{{.Names}}", "--filter", "label=io.kubernetes.container.name=torchserve",
                   capture=True, check=False).stdout.split()
        names = names or [n for n in sh("podman", "ps", "--format", "{{.Names}}", capture=True).stdout.split()
                          if n.endswith("-torchserve")]
        probe = sh("podman", "exec", names[0], "python", "/app/docker/healthcheck.py", check=False, capture=True) if names else None
        if probe is not None and probe.returncode == 0:
            print(f"kube-play: ready: gateway on http://{HOST[0]}:{HOST[1]} (token: make kube-token)", flush=True)
            return
        if time.monotonic() >= deadline:
            detail = probe.stderr.strip() if probe is not None else "no torchserve container running"
            raise SystemExit(f"kube-play: not ready after {timeout_s:.0f} s: {detail}")
        time.sleep(2)


def up() -> int:
    docs = render()
    absent = missing_images(docs)
    if absent:
        hints = {"torchserve-bundle": "make docker-base docker", "nginx": "make kube-gateway"}
        how = sorted({hint for image in absent for key, hint in hints.items() if key in image})
        print(f"kube-play: no image {', '.join(absent)} here: build it first ({'; '.join(how)})", file=sys.stderr)
        return 1
    play, jobs = for_podman(docs)
    STATE.mkdir(parents=True, exist_ok=True)  # a fresh clone has no build/ yet
    PLAY.write_text(yaml.safe_dump_all(play, sort_keys=False))
    create_secret(token())
    for job in jobs:
        run_job(job)
    sh("podman", "kube", "play", str(PLAY))
    wait_ready()
    return 0


def down() -> int:
    if PLAY.is_file():
        sh("podman", "kube", "down", str(PLAY), check=False)
        play = list(yaml.safe_load_all(PLAY.read_text()))
        for doc in play:  # kube down can leave a pod behind ("shm: device or resource busy", seen here)
            if doc and doc["kind"] == "Deployment":
                for pod in sh("podman", "pod", "ls", "--format", "{{.Name}}", capture=True).stdout.split():
                    if pod.startswith(f"{doc['metadata']['name']}-pod"):
                        sh("podman", "pod", "rm", "--force", pod, check=False, capture=True)
        for doc in render():
            if doc["kind"] == "PersistentVolumeClaim":
                sh("podman", "volume", "rm", "--force", doc["metadata"]["name"], check=False)
        for doc in play:  # emptyDir and configMap volumes: kube play 4.3 makes named volumes of them
            for volume in (doc or {}).get("spec", {}).get("template", {}).get("spec", {}).get("volumes", []):
                if "emptyDir" in volume or "configMap" in volume:
                    for name in sh("podman", "volume", "ls", "--format", "{{.Name}}", capture=True).stdout.split():
                        if name in (volume["name"], volume.get("configMap", {}).get("name")):
                            sh("podman", "volume", "rm", "--force", name, check=False, capture=True)
        sh("podman", "secret", "rm", SECRET, check=False, capture=True)
        PLAY.unlink()
    print("kube-down: removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=["up", "token", "down", "render"])
    verb = parser.parse_args(argv).verb
    if verb == "token":
        print(token())
        return 0
    if verb == "render":
        print(yaml.safe_dump_all(for_podman(render())[0], sort_keys=False))
        return 0
    return up() if verb == "up" else down()


if __name__ == "__main__":
    sys.exit(main())

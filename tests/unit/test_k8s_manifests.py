"""deploy/k8s against the image: probes run the image's healthcheck, ports and paths match
docker/config.properties and the Dockerfile, every TS_* override names a real config key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from scripts.serving.ts_config import listen_addresses

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
CONFIG_TEXT = (REPO / "docker" / "config.properties").read_text()
PORTS = {api: port for api, (_, port) in listen_addresses(CONFIG_TEXT).items()}
DOCKERFILE = (REPO / "Dockerfile").read_text()
HEALTHCHECK = re.search(r'CMD \["python", "([^"]+)"\]', DOCKERFILE).group(1)


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resource(kind: str, folder: Path = K8S / "base") -> dict:
    found = [doc for path in sorted(folder.glob("*.yaml")) for doc in documents(path) if doc.get("kind") == kind]
    assert len(found) == 1, f"{kind} in {folder}: {len(found)}"
    return found[0]


POD = resource("Deployment")["spec"]["template"]["spec"]
TORCHSERVE, GATEWAY = POD["containers"]
ENV = {item["name"]: item.get("value") for item in TORCHSERVE["env"]}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_every_kustomization_lists_files_that_exist():
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []):
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
        for generator in spec.get("configMapGenerator", []):
            for entry in generator["files"]:
                assert (kustomization.parent / entry.split("=")[-1]).exists()


@pytest.mark.parametrize(("probe", "args"), [("startupProbe", []), ("readinessProbe", []), ("livenessProbe", ["--live"])])
def test_probes_run_the_image_healthcheck(probe, args):
    """Readiness is the image's HEALTHCHECK (scripts/serving/readiness.py); liveness the lighter /ping."""
    assert TORCHSERVE["name"] == "torchserve"
    assert TORCHSERVE[probe]["exec"]["command"] == ["python", HEALTHCHECK, *args]
    assert (REPO / HEALTHCHECK.removeprefix("/app/")).is_file()


def test_stopping_fits_the_grace_period():
    """preStop marks the pod stopping (readiness fails) and waits; the gateway outwaits TorchServe's
    drain; the grace period covers the hook, the drain and Java's stop (scripts/serving/server_stop.py)."""
    from scripts.serving.server_stop import DRAIN_S

    command = TORCHSERVE["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["python", HEALTHCHECK, "--stopping"]
    announce_s, java_stop_s = float(command[3]), 3.5  # Java's own shutdown, measured 3.1-3.3 s
    gateway_wait_s = float(GATEWAY["lifecycle"]["preStop"]["exec"]["command"][1])
    assert gateway_wait_s >= announce_s + DRAIN_S
    assert POD["terminationGracePeriodSeconds"] >= max(announce_s + DRAIN_S + java_stop_s, gateway_wait_s) + 5


def test_read_only_root_with_writable_work_and_tmp():
    assert TORCHSERVE["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in TORCHSERVE["volumeMounts"]}
    assert mounts[ENV["SERVE_WORKDIR"]] == "work" and mounts["/tmp"] == "tmp"
    empty = {v["name"] for v in POD["volumes"] if "emptyDir" in v}
    assert {"work", "tmp"} <= empty


def test_overrides_name_real_config_keys():
    for name in ENV:
        if name.startswith("TS_"):
            key = name.removeprefix("TS_").lower()
            assert re.search(rf"^#?\s*{key}[=\s]", CONFIG_TEXT, flags=re.M), f"{name}: no {key} in docker/config.properties"
    assert "enable_envvars_config=true" in CONFIG_TEXT


def test_ports_match_the_container_config():
    assert port_of(ENV["TS_INFERENCE_ADDRESS"]) == PORTS["inference"]
    assert port_of(ENV["TS_MANAGEMENT_ADDRESS"]) == PORTS["management"]
    assert {p["name"]: p["containerPort"] for p in TORCHSERVE["ports"]} == {"metrics": PORTS["metrics"]}
    assert resource("Deployment")["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(PORTS["metrics"])


def test_only_the_gateway_reaches_inference_and_it_holds_the_secret():
    assert ENV["TS_INFERENCE_ADDRESS"].startswith("http://127.0.0.1:")
    assert ENV["TS_MANAGEMENT_ADDRESS"].startswith("http://127.0.0.1:")
    template = (K8S / "base" / "gateway.conf.template").read_text()
    assert f"proxy_pass http://127.0.0.1:{PORTS['inference']};" in template
    listen = int(re.search(r"listen (\d+);", template).group(1))
    assert {p["name"]: p["containerPort"] for p in GATEWAY["ports"]} == {"http": listen}
    token = next(item for item in GATEWAY["env"] if item["name"] == "INFERENCE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "torchserve-token", "key": "token"}
    assert '"Bearer ${INFERENCE_TOKEN}"' in template


def test_service_targets_named_container_ports():
    named = {p["name"] for container in POD["containers"] for p in container["ports"]}
    service = resource("Service")["spec"]
    assert {p["targetPort"] for p in service["ports"]} <= named
    assert {p["port"] for p in service["ports"]} == {PORTS["inference"], PORTS["metrics"]}
    assert service["selector"] == resource("Deployment")["spec"]["selector"]["matchLabels"]


def test_model_store_volume_is_where_the_image_serves_from():
    store = re.search(r"COPY --from=builder /src/model-store/ (\S+)", DOCKERFILE).group(1).rstrip("/")
    mounts = {m["name"]: m for m in TORCHSERVE["volumeMounts"]}
    assert mounts["model-store"]["mountPath"] == store and mounts["model-store"]["readOnly"]
    claim = next(v for v in POD["volumes"] if v["name"] == "model-store")["persistentVolumeClaim"]["claimName"]
    assert claim == resource("PersistentVolumeClaim")["metadata"]["name"]


def test_the_image_user_runs_torchserve():
    uid, gid = map(int, re.search(r"^USER (\d+):(\d+)", DOCKERFILE, flags=re.M).groups())
    assert POD["securityContext"]["runAsNonRoot"]
    for container in [TORCHSERVE, *POD["initContainers"]]:
        assert (container["securityContext"]["runAsUser"], container["securityContext"]["runAsGroup"]) == (uid, gid)


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_overlays_pick_the_image_variant_and_resources(variant):
    spec = yaml.safe_load((K8S / "overlays" / variant / "kustomization.yaml").read_text())
    assert spec["images"] == [{"name": "torchserve-bundle", "newTag": variant}]  # make docker VARIANT=...
    patch = yaml.safe_load(spec["patches"][0]["patch"])
    resources = next(op["value"] for op in patch if op["path"] == "/spec/template/spec/containers/0/resources")
    assert "cpu" in resources["requests"]  # the HPA's utilization is relative to it
    assert ("nvidia.com/gpu" in resources["limits"]) == (variant == "gpu")


def test_hpa_scales_the_deployment_on_cpu():
    hpa = resource("HorizontalPodAutoscaler", K8S / "overlays" / "cpu")["spec"]
    assert hpa["scaleTargetRef"]["name"] == resource("Deployment")["metadata"]["name"]
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"]


def test_drains_take_one_pod_at_a_time_and_never_block():
    """A pod needs a minute or more to load its models: a drain must not take them all at once, and
    minAvailable would block draining a node that runs the only replica."""
    budget = resource("PodDisruptionBudget")["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": resource("Deployment")["spec"]["selector"]["matchLabels"]}}


def test_a_cpu_rollout_keeps_every_ready_pod_until_its_replacement_is_ready():
    rolling = resource("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert (rolling["maxSurge"], rolling["maxUnavailable"]) == (1, 0)


def test_every_bundle_image_is_retagged_by_the_overlays():
    images = [c["image"] for path in (K8S / "base").glob("*.yaml") for doc in documents(path)
              for c in _containers(doc) if "nginx" not in c["image"]]
    assert len(images) == 3 and set(images) == {"torchserve-bundle:cpu"}  # server, init, fill Job


def _containers(doc: dict) -> list[dict]:
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    return pod.get("initContainers", []) + pod.get("containers", [])


def test_v2_paths_reach_the_front_without_the_token_and_infer_reaches_torchserve_with_it():
    """The front listens on the pod's loopback; the gateway sends it GETs only (no token), and
    every v2 infer, versioned or not, through the token check to TorchServe itself."""
    host, port = ENV["SERVE_FRONT"].split(":")
    assert host == "127.0.0.1"
    template = (K8S / "base" / "gateway.conf.template").read_text()
    locations = dict(re.findall(r"location ([^{]+?) \{(.*?)\n    \}", template, flags=re.S))
    for path in ("= /v2", "/v2/"):
        assert f"proxy_pass http://127.0.0.1:{port};" in locations[path] and "$token_ok" not in locations[path]
        assert "$request_method !~ ^(GET|HEAD)$" in locations[path]  # nothing the front relays gets in untokened
    infer = {path: body for path, body in locations.items() if path.startswith("~") and path.endswith("/infer$")}
    assert len(infer) == 2
    for body in infer.values():
        assert "if ($token_ok = 0)" in body and f"proxy_pass http://127.0.0.1:{PORTS['inference']}" in body
    assert "/predictions/$1/$2$is_args$args;" in infer["~ ^/v2/models/([^/]+)/versions/([^/]+)/infer$"]

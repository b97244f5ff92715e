"""deploy/kserve offline: both renders validate against KServe's own CRD schemas (vendored from a
release tag) and the Kubernetes ones, manifests broken on purpose do not, the runtime agrees with
its config.properties and with the front, and `make kserve-store` builds KServe's layout."""

from __future__ import annotations

import copy
import gzip
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from handlers.architectures import build_module
from models.registry import custom_spec
from scripts.build.archives import build_archive
from scripts.build.weights import export
from scripts.deploy import kserve_schemas
from scripts.deploy.kserve_validate import Validator, render
from scripts.serving.ts_config import read_properties

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "deploy" / "kserve"
CONFIG = read_properties((KSERVE / "config.properties").read_text())
DOCKER_CONFIG = read_properties((REPO / "docker" / "config.properties").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()
# Keys that differ from docker/config.properties on purpose (the config's header says why).
DIFFERENT = {"inference_address", "management_address", "load_models", "enable_model_api", "model_store"}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def kustomized(folder: Path) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (its built-in kustomize renders deploy/kserve)")
    return render(folder)


RENDERS = {"token-on": KSERVE, "token-off": KSERVE / "token-off", "gpu": KSERVE / "gpu"}


@pytest.fixture(scope="module", params=sorted(RENDERS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, kustomized(RENDERS[request.param])


def only(docs: list[dict], kind: str) -> dict:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


def test_every_render_validates(rendered, validator):
    _, docs = rendered
    assert sorted(doc["kind"] for doc in docs) == ["InferenceService", "PersistentVolumeClaim", "ServingRuntime"]
    assert validator.problems(docs) == []


def test_the_store_loader_validates(validator):
    assert validator.problems(render(KSERVE / "store-loader.yaml")) == []


def model(docs: list[dict]) -> dict:
    return only(docs, "InferenceService")["spec"]["predictor"]["model"]


def runtime_container(docs: list[dict]) -> dict:
    return only(docs, "ServingRuntime")["spec"]["containers"][0]


BROKEN = {  # what is broken -> (the change, a fragment of the problem it must raise)
    "unknown protocolVersion": (lambda d: model(d).update(protocolVersion="v3"), "is none of KServe's"),
    "protocol the runtime lacks": (lambda d: model(d).update(protocolVersion="grpc-v2"), "does not support protocolVersion 'grpc-v2'"),
    "misspelt field": (lambda d: model(d).update(protocolVersoin="v2"), "'protocolVersoin' was unexpected"),
    "misspelt container field": (lambda d: runtime_container(d).update(imagePullPolcy="Always"), "'imagePullPolcy' was unexpected"),
    "missing modelFormat.name": (lambda d: model(d)["modelFormat"].pop("name"), "'name' is a required property"),
    "missing containers": (lambda d: only(d, "ServingRuntime")["spec"].pop("containers"), "'containers' is a required property"),
    "port as a string": (lambda d: runtime_container(d)["ports"][0].update(containerPort="8080"), "is not of type 'integer'"),
    "misspelt metadata": (lambda d: only(d, "InferenceService")["metadata"].update(lables={}), "'lables' was unexpected"),
    "unserved apiVersion": (lambda d: only(d, "InferenceService").update(apiVersion="serving.kserve.io/v1alpha1"), "is not served"),
    "format the runtime lacks": (lambda d: model(d)["modelFormat"].update(name="onnx"), "does not support modelFormat"),
    "runtime not defined": (lambda d: model(d).update(runtime="kserve-torchserve"), "is not a ServingRuntime of these documents"),
    "blocked env var": (lambda d: model(d).update(env=[{"name": "PYTHONPATH", "value": "/x"}]), "PYTHONPATH is refused"),
    "name off KServe's pattern": (lambda d: only(d, "InferenceService")["metadata"].update(name="Torch_serve"), "the name must match"),
    "mount without a volume": (lambda d: only(d, "ServingRuntime")["spec"]["volumes"].pop(), "which is no volume of the pod"),
    # The CRD embeds a newer Kubernetes' container schema than the 1.32 cluster's Pod.
    "field newer than Kubernetes 1.32": (lambda d: runtime_container(d).update(restartPolicyRules=[]), "'restartPolicyRules' was unexpected"),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_manifest_broken_on_purpose_fails(validator, broken):
    docs = copy.deepcopy(kustomized(KSERVE))
    change, fragment = BROKEN[broken]
    change(docs)
    problems = validator.problems(docs)
    assert any(fragment in problem for problem in problems), problems


def test_the_cli_exits_1_on_a_broken_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text((KSERVE / "base" / "inferenceservice.yaml").read_text().replace("protocolVersion: v2", "protocolVersion: v9"))
    result = subprocess.run([sys.executable, "-m", "scripts.deploy.kserve_validate", str(broken)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "protocolVersion 'v9'" in result.stdout, result.stdout + result.stderr


def test_the_vendored_schemas_name_their_source():
    schemas, source = kserve_schemas.load()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", source["kserve_tag"]) and re.fullmatch(r"[0-9a-f]{40}", source["kserve_commit"])
    assert set(schemas) == {("serving.kserve.io/v1beta1", "InferenceService"), ("serving.kserve.io/v1alpha1", "ServingRuntime")}
    for entry in [*source["crds"].values(), *source["rules"].values()]:
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) and entry["source"]
    for kind, entry in source["crds"].items():
        assert entry["source"].startswith("config/crd/full/"), kind
        for name in entry["served_versions"].values():
            assert (KSERVE / "crds" / name).stat().st_size < 100_000  # small: the schema alone, compact, gzip'd
    assert "v2" in source["rules"]["protocols"]["value"]


@pytest.mark.skipif(not os.environ.get("KSERVE_CHECKOUT"), reason="KSERVE_CHECKOUT (a kserve/kserve clone) not set")
def test_the_vendored_schemas_regenerate_byte_identical(tmp_path):
    _, source = kserve_schemas.load()
    kserve_schemas.vendor(Path(os.environ["KSERVE_CHECKOUT"]), source["kserve_tag"], tmp_path)
    for path in sorted((KSERVE / "crds").glob("*.json*")):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    assert gzip.decompress((tmp_path / "servingruntimes.v1alpha1.json.gz").read_bytes()).startswith(b"{")


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_the_runtime_agrees_with_its_config(rendered, validator):
    mode, docs = rendered
    pod = validator.predictor_pod(only(docs, "InferenceService"), only(docs, "ServingRuntime"))
    container = pod["spec"]["containers"][0]
    env = env_of(container)
    for api in ("inference", "management", "metrics"):
        assert env[f"TS_{api.upper()}_ADDRESS"] == CONFIG[f"{api}_address"], api
    assert CONFIG["inference_address"].startswith("http://127.0.0.1:") and CONFIG["management_address"].startswith("http://127.0.0.1:")
    for name in env:
        if name.startswith("TS_"):
            assert name.removeprefix("TS_").lower() in {*CONFIG, "disable_token_authorization"}, name
    assert CONFIG["enable_envvars_config"] == "true"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert env["SERVE_CONFIG"] == "/mnt/models/config/config.properties"          # <storageUri>/config/
    assert env["SERVE_MODEL_STORE"] == CONFIG["model_store"] == "/mnt/models/model-store"
    assert mounts["/mnt/models"]["readOnly"] and env["SERVE_SNAPSHOTS"] == "off"
    assert {env["SERVE_WORKDIR"], "/tmp"} <= set(mounts) and container["securityContext"]["readOnlyRootFilesystem"]
    token_off = env.get("TS_DISABLE_TOKEN_AUTHORIZATION") == "true"
    assert token_off == (mode == "token-off") and CONFIG["disable_token_authorization"] == "false"
    # With the token on, each pod has its own key: one pod, no scale to zero.
    predictor = only(docs, "InferenceService")["spec"]["predictor"]
    assert predictor["minReplicas"] == 1 and (predictor["maxReplicas"] == 1) == (mode != "token-off")


def test_the_front_takes_the_port_kserve_sends_traffic_to(rendered):
    _, docs = rendered
    container = runtime_container(docs)
    env = env_of(container)
    host, port = env["SERVE_FRONT"].rsplit(":", 1)
    assert host == "0.0.0.0" and int(port) == 8080  # KServe's InferenceServiceDefaultHttpPort
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http1", 8080)]  # Knative: one port, http1
    assert int(port) not in {port_of(CONFIG[f"{api}_address"]) for api in ("inference", "management", "metrics")}
    probes = {name: container[name]["httpGet"] for name in ("readinessProbe", "livenessProbe")}
    assert probes == {"readinessProbe": {"path": "/v2/health/ready", "port": 8080}, "livenessProbe": {"path": "/v2/health/live", "port": 8080}}
    annotations = only(docs, "ServingRuntime")["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/port"] == annotations["prometheus.io/port"] == str(port_of(CONFIG["metrics_address"]))


def test_the_runtime_serves_v2_from_the_bundle_image_as_its_user(rendered):
    mode, docs = rendered
    spec, container = only(docs, "ServingRuntime")["spec"], runtime_container(docs)
    variant = "gpu" if mode == "gpu" else "cpu"
    assert container["name"] == "kserve-container" and container["image"] == f"torchserve-bundle:{variant}"
    assert "command" not in container and "args" not in container  # the image's entrypoint
    uid, gid = map(int, re.search(r"^USER (\d+):(\d+)", DOCKERFILE, flags=re.M).groups())
    assert (container["securityContext"]["runAsUser"], container["securityContext"]["runAsGroup"]) == (uid, gid)
    isvc = model(docs)
    assert isvc["protocolVersion"] in spec["protocolVersions"] == ["v2"] and isvc["runtime"] == only(docs, "ServingRuntime")["metadata"]["name"]
    assert not any(fmt.get("autoSelect") for fmt in spec["supportedModelFormats"])  # never picked for another pytorch model
    claim, _, folder = isvc["storageUri"].removeprefix("pvc://").partition("/")
    assert claim == only(docs, "PersistentVolumeClaim")["metadata"]["name"] and folder == "torchserve"
    assert isvc["resources"]["requests"]["memory"] == ("4Gi" if mode == "gpu" else "3Gi") and "cpu" not in isvc["resources"]["limits"]


def test_the_gpu_render_asks_one_gpu_per_pod_and_tolerates_gpu_nodes(validator):
    """The GPU image, one GPU and a toleration the CPU render lacks; the predictor's toleration reaches
    the pod KServe makes, where the Kubernetes schema checks it."""
    docs = kustomized(RENDERS["gpu"])
    pod = validator.predictor_pod(only(docs, "InferenceService"), only(docs, "ServingRuntime"))
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1 and pod["spec"]["containers"][0]["image"] == "torchserve-bundle:gpu"
    assert pod["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    cpu = kustomized(RENDERS["token-on"])
    assert "nvidia.com/gpu" not in model(cpu)["resources"]["limits"] and "tolerations" not in only(cpu, "InferenceService")["spec"]["predictor"]
    only(docs, "InferenceService")["spec"]["predictor"]["tolerations"][0]["efect"] = "NoSchedule"
    assert any("'efect' was unexpected" in problem for problem in validator.problems(docs))


def test_the_config_keeps_the_container_config_where_it_can():
    assert set(CONFIG) - set(DOCKER_CONFIG) == {"model_store"} and set(DOCKER_CONFIG) - set(CONFIG) == set()
    same = {key: CONFIG[key] for key in CONFIG if key not in DIFFERENT}
    assert same == {key: DOCKER_CONFIG[key] for key in same}
    assert CONFIG["allowed_urls"] == "^$" and CONFIG["enable_model_api"] == "false"


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-s", "-C", str(REPO), *args], capture_output=True, text=True, timeout=120)


def test_load_models_names_the_shipped_archives():
    shipped = make("print-MODELS").stdout.split()
    assert CONFIG["load_models"] == ",".join(f"{m}={m}.mar" for m in shipped), shipped


NET = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))
"""


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A model store holding one small real archive, kserve_tiny.mar (no pretrained weights)."""
    root = tmp_path_factory.mktemp("kserve-tiny")
    (root / "net.py").write_text(NET)
    torch.save(build_module({"library": "file", "file": "net.py", "class": "Net"}, root).state_dict(), root / "net.pth")
    (root / "labels.txt").write_text("a\nb\n")
    spec = custom_spec("kserve_tiny", root / "net.py", "Net", root / "net.pth", root / "labels.txt")
    export(spec, root / "weights")
    build_archive("kserve_tiny", root / "weights", root / "model-store")
    return root / "model-store"


def test_make_kserve_store_builds_the_layout(tiny_store, tmp_path):
    out = tmp_path / "kserve"
    (out / "model-store").mkdir(parents=True)
    (out / "model-store" / "stale.mar").write_text("from an earlier MODELS")
    # -o archive: the archive is there already (make archive's own tests build real ones).
    result = make("-o", "archive", "kserve-store", "MODELS=kserve_tiny", f"MODEL_STORE={tiny_store}", f"KSERVE_STORE={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == ["config/config.properties", "model-store/kserve_tiny.mar"]
    assert (out / "model-store" / "kserve_tiny.mar").read_bytes() == (tiny_store / "kserve_tiny.mar").read_bytes()
    config = read_properties((out / "config" / "config.properties").read_text())
    assert config == {**CONFIG, "load_models": "kserve_tiny=kserve_tiny.mar"}
    assert "kserve-store: " in result.stdout and "1 archives" in result.stdout


def test_make_kserve_store_says_which_archive_is_missing(tiny_store, tmp_path):
    result = make("-o", "archive", "kserve-store", "MODELS=kserve_tiny absent", f"MODEL_STORE={tiny_store}", f"KSERVE_STORE={tmp_path}")
    assert result.returncode != 0 and "no absent.mar in" in result.stderr and "make archive" in result.stderr
    assert not (tmp_path / "config").exists()

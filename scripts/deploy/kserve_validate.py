"""KServe manifests checked offline: what KServe and Kubernetes would check, as far as that runs
without a cluster.

    python -m scripts.deploy.kserve_validate                       # deploy/kserve, its token-off and gpu overlays
    python -m scripts.deploy.kserve_validate my/overlay other.yaml # kustomize folders (kubectl kustomize) or YAML files

Each check returns a list of problems, empty when the documents pass:

- schema_problems: a ServingRuntime or InferenceService against the openAPIV3Schema of its served
  version in KServe's CRD (deploy/kserve/crds, vendored by scripts/deploy/kserve_schemas.py), with unknown
  fields refused wherever the API server's strict field validation (kubectl apply's default) would
  refuse them; its metadata against Kubernetes' ObjectMeta. Other kinds: the Kubernetes schemas.
- pairing_problems: what KServe's webhook and controller refuse beyond the schema: an
  InferenceService name off KServe's pattern, a protocolVersion KServe does not know, a runtime that
  is not among the documents, is disabled, or does not list the protocol or the modelFormat, a
  blocked env var (PYTHONPATH).
- pod_problems: the pod KServe would make, the runtime's container with the InferenceService's
  model spec merged in and the pvc:// storage mounted at /mnt/models, against the Kubernetes Pod
  schema (kubernetes-validate, strict; the CRDs embed a newer Kubernetes' container schema), and
  every mount naming one of the pod's volumes, no two on one path.

Not checked: CEL rules (KServe v0.20.0's CRDs have none), Knative's admission of the pod, and all
that the controller and the storage initializer do at run time.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from scripts.deploy.kserve_schemas import DEFAULT_OUT as CRDS
from scripts.deploy.kserve_schemas import load

REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"  # the kubectl installed here; kubernetes-validate ships its schemas
KSERVE = REPO / "deploy" / "kserve"
DEFAULT_TARGETS = (KSERVE, KSERVE / "token-off", KSERVE / "gpu")
MODEL_MOUNT = "/mnt/models"  # KServe's DefaultModelLocalMountPath
PVC_VOLUME = "kserve-pvc-source"  # KServe's PvcSourceMountName
POD_FIELDS = ("tolerations", "nodeSelector", "affinity")  # the predictor's pod-level fields KServe copies into its pod (PodSpec inline)
KSERVE_KINDS = ("ServingRuntime", "InferenceService")


def strict(node: dict) -> dict:
    """A copy of a structural schema that refuses unknown fields where Kubernetes does.

    An object schema that lists properties, has no additionalProperties and does not preserve
    unknown fields refuses others; `nullable` also allows null. Objects with no properties listed
    (metadata, free-form maps) stay open, as in Kubernetes.
    """
    out = dict(node)
    if "properties" in node:
        out["properties"] = {name: strict(child) for name, child in node["properties"].items()}
        if "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            out[key] = strict(node[key])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in node:
            out[key] = [strict(child) for child in node[key]]
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


def where(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def dotted(path) -> str:
    return ".".join(str(part) for part in path) or "(top)"


def kubernetes_problems(doc: dict, label: str) -> list[str]:
    """`doc` (any core kind) against the Kubernetes schemas, unknown fields refused."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{label}: {dotted(error.absolute_path)}: {error.message}"]
    return []


class Validator:
    """The vendored CRD schemas and KServe's rules, loaded once."""

    def __init__(self, crds: Path = CRDS):
        import jsonschema

        schemas, self.source = load(crds)
        self.rules = {name: rule["value"] for name, rule in self.source["rules"].items()}
        self.validators = {key: jsonschema.Draft7Validator(strict(schema)) for key, schema in schemas.items()}
        isvc = schemas[next(key for key in schemas if key[1] == "InferenceService")]
        predictor = isvc["properties"]["spec"]["properties"]["predictor"]["properties"]
        # The model spec's own fields (modelFormat, runtime, storageUri ...): the rest is a container.
        self.model_only = set(predictor["model"]["properties"]) - set(predictor["containers"]["items"]["properties"])

    def schema_problems(self, doc: dict) -> list[str]:
        if doc.get("kind") not in KSERVE_KINDS:
            return kubernetes_problems(doc, where(doc))
        validator = self.validators.get((doc.get("apiVersion"), doc["kind"]))
        if validator is None:
            served = [api for api, kind in self.validators if kind == doc["kind"]]
            return [f"{where(doc)}: apiVersion {doc.get('apiVersion')!r} is not served by KServe {self.source['kserve_tag']} ({served})"]
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        problems = [f"{where(doc)}: {dotted(e.absolute_path)}: {e.message}" for e in errors]
        metadata = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc.get("metadata", {})}
        return problems + kubernetes_problems(metadata, where(doc))

    def pairing_problems(self, docs: list[dict]) -> list[str]:
        runtimes = {d["metadata"]["name"]: d["spec"] for d in docs if d.get("kind") == "ServingRuntime"}
        problems = []
        for isvc in (d for d in docs if d.get("kind") == "InferenceService"):
            label, name = where(isvc), isvc["metadata"]["name"]
            if not re.fullmatch(self.rules["isvc_name_format"], name):
                problems.append(f"{label}: the name must match {self.rules['isvc_name_format']} (KServe's webhook)")
            predictor = isvc["spec"]["predictor"]
            for container in [predictor.get("model", {}), *predictor.get("containers", [])]:
                for env in container.get("env", []):
                    if env["name"] in self.rules["blocked_env"]:
                        problems.append(f"{label}: env {env['name']} is refused by KServe's webhook")
            model = predictor.get("model")
            if model is not None:
                problems += self.runtime_problems(label, model, runtimes)
        return problems

    def runtime_problems(self, label: str, model: dict, runtimes: dict[str, dict]) -> list[str]:
        """KServe's checks of a named runtime (controller: reconcileModel, RuntimeSupportsModel)."""
        protocol = model.get("protocolVersion")
        if protocol is not None and protocol not in self.rules["protocols"]:
            return [f"{label}: protocolVersion {protocol!r} is none of KServe's {self.rules['protocols']}"]
        runtime = runtimes.get(model.get("runtime"))
        if runtime is None:
            return [f"{label}: runtime {model.get('runtime')!r} is not a ServingRuntime of these documents ({sorted(runtimes)})"]
        if runtime.get("disabled"):
            return [f"{label}: runtime {model['runtime']!r} is disabled"]
        problems = []
        if protocol is not None and runtime.get("protocolVersions") and protocol not in runtime["protocolVersions"]:
            problems.append(f"{label}: runtime {model['runtime']!r} does not support protocolVersion {protocol!r} ({runtime['protocolVersions']})")
        fmt = model["modelFormat"]
        offered = {(f["name"], f.get("version")) for f in runtime.get("supportedModelFormats", [])}
        if not any(name == fmt["name"] and fmt.get("version") in (None, version) for name, version in offered):
            problems.append(f"{label}: runtime {model['runtime']!r} does not support modelFormat {fmt} ({sorted(offered, key=str)})")
        return problems

    def merged_container(self, runtime_container: dict, model: dict) -> dict:
        """KServe's merge of the model spec into the runtime's container (MergeRuntimeContainers,
        a strategic merge): env and volumeMounts by key, args appended, resources per key, any
        other container field of the model spec replacing the runtime's."""
        merged = copy.deepcopy(runtime_container)
        for key, value in model.items():
            if key in self.model_only:
                continue
            if key in ("env", "volumeMounts"):
                merge_key = "name" if key == "env" else "mountPath"
                kept = [item for item in merged.get(key, []) if item[merge_key] not in {v[merge_key] for v in value}]
                merged[key] = kept + list(value)
            elif key == "args":
                merged["args"] = merged.get("args", []) + list(value)
            elif key == "resources":
                old = merged.get("resources", {})
                merged["resources"] = {**old, **{part: {**old.get(part, {}), **limits} for part, limits in value.items()}}
            else:
                merged[key] = value
        return merged

    def predictor_pod(self, isvc: dict, runtime: dict) -> dict:
        """The pod KServe would make for `isvc` on `runtime` (the parts these manifests touch)."""
        model = isvc["spec"]["predictor"]["model"]
        containers = copy.deepcopy(runtime["spec"]["containers"])
        containers[0] = self.merged_container(containers[0], model)
        volumes = copy.deepcopy(runtime["spec"].get("volumes", []))
        uri = model.get("storageUri", "")
        if uri.startswith("pvc://"):
            claim, _, sub_path = uri.removeprefix("pvc://").partition("/")
            volumes.append({"name": PVC_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
            mount = {"name": PVC_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True, **({"subPath": sub_path} if sub_path else {})}
            containers[0].setdefault("volumeMounts", []).append(mount)
        metadata = {"name": f"{isvc['metadata']['name']}-predictor", "annotations": runtime["spec"].get("annotations", {}),
                    "labels": {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}}
        scheduling = {key: copy.deepcopy(value) for key, value in isvc["spec"]["predictor"].items() if key in POD_FIELDS}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": {"containers": containers, "volumes": volumes, **scheduling}}

    def pod_problems(self, docs: list[dict]) -> list[str]:
        runtimes = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ServingRuntime"}
        problems = []
        for isvc in (d for d in docs if d.get("kind") == "InferenceService"):
            runtime = runtimes.get(isvc["spec"]["predictor"].get("model", {}).get("runtime"))
            if runtime is not None:
                pod, label = self.predictor_pod(isvc, runtime), f"{where(isvc)}'s predictor pod"
                problems += kubernetes_problems(pod, label) + mount_problems(pod, label)
        return problems

    def problems(self, docs: list[dict]) -> list[str]:
        found = [p for doc in docs for p in self.schema_problems(doc)]
        return found or self.pairing_problems(docs) + self.pod_problems(docs)  # pairing assumes well-formed documents


def mount_problems(pod: dict, label: str) -> list[str]:
    """What the API server refuses in a pod beyond its schema: a mount of a volume the pod lacks,
    two mounts on one path (KServe adds /mnt/models to the runtime's own)."""
    volumes = {volume["name"] for volume in pod["spec"].get("volumes", [])}
    problems = []
    for container in pod["spec"]["containers"]:
        paths = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
        problems += [f"{label}: {container['name']} mounts {mount['name']!r}, which is no volume of the pod ({sorted(volumes)})"
                     for mount in container.get("volumeMounts", []) if mount["name"] not in volumes]
        problems += [f"{label}: {container['name']} mounts two volumes on {path}" for path in sorted(set(paths)) if paths.count(path) > 1]
    return problems


def render(target: Path) -> list[dict]:
    """A kustomize folder rendered by `kubectl kustomize`, or a YAML file: its documents."""
    if target.is_dir():
        if shutil.which("kubectl") is None:
            raise SystemExit("kserve_validate: kubectl is needed to render a kustomize folder (its built-in kustomize)")
        text = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True).stdout
    else:
        text = target.read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", type=Path, default=list(DEFAULT_TARGETS))
    args = parser.parse_args(argv)
    validator, failed = Validator(), False
    for target in args.targets:
        docs = render(target)
        problems = validator.problems(docs)
        failed |= bool(problems)
        kinds = ", ".join(where(doc) for doc in docs)
        print(f"kserve_validate: {target}: " + ("; ".join(problems) if problems else f"ok ({kinds}; KServe {validator.source['kserve_tag']})"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""KServe's own schemas for InferenceService and ServingRuntime, vendored small (deploy/kserve/crds/).

    python -m scripts.deploy.kserve_schemas --kserve ~/src/kserve                 # the latest release tag
    python -m scripts.deploy.kserve_schemas --kserve ~/src/kserve --ref v0.20.0   # a chosen one

`--kserve` is a clone of github.com/kserve/kserve (a work tree or a bare repository): files are
read at `--ref` with `git show`, so the work tree's checkout does not matter. For each CRD, the
openAPIV3Schema of every served version is written as compact JSON, gzip'd without a timestamp
(a rebuild from the same tag is byte-identical). source.json records the tag, its commit, each
source file's path and sha256, and the few rules KServe checks outside the schema that
scripts/deploy/kserve_validate.py applies too: the protocol names, the InferenceService name pattern
(its webhook) and the env vars the webhook refuses. Nothing here needs a cluster or the network.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "deploy" / "kserve" / "crds"
CRDS = {  # kind -> the full CRD (config/crd/minimal has no schemas: it preserves unknown fields)
    "InferenceService": "config/crd/full/serving.kserve.io_inferenceservices.yaml",
    "ServingRuntime": "config/crd/full/serving.kserve.io_servingruntimes.yaml",
}
RULES = {  # name -> (Go source, the pattern whose group(s) hold the value)
    "protocols": ("pkg/constants/constants.go", r'Protocol\w+\s+InferenceServiceProtocol = "([^"]+)"'),
    "isvc_name_format": ("pkg/apis/serving/v1beta1/inference_service_validation.go", r'IsvcNameFmt\s+string = "([^"]+)"'),
    "blocked_env": ("pkg/validation/env_policy.go", r'DefaultBlockedEnvVars = \[\]string\{([^}]*)\}'),
}
RELEASE_TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")


def git(checkout: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, check=True).stdout


def latest_release(checkout: Path) -> str:
    """The highest vX.Y.Z tag (release candidates skipped)."""
    tags = [t for t in git(checkout, "tag").decode().split() if RELEASE_TAG.match(t)]
    if not tags:
        raise SystemExit(f"kserve_schemas: no vX.Y.Z tag in {checkout}")
    return max(tags, key=lambda t: tuple(map(int, RELEASE_TAG.match(t).groups())))


def schema_name(plural: str, version: str) -> str:
    return f"{plural}.{version}.json.gz"


def compact_gzip(schema: dict) -> bytes:
    text = json.dumps(schema, separators=(",", ":"), sort_keys=True).encode()
    return gzip.compress(text, compresslevel=9, mtime=0)


def rule_value(name: str, source: str) -> object:
    pattern = RULES[name][1]
    found = re.findall(pattern, source)
    if not found:
        raise SystemExit(f"kserve_schemas: {name}: no match for {pattern!r} in {RULES[name][0]}: has KServe moved it?")
    if name == "protocols":
        return found
    if name == "blocked_env":
        return re.findall(r'"([^"]+)"', found[0])
    return found[0]


def vendor(checkout: Path, ref: str, out: Path = DEFAULT_OUT) -> dict:
    """Write the schemas and source.json for `ref` into `out`; returns source.json's content."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"kserve_repo": "https://github.com/kserve/kserve", "kserve_tag": ref,
              "kserve_commit": git(checkout, "rev-parse", f"{ref}^{{commit}}").decode().strip(), "crds": {}, "rules": {}}
    for kind, path in CRDS.items():
        raw = git(checkout, "show", f"{ref}:{path}")
        crd = yaml.safe_load(raw)
        names = crd["spec"]["names"]
        assert names["kind"] == kind, f"{path} defines {names['kind']}, not {kind}"
        schemas = {}
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[version["name"]] = name = schema_name(names["plural"], version["name"])
                (out / name).write_bytes(compact_gzip(version["schema"]["openAPIV3Schema"]))
        record["crds"][kind] = {"group": crd["spec"]["group"], "source": path, "sha256": hashlib.sha256(raw).hexdigest(),
                                "served_versions": schemas}
    for name, (path, _) in RULES.items():
        raw = git(checkout, "show", f"{ref}:{path}")
        record["rules"][name] = {"value": rule_value(name, raw.decode()), "source": path, "sha256": hashlib.sha256(raw).hexdigest()}
    (out / "source.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load(crds: Path = DEFAULT_OUT) -> tuple[dict[tuple[str, str], dict], dict]:
    """({(apiVersion, kind): openAPIV3Schema}, source.json) from the vendored folder."""
    record = json.loads((crds / "source.json").read_text())
    schemas = {}
    for kind, entry in record["crds"].items():
        for version, name in entry["served_versions"].items():
            schemas[(f"{entry['group']}/{version}", kind)] = json.loads(gzip.decompress((crds / name).read_bytes()))
    return schemas, record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kserve", type=Path, required=True, help="a clone of kserve/kserve (work tree or bare)")
    parser.add_argument("--ref", help="a tag or commit; default: the latest vX.Y.Z tag")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    ref = args.ref or latest_release(args.kserve)
    record = vendor(args.kserve, ref, args.out)
    for kind, entry in record["crds"].items():
        print(f"kserve_schemas: {kind} {', '.join(entry['served_versions'])} from {ref}:{entry['source']} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

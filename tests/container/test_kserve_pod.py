"""deploy/kserve's ServingRuntime container, played by podman as KServe would start it: its env,
its port, its probes' paths, a read-only root with emptyDirs, and `make kserve-store`'s layout
mounted read-only at /mnt/models. tritonclient.http then classifies photos and embeds text, and
the openai client embeds text, through the one port KServe sends traffic to (the front). No KServe
controller, storage initializer or Knative runs here (docs/kserve.md says so)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from tests.container.conftest import unique
from tests.container.engine import REPO, cgroup_memory, engine, free_port, http, memory_quantity

RUNTIME = REPO / "deploy" / "kserve" / "base" / "servingruntime.yaml"
SERVICE = REPO / "deploy" / "kserve" / "base" / "inferenceservice.yaml"
READY_TIMEOUT_S = 600
CATS = {"tabby", "tiger cat", "Egyptian cat"}


def runtime_container() -> dict:
    (container,) = yaml.safe_load(RUNTIME.read_text())["spec"]["containers"]
    return container


def memory_limit() -> int:
    """The InferenceService's memory limit in bytes (KServe puts it on the runtime container)."""
    return memory_quantity(yaml.safe_load(SERVICE.read_text())["spec"]["predictor"]["model"]["resources"]["limits"]["memory"])


def kserve_layout(image: str, root: Path) -> Path:
    """The image's own archives, through scripts/build/kserve_store.py (what `make kserve-store` runs)."""
    holder = unique("kserve-archives")
    engine("create", "--name", holder, image)
    try:
        engine("cp", f"{holder}:/home/model-server/model-store", str(root / "archives"))
    finally:
        engine("rm", "-f", holder, check=False)
    out = root / "kserve"
    subprocess.run([sys.executable, "-m", "scripts.build.kserve_store", "--models", "efficientnet_lite0", "minilm",
                    "--model-store", str(root / "archives"), "--out", str(out)], cwd=REPO, check=True)
    out.chmod(0o755)
    return out


@pytest.fixture(scope="module")
def pod(image, tmp_path_factory):
    spec = runtime_container()
    layout = kserve_layout(image, tmp_path_factory.mktemp("kserve"))
    (port_spec,) = spec["ports"]
    host_port, name = free_port(), unique("ts-kserve")
    env = [arg for item in spec["env"] for arg in ("-e", f"{item['name']}={item['value']}")]
    mounts = [arg for mount in spec["volumeMounts"] for arg in ("--tmpfs", f"{mount['mountPath']}:rw,mode=1777")]
    user = spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"]
    read_only = ["--read-only"] if spec["securityContext"]["readOnlyRootFilesystem"] else []
    engine("run", "-d", "--name", name, "--user", f"{user[0]}:{user[1]}", *read_only, "--cap-drop", "ALL",
           "--memory", f"{memory_limit()}b", "--memory-swap", f"{memory_limit()}b",  # no swap, as on a node
           "-p", f"127.0.0.1:{host_port}:{port_spec['containerPort']}", *env, *mounts,
           "-v", f"{layout}:/mnt/models:ro", image)
    try:
        url = f"http://127.0.0.1:{host_port}"
        started = time.monotonic()
        ready = spec["readinessProbe"]["httpGet"]["path"]
        while (status := probe(url + ready)) != 200:
            state = engine("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            assert state == "true", engine("logs", name, check=False).stdout[-4000:]
            assert time.monotonic() - started < READY_TIMEOUT_S, f"{ready} still {status}"
            time.sleep(1)
        print(f"\ncontainer tier: the KServe runtime's readiness probe passed {time.monotonic() - started:.0f} s after podman run")
        yield name, url, spec
    finally:
        engine("rm", "-f", name, check=False)


def probe(url: str) -> int | None:
    try:
        return http("GET", url, timeout=5)[0]
    except OSError:
        return None


def inference_key(name: str, spec: dict) -> str:
    workdir = next(item["value"] for item in spec["env"] if item["name"] == "SERVE_WORKDIR")
    return json.loads(engine("exec", name, "cat", f"{workdir}/key_file.json").stdout)["inference"]["key"]


def test_probes_answer_without_a_token(pod):
    _, url, spec = pod
    assert http("GET", url + spec["livenessProbe"]["httpGet"]["path"])[0] == 200
    status, body, _ = http("GET", url + "/v2/models/efficientnet_lite0")
    assert status == 200 and [i["name"] for i in body["inputs"]] == ["image"]


def test_tritonclient_classifies_and_embeds_through_the_runtime_port(pod):
    name, url, spec = pod
    headers = {"Authorization": f"Bearer {inference_key(name, spec)}"}
    client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
    try:
        assert client.is_server_ready() and client.is_model_ready("minilm")
        photos = httpclient.InferInput("image", [2], "BYTES")
        photos.set_data_from_numpy(np.array([(REPO / "samples" / f).read_bytes() for f in ("cat.jpg", "coffee.jpg")], dtype=np.object_))
        labels = client.infer("efficientnet_lite0", [photos], headers=headers).as_numpy("labels")
        assert labels[0][0].decode() in CATS and labels[1][0].decode() == "espresso"
        text = httpclient.InferInput("text", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"A cup of espresso."], dtype=np.object_))
        assert client.infer("minilm", [text], headers=headers).as_numpy("embedding").shape == (1, 384)
    finally:
        client.close()


def test_openai_client_embeds_through_the_runtime_port(pod):
    """The front answers OpenAI's embeddings API on the port KServe sends traffic to, as it does
    under make serve and the gateway: the same vectors as v2, and the inference key checked."""
    import openai  # the real client, pointed at the pod's port

    name, url, spec = pod
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=inference_key(name, spec), max_retries=0, timeout=120)
    answer = client.embeddings.create(model="minilm", input=["A cup of espresso.", "A cat on a sofa."])
    assert [item.index for item in answer.data] == [0, 1] and len(answer.data[0].embedding) == 384
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 4
    assert [model.id for model in client.models.list()] == ["minilm"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).embeddings.create(model="minilm", input="x")


def test_torchserves_token_still_guards_inference(pod):
    _, url, _ = pod
    status, body, _ = http("POST", url + "/v2/models/minilm/infer", key="wrong",
                           data=b'{"inputs":[{"name":"text","datatype":"BYTES","shape":[1],"data":["x"]}]}',
                           headers={"Content-Type": "application/json"})
    assert status == 400 and "error" in body


def test_no_form_reaches_torchserve_through_the_runtime_port(pod):
    """docs/security.md: the front is the pod's only door, and it refuses a form on v2 infer before
    TorchServe would decode its fields; TorchServe's own routes are not served there."""
    name, url, spec = pod
    fields = b"&".join([b"f=x"] * 100_000)
    status, body, _ = http("POST", url + "/v2/models/minilm/infer", inference_key(name, spec), fields,
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and "not a form" in body["error"], body
    status, body, _ = http("POST", url + "/predictions/minilm", inference_key(name, spec), fields,
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 404 and "no such path" in body["error"], body


def test_the_runtime_fits_the_inference_services_memory_limit(pod):
    """After the infers above (module order): the limit is the one KServe would set, and was never hit."""
    name, _, _ = pod
    memory = cgroup_memory(name)
    print(f"\ncontainer tier: KServe runtime memory peak {memory['peak'] / 2**30:.2f} GiB "
          f"of its {memory['limit'] / 2**30:.2f} GiB limit, {memory['oom_kills']} OOM kills")
    assert memory["limit"] == memory_limit()
    assert memory["oom_kills"] == 0 and memory["peak"] < memory["limit"]

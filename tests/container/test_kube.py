"""deploy/k8s for real: both overlays render with kubectl kustomize and validate against the
Kubernetes schemas offline; the CPU overlay runs under `podman kube play` (make kube-play) and
serves a photo through the gateway with the shared token, and refuses no token or a wrong one.
The gateway's v2 routes too: health and metadata to the front without the token, infer
(versioned or not) to TorchServe with it, and its own 413 as JSON."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from tests.container.engine import ENV, REPO, cgroup_memory, http, memory_quantity, which_engine

K8S_VERSION = "1.32.0"  # the kubectl installed here; the schemas ship inside kubernetes-validate
GATEWAY = "http://127.0.0.1:8000"
CAT = {"tabby", "tiger cat", "Egyptian cat"}


def render(overlay: str) -> list[dict]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (it renders the overlays with its built-in kustomize)")
    out = subprocess.run(["kubectl", "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_overlay_renders_and_validates_offline(overlay):
    import kubernetes_validate

    docs = render(overlay)
    kinds = sorted(doc["kind"] for doc in docs)
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "Job", "PodDisruptionBudget"} <= set(kinds)
    assert ("HorizontalPodAutoscaler" in kinds) == (overlay == "cpu")
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any schema error
    deployment = next(d for d in docs if d["kind"] == "Deployment")["spec"]
    assert deployment["template"]["spec"]["containers"][0]["image"] == f"torchserve-bundle:{overlay}"
    # CPU: the new pod first, an old one removed once it is ready; GPU: no surge pod waiting for a spare GPU
    surge, unavailable = (1, 0) if overlay == "cpu" else (0, 1)
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": surge, "maxUnavailable": unavailable}


def make(*targets: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["make", "--no-print-directory", "-s", "-C", str(REPO), *targets], capture_output=True, text=True, env=ENV, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def kube_play(image):
    if which_engine() != "podman":
        pytest.skip("podman kube play needs podman")
    make("kube-gateway")
    make("kube-down", check=False)  # a leftover from an interrupted run
    try:
        up = make("kube-play")
        assert "kube-play: ready: gateway on http://127.0.0.1:8000" in up.stdout, up.stdout
        yield make("kube-token").stdout.strip()
    finally:
        make("kube-down", check=False)


def test_gateway_serves_a_photo_with_the_token(kube_play):
    status, body, _ = http("POST", f"{GATEWAY}/predictions/efficientnet_lite0", kube_play,
                           (REPO / "samples" / "cat.jpg").read_bytes())
    assert status == 200 and next(iter(body)) in CAT, body


@pytest.mark.parametrize("key", [None, "wrong-token", "0" * 64])
def test_gateway_refuses_no_token_and_a_wrong_one(kube_play, key):
    status, body, _ = http("POST", f"{GATEWAY}/predictions/efficientnet_lite0", key,
                           (REPO / "samples" / "cat.jpg").read_bytes())
    assert status == 401 and body["type"] == "Unauthorized", body


def test_management_is_not_published(kube_play):
    with pytest.raises(OSError):
        http("GET", "http://127.0.0.1:8081/models", kube_play, timeout=3)


def test_gateway_sends_v2_health_and_metadata_to_the_front_without_the_token(kube_play):
    assert http("GET", f"{GATEWAY}/v2/health/live")[0] == 200
    assert http("GET", f"{GATEWAY}/v2/health/ready")[0] == 200  # kube-play waited for the pod's readiness
    status, body, _ = http("GET", f"{GATEWAY}/v2/models/efficientnet_lite0")
    assert status == 200 and [i["name"] for i in body["inputs"]] == ["image"], body
    status, body, _ = http("POST", f"{GATEWAY}/v2/health/ready", data=b"{}")
    assert status == 405 and "error" in body, body


def test_gateway_v2_infer_classifies_with_the_token_and_refuses_without(kube_play):
    photo = httpclient.InferInput("image", [1], "BYTES")
    photo.set_data_from_numpy(np.array([(REPO / "samples" / "cat.jpg").read_bytes()], dtype=np.object_))
    client = httpclient.InferenceServerClient(GATEWAY.removeprefix("http://"), network_timeout=120)
    try:
        for version in ("", "1.0"):  # /v2/models/m/infer and /v2/models/m/versions/1.0/infer
            result = client.infer("efficientnet_lite0", [photo], model_version=version,
                                  headers={"Authorization": f"Bearer {kube_play}"})
            assert result.as_numpy("labels")[0][0].decode() in CAT
        with pytest.raises(InferenceServerException) as refused:
            client.infer("efficientnet_lite0", [photo])
        assert refused.value.status() == "401" and "Bearer" in refused.value.message()
    finally:
        client.close()


def test_gateway_serves_openais_embeddings_with_the_token_and_refuses_without(kube_play):
    import openai  # the real client, as users point it at the gateway

    client = openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key=kube_play, max_retries=0, timeout=120)
    answer = client.embeddings.create(model="minilm", input=["A cup of espresso on a wooden table."])
    assert len(answer.data[0].embedding) == 384 and answer.usage.prompt_tokens > 2
    assert [model.id for model in client.models.list()] == ["minilm"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{GATEWAY}/v1", api_key="wrong", max_retries=0).embeddings.create(model="minilm", input="x")


@pytest.mark.parametrize("path, field", [("/predictions/efficientnet_lite0", "message"),
                                         ("/v2/models/efficientnet_lite0/infer", "error")])
def test_gateway_refuses_a_body_over_its_limit_with_json(kube_play, path, field):
    status, body, _ = http("POST", GATEWAY + path, kube_play, b"\0" * (20 * 2**20 + 1))
    assert status == 413 and "20 MB" in body[field], body


URLENCODED = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
V2_INFER = ["/v2/models/minilm/infer", "/v2/models/minilm/versions/1.0/infer"]


def test_gateway_refuses_form_urlencoded_bodies_at_once(kube_play):
    """TorchServe would decode every field (docs/security.md): the gateway refuses the body instead,
    even one a handler would read (a `data` field), before a byte reaches TorchServe."""
    for body in (b"&".join([b"f=x"] * 100_000), b"data=A+man+is+eating+food."):
        status, answer, _ = http("POST", f"{GATEWAY}/predictions/minilm", kube_play, body, URLENCODED)
        assert status == 415 and "form-urlencoded" in answer["message"], answer


@pytest.mark.parametrize("path", V2_INFER)
@pytest.mark.parametrize("content_type", [URLENCODED["Content-Type"], "multipart/form-data; boundary=x"])
def test_gateway_v2_infer_refuses_forms(kube_play, path, content_type):
    status, answer, _ = http("POST", GATEWAY + path, kube_play, b"&".join([b"f=x"] * 1000), {"Content-Type": content_type})
    assert status == 415 and "not a form" in answer["error"], answer


def test_gateway_passes_a_multipart_photo(kube_play):
    boundary = "bundle-test-boundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="cat.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n").encode() + (REPO / "samples" / "cat.jpg").read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    status, answer, _ = http("POST", f"{GATEWAY}/predictions/efficientnet_lite0", kube_play, body,
                             {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200 and next(iter(answer)) in CAT, answer


@pytest.fixture(scope="module")
def burst(kube_play) -> list[int]:
    """64 photos and 64 texts, 16 at a time through the gateway: full batches in every worker."""
    jobs = [("efficientnet_lite0", (REPO / "samples" / "cat.jpg").read_bytes(), {}),
            ("minilm", b'{"text": "A cup of espresso on a wooden table."}', {"Content-Type": "application/json"})] * 64
    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda job: http("POST", f"{GATEWAY}/predictions/{job[0]}", kube_play, job[1], job[2])[0], jobs))


@pytest.mark.parametrize("container", ["torchserve", "gateway"])
def test_the_pod_runs_within_the_overlays_memory_limits(kube_play, burst, container):
    """kube play applies the overlay's resources.limits.memory as the container's cgroup limit;
    the peak after a burst of full batches stays under it."""
    assert set(burst) == {200}
    pod = deployment()
    (spec,) = [c for c in pod["spec"]["template"]["spec"]["containers"] if c["name"] == container]
    memory = cgroup_memory(f"{pod['metadata']['name']}-pod-0-{container}")  # podman's name for replica 0's container
    print(f"\ncontainer tier: kube-play {container} memory peak {memory['peak'] / 2**30:.2f} GiB "
          f"of its {memory['limit'] / 2**30:.2f} GiB limit, {memory['oom_kills']} OOM kills")
    assert memory["limit"] == memory_quantity(spec["resources"]["limits"]["memory"])
    assert memory["oom_kills"] == 0 and memory["peak"] < memory["limit"]


def deployment() -> dict:
    return next(doc for doc in render("cpu") if doc["kind"] == "Deployment")


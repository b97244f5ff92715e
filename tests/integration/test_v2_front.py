"""The front (scripts/serving/front.py) in front of the session's real TorchServe, spoken to as tritonclient.http does
(one URL) and with plain requests: live, ready only when every worker is, server and model metadata
from the handlers' describe_handle(), model ready per version, and infer relayed with TorchServe's
refusals made v2 ({"error": ...}, TorchServe's status)."""

from __future__ import annotations

import json
import re
import zipfile
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from scripts.client.torchserve import REPO
from tests.integration.recipes import documented_recipes, documented_value, run_recipe

PROBE = "v2front_probe"  # a model registered by this module alone, so that no other test's model is touched
BROKEN_VERSION = "9.0"
IMAGE_METADATA = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1]}],
                  "outputs": [{"name": "labels", "datatype": "BYTES"}, {"name": "probabilities", "datatype": "FP32"}]}
TEXT_METADATA = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                 "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]}
HELLO = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["hello"]}]}
DOC = REPO / "docs" / "protocols.md"
DOC_FRONT = "http://127.0.0.1:8090"  # the address the docs show (make serve's FRONT)


@pytest.fixture(scope="module")
def client(front) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(front.removeprefix("http://"))


def get(front: str, path: str) -> requests.Response:
    return requests.get(f"{front}{path}", timeout=60)


def error_of(response: requests.Response) -> str:
    """The v2 error message; fails unless the body is exactly {"error": "..."} in JSON."""
    assert response.headers["Content-Type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    return body["error"]


@pytest.mark.parametrize("path", ["/v2/models/minilm", "/v2/models/minilm/ready", "/v2/health/ready", "/v2"])
def test_torchserve_alone_has_no_v2_metadata_or_health(settled, path):
    """Why the front exists (docs/protocols.md): TorchServe 0.12, ts_open_inference_protocol off, routes only infer."""
    response = requests.get(f"{settled.urls['inference']}{path}", headers=settled.auth("inference"), timeout=10)
    assert response.status_code == 404, response.text


def test_live(front, client):
    response = get(front, "/v2/health/live")
    assert (response.status_code, response.json()) == (200, {"live": True})
    assert client.is_server_live()


def test_ready_once_the_workflow_is_registered(front, client, settled):
    response = get(front, "/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})
    assert client.is_server_ready()


def test_server_metadata(front, client):
    expected = {"name": "torchserve", "version": package_metadata.version("torchserve"), "extensions": ["binary_tensor_data"]}
    assert get(front, "/v2").json() == expected
    assert client.get_server_metadata() == expected


@pytest.mark.parametrize("model", ["efficientnet_lite0", "minilm"])
def test_model_ready(front, client, settled, model):
    response = get(front, f"/v2/models/{model}/ready")
    assert (response.status_code, response.json()) == (200, {"name": model, "ready": True})
    assert get(front, f"/v2/models/{model}/versions/1.0/ready").json() == {"name": model, "version": "1.0", "ready": True}
    assert client.is_model_ready(model) and client.is_model_ready(model, "1.0")


@pytest.mark.parametrize("path", ["/v2/models/nope/ready", "/v2/models/nope", "/v2/models/minilm/versions/7.0/ready",
                                  "/v2/models/minilm/versions/7.0"])
def test_unknown_model_or_version(front, path):
    response = get(front, path)
    assert response.status_code == 404
    assert "nope" in error_of(response) or "7.0" in error_of(response)


def test_unknown_paths_and_methods(front, client):
    assert not client.is_model_ready("nope")
    response = get(front, "/v2/repository/index")
    assert response.status_code == 404 and "/v2/repository/index" in error_of(response)
    response = requests.post(f"{front}/v2/health/ready", data=b"x", timeout=10)
    assert response.status_code == 405 and "use GET" in error_of(response)


def broken_copy(archive: Path, target: Path, version: str) -> Path:
    """`archive` as another version whose handler cannot load: an unknown setting in model-config.yaml
    (handlers/config.py refuses unknown keys), so its workers never turn READY."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as copy:
        manifest = json.loads(source.read("MAR-INF/MANIFEST.json"))
        manifest["model"]["modelVersion"] = version
        config = manifest["model"]["configFile"]
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "MAR-INF/MANIFEST.json":
                data = json.dumps(manifest).encode()
            elif item.filename == config:
                text = data.decode()
                assert "\nhandler:\n" in text
                data = text.replace("\nhandler:\n", "\nhandler:\n  no_such_setting: 1\n").encode()
            copy.writestr(item, data, compress_type=zipfile.ZIP_STORED)  # no recompressing 90 MB
    return target


@pytest.fixture
def probe(settled, model_store):
    """PROBE 1.0 (minilm.mar, one READY worker), unregistered afterwards; yields where its broken copy goes."""
    response = settled.register("minilm.mar", model_name=PROBE, initial_workers=1, synchronous="true")
    assert response.status_code == 200, response.text
    broken = model_store / f"{PROBE}_broken.mar"
    try:
        yield broken
    finally:
        settled.unregister(f"{PROBE}/{BROKEN_VERSION}")  # 404 when the test removed it already
        assert settled.unregister(PROBE).status_code == 200
        broken.unlink(missing_ok=True)


def test_ready_tells_the_truth_when_a_version_cannot_load(front, client, settled, probe):
    assert get(front, f"/v2/models/{PROBE}/ready").status_code == 200
    assert get(front, "/v2/health/ready").status_code == 200
    broken_copy(probe.parent / "minilm.mar", probe, BROKEN_VERSION)
    response = settled.register(probe.name, model_name=PROBE, initial_workers=1, synchronous="false")
    assert response.status_code == 202, response.text

    server_ready = get(front, "/v2/health/ready")
    assert server_ready.status_code == 400, server_ready.text
    broken = rf"model {PROBE} {BROKEN_VERSION}: 0 of \d+ workers READY"  # as many workers as the shipped yaml
    assert server_ready.json()["ready"] is False and re.search(broken, server_ready.json()["error"])
    assert not client.is_server_ready()
    model_ready = get(front, f"/v2/models/{PROBE}/ready")
    assert model_ready.status_code == 400 and model_ready.json()["ready"] is False
    assert get(front, f"/v2/models/{PROBE}/versions/{BROKEN_VERSION}/ready").status_code == 400
    assert get(front, f"/v2/models/{PROBE}/versions/1.0/ready").status_code == 200  # the other version serves
    assert not client.is_model_ready(PROBE) and client.is_model_ready(PROBE, "1.0")

    assert settled.unregister(f"{PROBE}/{BROKEN_VERSION}").status_code == 200
    assert get(front, f"/v2/models/{PROBE}/ready").status_code == 200
    assert get(front, "/v2/health/ready").status_code == 200
    assert get(front, f"/v2/models/{PROBE}/versions/{BROKEN_VERSION}/ready").status_code == 404


@pytest.mark.parametrize(("model", "expected"), [("efficientnet_lite0", IMAGE_METADATA), ("minilm", TEXT_METADATA)])
def test_model_metadata_comes_from_the_handler(front, client, settled, model, expected):
    """Needs the handlers' describe_handle() (the v2 block of GET /models/{m}?customized=true)."""
    response = get(front, f"/v2/models/{model}")
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert (metadata["name"], metadata["versions"]) == (model, ["1.0"]) and metadata["platform"]
    assert metadata["inputs"] == expected["inputs"]
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [(o["name"], o["datatype"]) for o in expected["outputs"]]
    for shown, wanted in zip(metadata["outputs"], expected["outputs"], strict=True):
        assert shown["shape"] == wanted.get("shape", shown["shape"]) and shown["shape"][0] == -1
    assert get(front, f"/v2/models/{model}/versions/1.0").json() == metadata
    assert client.get_model_metadata(model) == metadata and client.get_model_metadata(model, "1.0") == metadata


def v2_infer(front: str, model: str, key: str | None, body: bytes, version: str = "", **headers) -> requests.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{front}{path}", data=body, headers={"Content-Type": "application/json", **auth, **headers}, timeout=120)


@pytest.mark.parametrize("version", ["", "1.0"])
def test_infer_with_a_wrong_key_is_torchserves_refusal_made_v2(front, settled, version):
    response = v2_infer(front, "minilm", "wrong-key", json.dumps(HELLO).encode(), version)
    assert response.status_code == 400
    assert error_of(response).startswith("InvalidKeyException: Token Authorization failed")


def test_infer_of_an_unknown_model(front, settled):
    response = v2_infer(front, "nope", settled.keys["inference"], json.dumps(HELLO).encode())
    assert response.status_code == 404 and "nope" in error_of(response)


def test_infer_over_max_request_size_is_refused_with_413(front, settled):
    """20 MiB is the config's max_request_size: TorchServe (Netty) answers 413 with no body, the front streams."""
    response = v2_infer(front, "minilm", settled.keys["inference"], b"x" * (21 * 1024 * 1024))
    assert response.status_code == 413
    assert error_of(response) == "the request body is over TorchServe's max_request_size"


@pytest.mark.parametrize("version", ["", "1.0"])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_form_is_refused_before_torchserve_decodes_its_fields(front, settled, content_type, version):
    """TorchServe would make every field a parameter for the worker (docs/security.md: 1M fields held
    a worker 9 s): the front refuses it, with or without a key, before a byte reaches TorchServe."""
    fields = b"&".join([b"f=x"] * 1_000_000)
    requests_before = settled.metrics("minilm").get("ts_inference_requests_total", 0)
    for key in (settled.keys["inference"], None):
        response = v2_infer(front, "minilm", key, fields, version, **{"Content-Type": content_type})
        assert response.status_code == 415, response.text
        assert error_of(response).startswith("v2 infer takes JSON or the binary tensor extension, not a form")
    assert settled.metrics("minilm").get("ts_inference_requests_total", 0) == requests_before


@pytest.mark.parametrize("version", ["", "1.0"])
@pytest.mark.parametrize("model", ["efficientnet_lite0", "minilm"])
def test_json_nested_50000_deep_is_a_v2_400_through_the_front(front, settled, model, version):
    """Once a 500 (issue 21): the handler's v2 parser now refuses it, and the front relays that as is."""
    deep = b'{"inputs": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    response = v2_infer(front, model, settled.keys["inference"], deep, version)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed v2 request: the JSON is nested too deeply to parse"


@pytest.mark.parametrize("version", ["", "1.0"])
def test_a_v2_infer_is_relayed_to_the_handler(front, settled, version):
    """Needs the handlers' v2 request bodies (JSON and the binary tensor extension)."""
    response = v2_infer(front, "minilm", settled.keys["inference"], json.dumps(HELLO).encode(), version)
    assert response.status_code == 200, response.text
    body = response.json()
    (output,) = [o for o in body["outputs"] if o["name"] == "embedding"]
    assert (output["datatype"], output["shape"], len(output["data"])) == ("FP32", [1, 384], 384)
    assert body["model_name"] == "minilm"


@pytest.mark.parametrize("version", ["", "1.0"])
def test_tritonclient_binary_infer_through_the_one_url(client, settled, version):
    """tritonclient's default: the binary tensor extension both ways (Inference-Header-Content-Length relayed)."""
    photo = triton.InferInput("image", [1], "BYTES")
    photo.set_data_from_numpy(np.array([(REPO / "samples" / "cat.jpg").read_bytes()], dtype=np.object_))
    result = client.infer("efficientnet_lite0", [photo], model_version=version, headers=settled.auth("inference"))
    labels = result.as_numpy("labels")
    assert labels.shape == (1, 5) and labels[0][0].decode() in {"tabby", "tiger cat", "Egyptian cat"}
    assert result.as_numpy("probabilities").dtype == np.float32


def test_tritonclient_sees_torchserves_refusal_as_a_v2_error(client):
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([b"hello"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match="InvalidKeyException"):
        client.infer("minilm", [text], headers={"Authorization": "Bearer wrong-key"})


def test_the_documented_recipes_give_their_shown_output(front, settled):
    recipes = documented_recipes(DOC, "/v2")
    assert len(recipes) >= 3
    for command, shown in recipes:
        out = run_recipe(command.replace(DOC_FRONT, front), settled)
        assert json.loads(out) == documented_value(shown), command

"""What a restart keeps (the snapshot volume) and a read-only root filesystem."""

from __future__ import annotations

import shutil

import pytest

from models.registry import get_spec
from scripts.build.archives import build_archive
from scripts.build.weights import export
from tests.container.conftest import unique
from tests.container.engine import REPO, Container, engine, http

MODEL = "efficientnet_lite0"
PHOTO = (REPO / "samples" / "cat.jpg").read_bytes()
CAT = {"tabby", "tiger cat", "Egyptian cat"}
NO_WORKFLOW = ["-e", "SERVE_WORKFLOWS="]  # the workflow's workers are covered by test_image.py


@pytest.fixture(scope="module")
def store_with_v2(image, tmp_path_factory):
    """The image's own model store plus efficientnet_lite0_v2.mar (version 2.0), readable by uid 1000."""
    store = tmp_path_factory.mktemp("store")
    name = unique("ts-store")
    engine("create", "--name", name, image)
    try:
        engine("cp", f"{name}:/home/model-server/model-store/.", str(store))
    finally:
        engine("rm", "-f", name)
    weights = export(get_spec(MODEL), tmp_path_factory.mktemp("weights")).parent
    v2 = build_archive(MODEL, weights, tmp_path_factory.mktemp("v2"), version="2.0")
    shutil.copyfile(v2, store / f"{MODEL}_v2.mar")
    for path in [store, *store.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return store


def state(container: Container) -> dict:
    status, versions, _ = container.manage("GET", f"/models/{MODEL}/all")
    assert status == 200, versions
    _, default, _ = container.manage("GET", f"/models/{MODEL}")
    return {"default": default[0]["modelVersion"],
            "versions": {v["modelVersion"]: {"workers": len(v["workers"]), "minWorkers": v["minWorkers"],
                                             "batchSize": v["batchSize"]} for v in versions}}


def test_restart_with_the_snapshot_volume_brings_back_version_2_and_its_workers(image, store_with_v2, started):
    containers, volumes = started
    volume = unique("ts-snapshots")
    volumes.append(volume)
    # load_models=ALL would load the v2 archive at every start, snapshot or not: start with v1 alone,
    # so that only the snapshot can bring v2 back.
    args = [*NO_WORKFLOW, "-e", f"TS_LOAD_MODELS={MODEL}.mar", "-v", f"{store_with_v2}:/home/model-server/model-store:ro",
            "-v", f"{volume}:/home/model-server/logs/config"]
    first = Container(unique("ts-snap"), image, args).start()
    containers.append(first)
    first.wait_ready()
    assert set(state(first)["versions"]) == {"1.0"}
    key = first.keys()["management"]
    url = first.url("management")
    assert http("POST", f"{url}/models?url={MODEL}_v2.mar&batch_size=4&synchronous=true", key)[0] == 200
    assert http("PUT", f"{url}/models/{MODEL}/2.0?min_worker=2&max_worker=2&synchronous=true", key)[0] == 200
    assert http("PUT", f"{url}/models/{MODEL}/2.0/set-default", key)[0] == 200
    assert set(state(first)["versions"]) == {"1.0", "2.0"}
    before = state(first)
    assert before["default"] == "2.0" and before["versions"]["2.0"]["workers"] == 2
    assert first.stop()[0] == 0

    second = Container(unique("ts-snap"), image, args).start()  # a new container, the same volume
    containers.append(second)
    second.wait_ready()
    assert "resuming the models of snapshot" in second.logs()
    assert state(second) == before
    for version in ("1.0", "2.0"):
        status, body, _ = second.predict(f"predictions/{MODEL}/{version}", PHOTO)
        assert status == 200 and next(iter(body)) in CAT, body


def test_read_only_root_filesystem_with_tmpfs(image, started):
    """As Kubernetes' readOnlyRootFilesystem: only /tmp and the work folder (tmpfs) are writable."""
    containers, _ = started
    work = "/home/model-server/work"
    container = Container(unique("ts-ro"), image, [*NO_WORKFLOW, "--read-only", "--tmpfs", "/tmp",
                                                    "--tmpfs", f"{work}:mode=1777",  # as an emptyDir: world-writable
                                                    "-e", f"SERVE_WORKDIR={work}"]).start()
    containers.append(container)
    container.wait_ready()
    assert container.exec("sh", "-c", "touch /home/model-server/x", check=False).returncode != 0  # really read-only
    status, body, _ = container.predict(f"predictions/{MODEL}", PHOTO)
    assert status == 200 and next(iter(body)) in CAT, body
    assert container.stop()[0] == 0

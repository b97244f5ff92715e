"""Session fixtures: real archives built from the real weights, and one real TorchServe."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.registry import get_spec
from scripts.build.archives import build_archive
from scripts.build.weights import export
from scripts.build.workflow import DEFAULT_SPEC, build_workflow
from scripts.client.torchserve import TorchServe
from scripts.serving.front import Running, app
from scripts.serving.v2 import Front
from tests.integration.figures import summary_lines
from tests.support.images import encode_image as encode  # noqa: F401  (the integration tests import it from here)


def pytest_terminal_summary(terminalreporter):
    """The reliability tests' measured figures (tests/integration/figures.py), if any ran."""
    lines = summary_lines()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def model_store(tmp_path_factory) -> Path:
    """efficientnet_lite0.mar (version 1.0), efficientnet_lite0_v2.mar (the same model, 2.0), minilm.mar."""
    root = tmp_path_factory.mktemp("archives")
    weights = export(get_spec("efficientnet_lite0"), root / "weights").parent
    store = root / "model-store"
    build_archive("efficientnet_lite0", weights, store, version="1.0")
    build_archive("minilm", export(get_spec("minilm"), weights).parent, store)
    v2 = build_archive("efficientnet_lite0", weights, root / "v2", version="2.0")
    shutil.copyfile(v2, store / "efficientnet_lite0_v2.mar")
    return store


WORKFLOWS = ("photo_embedding.war",)  # what the session server registers


@pytest.fixture(scope="session")
def wf_store(tmp_path_factory) -> Path:
    """photo_embedding.war, whose models are the model store's archives."""
    store = tmp_path_factory.mktemp("wf-store")
    build_workflow(DEFAULT_SPEC, store)
    return store


@pytest.fixture(scope="session")
def server(tmp_path_factory, model_store, wf_store) -> TorchServe:
    ts = TorchServe.start(
        tmp_path_factory.mktemp("server"), model_store, "efficientnet_lite0=efficientnet_lite0.mar,minilm=minilm.mar",
        workflow_store=wf_store, workflows=WORKFLOWS,
    )
    yield ts
    assert ts.stop() == 0


@pytest.fixture(scope="session")
def front(server) -> str:
    """The front on a free port in this process, as serve.py runs it, pointed at the session server's
    config and key file; its /v2/health/ready waits for the session's workflow too."""
    running = Running(app(Front.from_config(server.workdir / "config.properties", server.key_file, list(WORKFLOWS))), "127.0.0.1", 0).start()
    yield running.url
    running.stop()


@pytest.fixture(scope="session")
def settled(server) -> TorchServe:
    """The session server, ready: TorchServe.start returns once every worker is READY and the
    workflow is registered (scripts/serving/readiness.py, as `make serve`'s `ready:` line). While serve.py
    registers the workflow (20-35 s on 2 cores) TorchServe 0.12 holds predictions and some
    management requests (docs/reliability.md); a server that is not ready never reaches a test."""
    return server


@pytest.fixture(scope="session")
def workflow(settled) -> str:
    """photo_embedding, once serve.py's background registration of it is over."""
    return "photo_embedding"

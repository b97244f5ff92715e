"""docs/security.md's table of what TorchServe's frontend jar holds, checked against the installed jar:
a new TorchServe pin fails here until the table (and what it says about known advisories) is reread."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import ts

from scripts.client.torchserve import REPO

JAR = Path(ts.__file__).parent / "frontend" / "model-server.jar"
DOC = REPO / "docs" / "security.md"


def jar_versions() -> dict[str, str]:
    """component -> version, from the jar's own records: Netty's version file, the grpc-java version
    compiled into GrpcUtil, and the Maven dependency list that names Log4j."""
    with zipfile.ZipFile(JAR) as jar:
        netty = set(re.findall(r"^netty-codec-http\.version=(\S+)$", jar.read("META-INF/io.netty.versions.properties").decode(), re.M))
        grpc = set(re.findall(rb"\x01\x00.(1\.\d+\.\d+)", jar.read("io/grpc/internal/GrpcUtil.class")))
        log4j = set(re.findall(r"log4j-core:jar:(\S+)", jar.read("META-INF/DEPENDENCIES").decode()))
    assert len(netty) == len(grpc) == len(log4j) == 1, (netty, grpc, log4j)
    return {"Netty": netty.pop(), "grpc-java": grpc.pop().decode(), "Log4j": log4j.pop()}


@pytest.mark.parametrize("component", ["Netty", "grpc-java", "Log4j"])
def test_the_documented_versions_are_the_jars(component):
    version = jar_versions()[component]
    assert f"| {component} | {version} |" in DOC.read_text(), f"docs/security.md does not say the jar holds {component} {version}"


def test_the_shipped_configs_exit_on_a_frontend_out_of_memory():
    """What docs/security.md promises for every deployment (the behaviour: tests/integration/test_faults.py)."""
    for config in ("config.properties", "docker/config.properties", "deploy/kserve/config.properties"):
        assert re.search(r"^vmargs=.*-XX:\+ExitOnOutOfMemoryError", (REPO / config).read_text(), re.M), config

"""scripts/serving/ts_config.py, the one config.properties reader: TorchServe's syntax and its TS_<KEY> overrides."""

from __future__ import annotations

import pytest

from scripts.serving.ts_config import address, listen_addresses, local_url, read_properties, setting

CONFIG = """# a comment
! another
inference_address=http://0.0.0.0:8080
management_address = http://127.0.0.1:8081
metrics_address=http://127.0.0.1:8082
models={"a": \\
  {"1.0": {}}}
"""


def test_read_properties_skips_comments_and_joins_continued_lines():
    properties = read_properties(CONFIG)
    assert properties["management_address"] == "http://127.0.0.1:8081"
    assert properties["models"] == '{"a":   {"1.0": {}}}'
    assert not any(key.startswith(("#", "!")) for key in properties)


@pytest.mark.parametrize("env, expected", [
    ({}, "http://127.0.0.1:8080"),  # 0.0.0.0 is reached on loopback
    ({"TS_INFERENCE_ADDRESS": "http://127.0.0.1:9999"}, "http://127.0.0.1:9999"),  # as TorchServe: the variable wins
])
def test_address_honours_the_environment_as_torchserve_does(env, expected):
    assert address(read_properties(CONFIG), "inference", env) == expected
    assert local_url(CONFIG, "inference", env) == expected


def test_every_reader_sees_the_moved_management_port():
    """The bug this module ends: workflows registered on one port while readiness waited on another."""
    env = {"TS_MANAGEMENT_ADDRESS": "http://127.0.0.1:7001"}
    assert listen_addresses(CONFIG, env)["management"] == ("127.0.0.1", 7001)
    assert local_url(CONFIG, "management", env) == "http://127.0.0.1:7001"
    assert listen_addresses(CONFIG, {})["inference"] == ("0.0.0.0", 8080)


def test_setting_and_a_missing_address():
    assert setting({}, "grpc_inference_port", {"TS_GRPC_INFERENCE_PORT": "7170"}) == "7170"
    assert setting({"job_queue_size": "200"}, "job_queue_size", {}) == "200"
    assert setting({}, "job_queue_size", {}) is None
    with pytest.raises(KeyError, match="metrics_address"):
        address({}, "metrics", {})

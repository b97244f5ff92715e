"""scripts/build/model_config.py: what TorchServe 0.12 would misread in a model-config.yaml is refused
before it is archived; every shipped config, and its GPU variant, passes."""

from __future__ import annotations

import pytest
import yaml

from handlers.config import ImageSettings, TextSettings
from models.registry import CONFIG_DIR
from scripts.build.model_config import TORCHSERVE_KEYS, check, problems


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_serves_as_written(path):
    settings = TextSettings if path.stem == "minilm" else ImageSettings
    assert problems(yaml.safe_load(path.read_text()), settings) == []


def test_a_zero_batch_delay_is_refused_with_what_torchserve_would_do():
    (problem,) = problems({"batchSize": 8, "maxBatchDelay": 0})
    assert problem.startswith("maxBatchDelay: 0 reads as unset") and "100 ms" in problem and "1 (ms)" in problem
    assert problems({"maxBatchDelay": 1}) == []


@pytest.mark.parametrize("config, expected", [
    ({"batchSize": 0}, "batchSize: must be at least 1, not 0"),
    ({"maxBatchDelay": -5}, "maxBatchDelay: must be at least 1, not -5"),
    ({"batchSize": "8"}, "batchSize: must be a whole number, not '8'"),
    ({"batchSize": True}, "batchSize: must be a whole number, not True"),
    ({"maxBatchDelay": 2.5}, "maxBatchDelay: must be a whole number, not 2.5"),
    ({"minWorkers": 3, "maxWorkers": 2}, "minWorkers (3) is above maxWorkers (2)"),
    ({"responseTimeout": 0}, "responseTimeout: must be at least 1, not 0"),
])
def test_values_torchserve_would_drop_are_refused(config, expected):
    assert problems(config) == [f"{expected}" + ("" if "above" in expected else " (TorchServe would drop it)")]


@pytest.mark.parametrize("typo, meant", [("batch_size", "batchSize"), ("maxBatchdelay", "maxBatchDelay"),
                                         ("minworkers", "minWorkers"), ("max-workers", "maxWorkers"),
                                         ("responseTimeot", "responseTimeout"), ("handlers", "handler")])
def test_a_key_that_looks_like_a_known_one_is_a_typo(typo, meant):
    (problem,) = problems({typo: 1 if typo != "handlers" else {}})
    assert problem == f"{typo}: TorchServe does not read this key and would ignore it; did you mean {meant}?"


def test_keys_of_nobodys_spelling_are_left_to_the_handler_that_reads_them():
    assert problems({"batchSize": 4, "tokenizer": {"max_length": 128}, "labels_file": "x.json"}) == []
    assert {"maxBatchDelay", "batchSize", "minWorkers", "deviceType", "responseTimeout"} <= TORCHSERVE_KEYS


def test_the_handler_section_and_the_gpu_variants_are_parsed_as_the_handler_will():
    assert problems({"handler": {"precison": "fp16"}}, ImageSettings)[0].startswith(
        "handler: unknown handler setting(s) ['precison']")
    (gpu,) = problems({"handler": {"topk": 5}, "gpu": {"batchSize": 64, "handler": {"compile": "graphs"}}}, ImageSettings)
    assert gpu.startswith("gpu variant's handler: compile must be one of")  # only the GPU image would have met it
    assert problems({"gpu": {"maxBatchDelay": 0}})[0].startswith("gpu.maxBatchDelay: 0 reads as unset")
    assert problems({"gpu": [1]}) == ["gpu: must be a mapping of the settings the GPU image changes, not list"]
    assert problems({"handler": {"precison": "fp16"}}) == []  # no settings class: a handler of someone else's


def test_check_names_the_file_and_every_problem():
    with pytest.raises(ValueError, match=r"^my\.yaml: batchSize: must be at least 1, not 0 .*; maxBatchDelay: 0 reads"):
        check({"batchSize": 0, "maxBatchDelay": 0}, None, "my.yaml")
    check({"batchSize": 4}, ImageSettings, "fine.yaml")
    assert problems(["batchSize", 4]) == ["the file must be a mapping of keys to values, not list"]

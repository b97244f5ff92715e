"""handlers/workflow_nodes.py and the error pass-through (the .war build: tests/tooling/test_build_workflow.py)."""

from __future__ import annotations

import json

import pytest
import yaml

from handlers import workflow_nodes as nodes
from scripts.build.workflow import DEFAULT_SPEC

ERROR_BODY = json.dumps({"error": "undecodable_input", "detail": "not an image"}, indent=2).encode()


@pytest.mark.parametrize(
    ("labels", "caption"),
    [
        ({"tabby": 0.45, "Egyptian cat": 0.24, "tiger cat": 0.22, "lynx": 0.01}, "a photo of a tabby, Egyptian cat, tiger cat"),
        ({"espresso": 0.86, "cup": 0.07}, "a photo of an espresso"),
        ({"cup": 0.05, "espresso": 0.04}, "a photo of a cup"),  # nothing likely: still the top label
        ({"b": 0.2, "a": 0.5}, "a photo of an a, b"),  # ordered by probability, not by input order
    ],
)
def test_caption_for(labels, caption):
    assert nodes.caption_for(labels) == caption


def test_functions_do_nothing_when_the_node_loads():
    assert nodes.caption(None, None) is None and nodes.assemble(None, None) is None


def test_caption_passes_errors_on_and_captions_labels():
    out = nodes.caption([{"body": bytearray(ERROR_BODY)}, {"body": bytearray(b'{"espresso": 0.9}')}], None)
    assert out == [{"error": "undecodable_input", "detail": "not an image"}, {"text": "a photo of an espresso"}]


def test_assemble_joins_three_inputs_or_reports_the_first_failure_with_status():
    good = {"efficientnet_lite0": b'{"espresso": 0.9}', "caption": b'{"text": "a photo of an espresso"}',
            "minilm": b'{"embedding": [0.6, 0.8], "truncated": false}'}
    failed = {**good, "efficientnet_lite0": ERROR_BODY, "caption": ERROR_BODY, "minilm": ERROR_BODY}
    answers = nodes.assemble([good, failed], None)
    assert all(isinstance(text, bytes) and b": " not in text for text in answers)  # compact JSON, sent as is
    ok, bad = (json.loads(text) for text in answers)
    assert ok == {"labels": {"espresso": 0.9}, "caption": "a photo of an espresso", "embedding": [0.6, 0.8]}
    assert bad == {"error": "undecodable_input", "detail": "not an image", "status": 422}


def test_a_bug_in_a_step_fails_that_request_only():
    out = nodes.caption([{"body": bytearray(b"not json")}, {"body": bytearray(b'{"cup": 0.9}')}], None)
    assert out[0]["error"] == "inference_failed" and out[1] == {"text": "a photo of a cup"}


def test_the_spec_names_the_nodes_the_handler_defines():
    spec = yaml.safe_load(DEFAULT_SPEC.read_text())
    dag_nodes = set(spec["dag"]) | {n for targets in spec["dag"].values() for n in targets}
    models = {name for name, value in spec["models"].items() if isinstance(value, dict)}
    assert {nodes.CLASSIFIER, nodes.EMBEDDER} == models
    assert dag_nodes - models == {nodes.CAPTION, "assemble"}
    assert all(callable(getattr(nodes, name)) for name in dag_nodes - models)
    assert sorted(n for n, targets in spec["dag"].items() if "assemble" in targets) == sorted(
        [nodes.CLASSIFIER, nodes.CAPTION, nodes.EMBEDDER])
    # the request goes to the classifier as sent (its handler checks it as at /predictions), no hop before
    assert dag_nodes - {n for targets in spec["dag"].values() for n in targets} == {nodes.CLASSIFIER}

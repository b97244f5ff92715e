"""BundleHandler's isolation: a poisoned item fails alone (500), an out-of-memory batch is halved
until it fits (507 only for an item that does not fit even alone). A real subclass with a tiny
model that fails on marked inputs; TorchServe's own Context."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from torch import nn

from handlers.base import BundleHandler
from handlers.errors import InferenceFailed, InvalidPayload, OutOfResources

pytestmark = pytest.mark.reliability

HUGE = 1000.0  # an item whose first value is above this never fits in memory
ENCODE_FAILS = 0.25  # encode_response fails on a row whose second value is this (doubled: 0.5)


class Probe(nn.Module):
    """Doubles its input. Raises on a row whose first value is negative (a poisoned input),
    and `oom` when the batch is larger than `capacity` or holds a HUGE item."""

    def __init__(self, capacity: int | None = None, oom: type[BaseException] = torch.cuda.OutOfMemoryError):
        super().__init__()
        self.capacity, self.oom = capacity, oom
        self.calls: list[int] = []  # batch size of every forward call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(x))
        if (self.capacity is not None and len(x) > self.capacity) or (x[:, 0] > HUGE).any():
            raise self.oom("out of memory (simulated)")
        if (x[:, 0] < 0).any():
            raise RuntimeError("poisoned input (simulated)")
        return x * 2


class VectorHandler(BundleHandler):
    """Requests are {"body": [floats]}; responses are the doubled list."""

    def __init__(self, probe: Probe):
        super().__init__()
        self.probe = probe
        self.releases = 0

    def load_model(self, model_dir):
        return self.probe

    def decode_request(self, request: dict, headers=None) -> torch.Tensor:
        values = request["body"]  # a missing body is a KeyError: the unexpected-error path
        if not isinstance(values, list):
            raise InvalidPayload("body must be a list of numbers")
        return torch.tensor(values, dtype=torch.float32)

    def encode_response(self, row: torch.Tensor) -> list[float]:
        if row[1].item() == 2 * ENCODE_FAILS:
            raise ValueError("cannot encode (simulated)")
        return row.tolist()

    def _release_cached_memory(self) -> None:
        self.releases += 1
        super()._release_cached_memory()


@pytest.fixture
def make_handler(tmp_path, make_context):
    (tmp_path / "metadata.json").write_text(json.dumps({"name": "probe"}))

    def make(batch_size: int = 1, settings: dict | None = None, **probe_args) -> tuple[VectorHandler, object]:
        handler = VectorHandler(Probe(**probe_args))
        context = make_context(tmp_path, {"batchSize": batch_size, "handler": {"precision": "fp32", **(settings or {})}})
        handler.initialize(context)
        return handler, context

    return make


def items(n: int, poisoned=(), huge=()) -> list[dict]:
    rows = []
    for i in range(n):
        first = -1.0 if i in poisoned else HUGE + 1 if i in huge else float(i)
        rows.append({"body": [first, float(i)]})
    return rows


def expected_ok(request: dict) -> list[float]:
    return [2 * v for v in request["body"]]


def test_clean_batch_is_one_forward_call(make_handler, serve):
    handler, context = make_handler()
    requests = items(8)
    replies = serve(handler, context, requests)
    assert handler.probe.calls == [8]
    assert [r.status for r in replies] == [200] * 8
    assert [r.body for r in replies] == [expected_ok(q) for q in requests]


@pytest.mark.parametrize(
    "n, poisoned",
    [(1, {0}), (2, {1}), (5, {2}), (8, {3}), (8, {0, 7}), (16, {5}), (16, {0, 1, 2, 3}), (7, set(range(7)))],
)
def test_poisoned_items_fail_alone(make_handler, serve, n, poisoned):
    handler, context = make_handler()
    requests = items(n, poisoned=poisoned)
    replies = serve(handler, context, requests)
    for idx, (request, reply) in enumerate(zip(requests, replies, strict=True)):
        if idx in poisoned:
            assert (reply.status, reply.body["error"]) == (500, "inference_failed"), idx
            assert "poisoned" not in reply.body["detail"]  # no internals to the client
        else:
            assert (reply.status, reply.body) == (200, expected_ok(request)), idx
    # bisection: about 2 calls per level per poisoned item, not one call per item
    bound = 1 + 2 * len(poisoned) * math.ceil(math.log2(n)) if n > 1 else 1
    assert len(handler.probe.calls) <= bound
    if n >= 8 and len(poisoned) == 1:
        assert len(handler.probe.calls) < n


@pytest.mark.parametrize("oom", [torch.cuda.OutOfMemoryError, MemoryError])
@pytest.mark.parametrize("capacity", [1, 2, 3, 7])
def test_oom_batch_is_halved_until_it_fits(make_handler, serve, oom, capacity):
    handler, context = make_handler(capacity=capacity, oom=oom)
    requests = items(8)
    replies = serve(handler, context, requests)
    assert [r.status for r in replies] == [200] * 8
    assert [r.body for r in replies] == [expected_ok(q) for q in requests]
    calls = handler.probe.calls
    assert calls[0] == 8
    succeeded = [size for size in calls if size <= capacity]
    assert sum(succeeded) == 8  # every item ran exactly once successfully
    assert max(succeeded) > capacity // 2  # halved, not shrunk straight to single items
    if capacity >= 2:
        assert len(calls) < 1 + 8  # fewer calls than retrying one by one
    assert handler.releases == len(calls) - len(succeeded)  # cached memory released after each OOM


@pytest.mark.parametrize("oom", [torch.cuda.OutOfMemoryError, MemoryError])
def test_oom_at_batch_size_one_is_507_for_that_item_only(make_handler, serve, oom):
    handler, context = make_handler(oom=oom)
    requests = items(4, huge={2})
    replies = serve(handler, context, requests)
    assert [r.status for r in replies] == [200, 200, 507, 200]
    assert replies[2].body["error"] == "out_of_resources"
    assert [replies[i].body for i in (0, 1, 3)] == [expected_ok(requests[i]) for i in (0, 1, 3)]


@pytest.mark.parametrize("kind, status, error", [("poisoned", 500, "inference_failed"), ("huge", 507, "out_of_resources")])
def test_the_batch_is_halved_down_to_the_one_failing_item(make_handler, serve, kind, status, error):
    """8 -> 4 + 4 -> (2 -> 1 + 1) + 2: the failing item is alone when it gets its error, and
    every other item is answered from a batch that succeeded."""
    handler, context = make_handler()
    requests = items(8, **{kind: {5}})
    replies = serve(handler, context, requests)
    assert handler.probe.calls == [8, 4, 4, 2, 1, 1, 2]
    assert [r.status for r in replies] == [200] * 5 + [status] + [200] * 2
    assert replies[5].body["error"] == error
    assert [r.body for i, r in enumerate(replies) if i != 5] == [expected_ok(q) for i, q in enumerate(requests) if i != 5]


def test_nothing_fits(make_handler, serve):
    handler, context = make_handler(capacity=0)
    replies = serve(handler, context, items(4))
    assert [r.status for r in replies] == [507] * 4


def test_poison_and_oom_together(make_handler, serve):
    handler, context = make_handler(capacity=2)
    requests = items(8, poisoned={6}, huge={1})
    statuses = [r.status for r in serve(handler, context, requests)]
    assert statuses == [200, 507, 200, 200, 200, 200, 500, 200]


def test_decode_and_encode_failures_stay_per_request(make_handler, serve):
    handler, context = make_handler()
    requests = [
        {"body": [1.0, 1.0]},
        {"data": [1.0, 1.0]},  # KeyError in decode_request: unexpected, 500 without internals
        {"body": "1, 2"},  # InvalidPayload: 400
        {"body": [1.0, ENCODE_FAILS]},  # encode_response raises: 500
        {"body": [3.0, 4.0]},
    ]
    replies = serve(handler, context, requests)
    assert [r.status for r in replies] == [200, 500, 400, 500, 200]
    assert replies[1].body["error"] == "inference_failed" and "KeyError" not in replies[1].body["detail"]
    assert replies[2].body["error"] == "invalid_payload"
    assert [replies[0].body, replies[4].body] == [[2.0, 2.0], [6.0, 8.0]]
    assert handler.probe.calls == [3]  # the two that decoded, plus the one whose encoding fails


def test_run_isolated_keeps_the_callers_indices(make_handler):
    handler, _ = make_handler()
    decoded = {idx: torch.tensor([float(idx), 0.0]) for idx in (0, 3, 5)}
    decoded[3] = torch.tensor([-1.0, 0.0])
    outcomes = handler.run_isolated([0, 3, 5], decoded)
    assert set(outcomes) == {0, 3, 5}
    assert isinstance(outcomes[3], InferenceFailed)
    assert outcomes[0].tolist() == [0.0, 0.0] and outcomes[5].tolist() == [10.0, 0.0]
    assert handler.run_isolated([], {}) == {}


def test_run_isolated_returns_out_of_resources(make_handler):
    handler, _ = make_handler(capacity=0)
    outcome = handler.run_isolated([7], {7: torch.tensor([1.0, 1.0])})
    assert isinstance(outcome[7], OutOfResources) and outcome[7].status_code == 507


@pytest.mark.parametrize("decode_threads", [1, 3])
def test_log_lines_name_the_request_by_torchserves_id(make_handler, serve, caplog, decode_threads):
    """One request can be followed from its x-request-id to the handler's line about it, also when
    it was decoded in one of the decode threads."""
    handler, context = make_handler(settings={"decode_threads": decode_threads})
    assert (handler.decode_pool is None) == (decode_threads == 1)
    caplog.set_level(logging.WARNING, logger="handlers.base")
    replies = serve(handler, context, [{"body": [1.0, 1.0]}, {"data": [1.0]}, {"body": "1, 2"}, {"body": [-1.0, 0.0]}])
    assert [r.status for r in replies] == [200, 500, 400, 500]
    ids = context.request_ids
    lines = [record.getMessage() for record in caplog.records if record.name == "handlers.base"]
    assert f"request_id={ids[1]}: decoding failed unexpectedly" in lines
    assert f"request_id={ids[2]}: answered 400 invalid_payload" in lines
    assert f"request_id={ids[3]}: inference failed" in lines
    assert not [line for line in lines if ids[0] in line]  # the answered request has no error line


def test_log_lines_carry_a_fixed_error_code_not_a_payloads(make_handler, serve, caplog):
    handler, context = make_handler()
    caplog.set_level(logging.WARNING, logger="handlers.base")
    serve(handler, context, [{"body": {"error": "forged\nINFO all is well", "detail": "x"}}])
    (line,) = [record.getMessage() for record in caplog.records if "answered" in record.getMessage()]
    assert line.endswith("answered 500 other") and "\n" not in line


def test_predict_returns_one_outcome_per_item_in_order(make_handler):
    handler, _ = make_handler()
    items = [torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 0.0])]
    outcomes = handler.predict(items)
    assert len(outcomes) == 3 and isinstance(outcomes[1], InferenceFailed)
    assert [outcomes[0].tolist(), outcomes[2].tolist()] == [[2.0, 0.0], [6.0, 0.0]]
    assert handler.predict([]) == []


@pytest.mark.parametrize("decode_threads", [1, 2])
def test_decoding_in_threads_keeps_order_and_isolation(make_handler, serve, decode_threads):
    handler, context = make_handler(settings={"decode_threads": decode_threads})
    requests = [*items(6, poisoned={4}), {"body": "not a list"}, {"data": [1.0]}]
    replies = serve(handler, context, requests)
    assert [r.status for r in replies] == [200, 200, 200, 200, 500, 200, 400, 500]
    assert [r.body for r in replies[:4]] == [expected_ok(q) for q in requests[:4]]


@pytest.mark.parametrize("count, padded", [(1, 1), (3, 4), (5, 8), (8, 8)])
def test_batches_run_padded_to_a_bucket(make_handler, serve, count, padded):
    """With pad_to_bucket, the model only ever sees the warmed sizes; the padding rows are dropped."""
    handler, context = make_handler(batch_size=8, settings={"pad_to_bucket": True})
    requests = items(count)
    replies = serve(handler, context, requests)
    assert handler.probe.calls == [padded]
    assert [(r.status, r.body) for r in replies] == [(200, expected_ok(q)) for q in requests]


def test_unpadded_batches_run_at_their_own_size(make_handler, serve):
    handler, context = make_handler(batch_size=8)
    serve(handler, context, items(5))
    assert handler.probe.calls == [5]


def test_oom_halving_with_padding_still_answers_every_item(make_handler, serve):
    """5 items run as 8, then as 2 and 3 (padded to 4), ...: an item that fits alone is never lost to padding."""
    handler, context = make_handler(batch_size=8, settings={"pad_to_bucket": True}, capacity=3)
    requests = items(5)
    replies = serve(handler, context, requests)
    assert [(r.status, r.body) for r in replies] == [(200, expected_ok(q)) for q in requests]
    assert set(handler.probe.calls) <= {1, 2, 4, 8}

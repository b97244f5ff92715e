"""handlers.onnx_runtime.OnnxModel around a stand-in session: tensors in and out by input name or
position, wrong inputs refused, an allocation failure raised as MemoryError (the OOM halving's cue)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handlers.onnx_runtime import OnnxModel


class Session:
    def __init__(self, error: Exception | None = None):
        self.error, self.fed = error, None

    def get_inputs(self):
        return [SimpleNamespace(name="input_ids"), SimpleNamespace(name="attention_mask")]

    def get_outputs(self):
        return [SimpleNamespace(name="hidden")]

    def run(self, names, feeds):
        self.fed = feeds
        if self.error:
            raise self.error
        return [(feeds["input_ids"] + feeds["attention_mask"]).astype(np.float32)]


def test_inputs_by_name_or_position_give_a_tensor():
    session = Session()
    model = OnnxModel(session)
    ids, mask = torch.tensor([[1, 2]]), torch.tensor([[1, 0]])
    assert torch.equal(model(ids, mask), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(model(attention_mask=mask, input_ids=ids), torch.tensor([[2.0, 2.0]]))
    assert set(session.fed) == {"input_ids", "attention_mask"}


@pytest.mark.parametrize("args, kwargs", [((torch.zeros(1),), {}), ((torch.zeros(1),) * 3, {}),
                                          ((), {"input_ids": torch.zeros(1), "mask": torch.zeros(1)})])
def test_wrong_inputs_are_refused(args, kwargs):
    with pytest.raises(TypeError, match="takes"):
        OnnxModel(Session())(*args, **kwargs)


def test_allocation_failure_is_a_memory_error_and_others_pass_through():
    ids = torch.zeros(1, 2, dtype=torch.long)
    with pytest.raises(MemoryError):
        OnnxModel(Session(RuntimeError("Failed to allocate memory for requested buffer of size 123")))(ids, ids)
    with pytest.raises(RuntimeError, match="kernel"):
        OnnxModel(Session(RuntimeError("kernel failed")))(ids, ids)

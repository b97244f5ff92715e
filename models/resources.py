"""Resource estimates for a model: parameters, weights, activations by batch size, workers that fit.

Pure apart from running the model once per batch size: `scripts/build/weights.py` writes the
estimates into metadata.json; `make inspect MODEL=...` adds measured worker memory (RSS, CUDA).
Activations are estimated as the largest input + output of any one layer: what inference must
hold at once (no autograd graph is kept), before the allocator's and oneDNN's own overheads.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

MB = 2**20


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def weights_mb(model: nn.Module) -> float:
    """Parameters and buffers (batch-norm statistics) as loaded, in MiB."""
    tensors = [*model.parameters(), *model.buffers()]
    return round(sum(t.numel() * t.element_size() for t in tensors) / MB, 2)


def example_batch(input_spec: dict, batch: int, tokens: int = 128) -> tuple[tuple, dict]:
    """(args, kwargs) for one forward pass, from the metadata's "input" entry."""
    if "tensor" in input_spec:
        return (torch.zeros(batch, *input_spec["tensor"]["shape"]),), {}
    length = min(tokens, int(input_spec.get("max_tokens", tokens)))
    ids = torch.ones(batch, length, dtype=torch.long)
    return (), {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    return sum(_tensor_bytes(v) for v in getattr(value, "values", lambda: [])())


def activation_mb(model: nn.Module, args: tuple, kwargs: dict) -> float:
    """The largest input + output of any leaf layer in one forward pass, in MiB."""
    largest = [0]

    def hook(_module, inputs, output) -> None:
        largest[0] = max(largest[0], _tensor_bytes(inputs) + _tensor_bytes(output))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.inference_mode():
            model(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return round(largest[0] / MB, 2)


def estimate(model: nn.Module, input_spec: dict, batch_sizes: Sequence[int] = (1, 8)) -> dict:
    """The static part, for metadata.json."""
    model = model.eval()
    static = {"parameters": parameter_count(model), "weights_mb": weights_mb(model)}
    try:
        activations = {str(b): activation_mb(model, *example_batch(input_spec, b)) for b in batch_sizes}
    except (RuntimeError, ValueError, TypeError) as exc:  # a model whose config declares another input
        return {**static, "activation_mb": None, "activation_note": f"the model did not run on its declared input: {exc}"}
    note = "largest layer input + output in one forward pass (fp32)" + ("" if "tensor" in input_spec else ", 128 tokens per text")
    return {**static, "activation_mb": activations, "activation_note": note}


def workers_that_fit(memory_bytes: int, per_worker_bytes: int, cores: int, reserve: float = 0.2) -> dict:
    """How many workers a machine holds: by memory (keeping `reserve` free) and by cores (one thread each)."""
    by_memory = int(memory_bytes * (1 - reserve) // max(per_worker_bytes, 1))
    return {"by_memory": by_memory, "by_cores": cores, "fit": max(0, min(by_memory, cores))}

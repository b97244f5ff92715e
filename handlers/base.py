"""The shared TorchServe handler: per-request isolation, batch bisection, warm-up (the device policy: handlers.device).

Lifecycle, as TorchServe drives it:
  initialize(context)       once per worker: settings, device, threads, the runtime (`torch`:
                            verified weights, `optimize()` for memory layout and compilation;
                            `onnxruntime`: the verified model.onnx in a session), `setup()`, then a
                            warm-up on `example_request()` so the first real request is not the slow one
  handle(requests, context) once per batch:
      decode_request(request) -> item      per request, in `decode_threads` threads; a RequestError
                                           fails that request only
      decode_batch(items) -> items         once per batch: what is cheaper decoded all at once (a
                                           batch's JPEGs on the GPU); an item may become a RequestError
      collate(items) -> batch              a tensor, or a dict of tensors; moved to the device here
      infer(batch) -> batch output         under inference_mode (and autocast if configured)
      split(output, items) -> results      one per item (default: one output row per item)
      encode_response(result) -> JSON      per request; sent as compact JSON bytes (`compact_json`)

If the model raises on a batch, the batch is split in half and each half retried, so a poisoned
item fails alone (500) and an out-of-memory batch shrinks down to single items (507 at one).
Every batch size the worker can run is warmed in initialize (or, with `pad_to_bucket`, batches are
padded to a few warmed sizes), so no client meets a compilation stall.

A v2 (Open Inference Protocol) request is recognised by its body (handlers.oip) on any route:
      decode_v2(request) -> items          one or more items (several images in one request)
      encode_v2(results) -> output tensors  from those items' results, sent as v2 JSON or binary
Its items join the batch like any other; it fails as a whole if one of them fails. `v2_signature()`
names the tensors; TorchServe's describe API (`GET /models/{m}?customized=true`) returns it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar, copy_context
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType
from typing import Any, Hashable, Iterator, Mapping, Sequence, TypeVar

import torch
from ts.torch_handler.base_handler import BaseHandler

from handlers import oip
from handlers.architectures import build_module
from handlers.config import HandlerSettings, parse_settings
from handlers.device import autocast_for, cpu_has_native_bf16, effective_precision, effective_runtime, select_device, thread_count
from handlers.errors import InferenceFailed, OutOfResources, RequestError
from handlers.metrics import StageTimer, error_label, report_batch, report_worker_start
from handlers.onnx_runtime import cuda_provider_available, load_session
from handlers.payload import compact_json, request_payload, upstream_error
from handlers.weights import load_state_dict, read_metadata

log = logging.getLogger(__name__)

OOM_ERRORS = (torch.cuda.OutOfMemoryError, MemoryError)
K = TypeVar("K", bound=Hashable)
NO_HEADERS: Mapping[str, Any] = MappingProxyType({})
_BATCH_REQUEST_IDS: ContextVar[Mapping[int, str] | None] = ContextVar("batch_request_ids", default=None)


@contextlib.contextmanager
def request_ids_of(context) -> Iterator[None]:
    """While a batch is handled, request_tag(idx) names its requests by TorchServe's ids."""
    token = _BATCH_REQUEST_IDS.set(getattr(context, "request_ids", None) or {})
    try:
        yield
    finally:
        _BATCH_REQUEST_IDS.reset(token)


def request_tag(key: int | tuple[int, int]) -> str:
    """`request_id=<id>` for a log line about request `idx` of the batch being handled (or its
    item `(idx, j)`): the id TorchServe gave it, which the client gets in the x-request-id header."""
    idx = key[0] if isinstance(key, tuple) else key
    return f"request_id={(_BATCH_REQUEST_IDS.get() or {}).get(idx, '-')}"


def request_headers(context, idx: int) -> Mapping[str, str]:
    """Request `idx`'s HTTP headers (none from a context without them: in-process callers, tests)."""
    get_all = getattr(context, "get_all_request_header", None)
    return (get_all(idx) if get_all else None) or {}


def is_describe(context) -> bool:
    """TorchServe's describe API (`?customized=true`) asks through handle() with this header."""
    get = getattr(context, "get_request_header", None)
    return bool(get) and get(0, "describe") == "True"


@dataclass
class DecodedRequest:
    """One request of a batch after decoding: its items (one, or a v2 request's several), or the
    error that fails it; and whether it speaks v2, which decides the shape of its answer."""

    items: list[Any] = field(default_factory=list)
    error: RequestError | None = None
    v2: bool = False
    v2_request: oip.InferRequest | None = None
    """The parsed v2 request (None when it did not parse: then `error` says why)."""


def gather(results: Sequence[Any]) -> Any:
    """A v2 request's outcome from its items' outcomes: the first error among them, or them all."""
    return next((r for r in results if isinstance(r, RequestError)), list(results))


def bucket_sizes(batch_size: int) -> tuple[int, ...]:
    """The powers of two below `batch_size`, and `batch_size`: 1, 2, 4, 8, ..., batchSize."""
    powers = [1 << n for n in range(batch_size.bit_length()) if 1 << n < batch_size]
    return (*powers, batch_size)


def padded_size(count: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `count` items (`count` itself beyond the largest)."""
    return next((size for size in buckets if size >= count), count)


def warmup_sizes(batch_size: int, pad_to_bucket: bool) -> tuple[int, ...]:
    """Every batch size the worker will run, largest first, twice each (TorchScript specialises on
    the second call): the buckets when batches are padded to them, else every size up to batchSize."""
    sizes = bucket_sizes(batch_size) if pad_to_bucket else tuple(range(1, batch_size + 1))
    return tuple(size for size in reversed(sizes) for _ in range(2))


def _workers(yaml_config: Mapping[str, Any]) -> int:
    return int(yaml_config.get("maxWorkers") or yaml_config.get("minWorkers") or 1)


class BundleHandler(BaseHandler):
    """Base for the bundle's handlers; subclasses fill in the four per-model steps."""

    settings_class: type[HandlerSettings] = HandlerSettings

    def initialize(self, context) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.settings = parse_settings(self.settings_class, yaml_config.get("handler"))
        self.device = select_device(properties.get("gpu_id"), torch.cuda.is_available())
        self.precision = effective_precision(self.settings.precision, self.device, cpu_has_native_bf16())
        self.autocast()  # fail at load time, not per request, on an impossible precision
        # the precision asked for, not the one this CPU runs: onnxruntime + bf16 is refused on every machine
        self.runtime = effective_runtime(self.settings.runtime, self.device, self.settings.precision,
                                         self.device.type == "cuda" and cuda_provider_available())
        self.threads = thread_count(self.settings.threads, len(os.sched_getaffinity(0)), _workers(yaml_config))
        torch.set_num_threads(self.threads)
        decode_threads = self.settings.decode_threads or self.threads
        self.decode_pool = ThreadPoolExecutor(decode_threads, "decode") if decode_threads > 1 else None
        self.batch_size = int(properties.get("batch_size") or yaml_config.get("batchSize") or 1)
        self.metadata = read_metadata(model_dir)
        manifest_model = (getattr(context, "manifest", None) or {}).get("model", {})
        self.model_name = manifest_model.get("modelName", self.metadata["name"])
        self.model_version = str(manifest_model.get("modelVersion", ""))
        self.model = self.load_runtime(model_dir)
        self.setup(model_dir)
        self.warm_up()
        self.initialized = True
        self.heartbeat = report_worker_start(getattr(context, "metrics", None))
        log.info("%s ready on %s (%s, %s, %d threads, %d decoding)", self.metadata["name"], self.device, self.runtime,
                 self.precision, self.threads, decode_threads)

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast_for(self.device, self.precision)

    def load_runtime(self, model_dir: Path) -> Any:
        """The model as it will serve: the archive's model.onnx in an onnxruntime session, or the
        torch module (built, sha256-verified weights, `optimize()`d). Both take and give tensors."""
        if self.runtime == "onnxruntime":
            s = self.settings
            return load_session(model_dir, self.metadata, self.threads, s.graph_optimization, s.ort_spinning, self.device)
        return self.optimize(self.load_model(model_dir).to(self.device).eval())

    def load_model(self, model_dir: Path) -> torch.nn.Module:
        """Build the architecture from metadata and load the sha256-verified state_dict."""
        module = build_module(self.metadata["architecture"], model_dir)
        module.load_state_dict(load_state_dict(model_dir, self.metadata))
        return module

    def optimize(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as it will serve (memory layout, compilation); by default unchanged."""
        return model

    def warm_up(self) -> None:
        """Run `example_request()` at every batch size the worker will run, before serving:
        compilation per shape, kernel and cuDNN plan choice, allocations happen here, not on a
        client's request (a new size stalled a GPU worker for 2-3 s: docs/gpu.md)."""
        request = self.example_request()
        if request is None:
            return
        for size in warmup_sizes(self.batch_size, self.settings.pad_to_bucket):
            items = self.decode_batch({key: self.decode_request(request) for key in range(size)})
            failed = [item for item in items.values() if isinstance(item, RequestError)]
            if failed:
                raise RuntimeError(f"the warm-up request failed: {failed[0].detail}")
            self._forward(list(items.values()))

    # ---- the per-model steps -------------------------------------------------------------
    def setup(self, model_dir: Path) -> None:
        """Load what else the handler needs from the archive (labels, tokenizer ...)."""

    def example_request(self) -> dict | None:
        """A valid request to warm up with (None: no warm-up)."""
        return None

    def decode_request(self, request: dict, headers: Mapping[str, Any] = NO_HEADERS) -> Any:
        """One request's item. `headers`: its HTTP headers, and under the payload's name ("body", or a
        form field's) the content type the client gave it; none from in-process callers."""
        raise NotImplementedError

    def decode_batch(self, items: dict[Any, Any]) -> dict[Any, Any]:
        """The batch's decoded items, keyed as given, after what is cheaper done for all at once
        (default: nothing); an item that fails here becomes its RequestError, and fails alone."""
        return items

    def collate(self, items: list[Any]) -> torch.Tensor | Mapping[str, torch.Tensor]:
        return torch.stack(items)

    def infer(self, batch: Any) -> torch.Tensor:
        return self.model(batch)

    def split(self, output: torch.Tensor, items: list[Any]) -> list[Any]:
        """One result per item, on the CPU; override when an item owns several rows (a list of texts)."""
        return list(output.float().cpu())

    def encode_response(self, result: Any) -> Any:
        raise NotImplementedError

    # ---- the Open Inference Protocol (v2): the models that speak it fill these in ------------
    def v2_signature(self) -> dict[str, list[dict]] | None:
        """{"inputs": [...], "outputs": [...]} as oip.tensor_metadata entries; None: no v2."""
        return None

    def decode_v2(self, request: oip.InferRequest) -> list[Any]:
        raise oip.ProtocolError(f"{self.model_name} does not take v2 requests")

    def encode_v2(self, results: list[Any]) -> list[oip.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What `GET /models/{m}?customized=true` shows: the v2 metadata the front (scripts/serving/front.py) serves."""
        signature = self.v2_signature()
        platform = "onnxruntime_onnx" if self.runtime == "onnxruntime" else "pytorch_torchserve"
        return {"v2": {"platform": platform, **signature}} if signature else {}

    # ---- TorchServe entry point ----------------------------------------------------------
    def handle(self, data: list[dict], context) -> list[Any]:
        """Answer every request in the batch; failures are confined to their own request."""
        if data and is_describe(context):
            return [compact_json(self.describe())]
        timer = StageTimer()
        with timer("Request"), request_ids_of(context):
            with timer("Preprocess"):
                decoded = self._decode_each(data, context)
                items = self.decode_batch({(idx, j): item for idx, request in enumerate(decoded)
                                           for j, item in enumerate(request.items)})
            with timer("Inference"):
                results = self._run_decoded(items)
            with timer("Postprocess"):
                outcomes = [request.error or self._gather(idx, results, request.v2) for idx, request in enumerate(decoded)]
                responses = [self._respond(context, idx, outcomes[idx], request) for idx, request in enumerate(decoded)]
        errors = [o.code for o in outcomes if isinstance(o, RequestError)]
        report_batch(getattr(context, "metrics", None), timer.seconds, len(data), errors)
        return responses

    @staticmethod
    def _gather(idx: int, results: Mapping[tuple[int, int], Any], v2: bool) -> Any:
        """Request `idx`'s outcome: its one item's (plain), or all its items' (v2; the first error fails it)."""
        parts = [results[key] for key in sorted(key for key in results if key[0] == idx)]
        return gather(parts) if v2 else parts[0]

    def _decode_each(self, data: list[dict], context) -> list[DecodedRequest]:
        """Every request decoded on its own, in order: side by side in the decode threads, each
        with the batch's request ids for its log lines, or here when there is one thread."""
        calls = [(idx, request, request_headers(context, idx)) for idx, request in enumerate(data)]
        if self.decode_pool is None or len(calls) < 2:
            return [self._decode_isolated(*call) for call in calls]
        futures = [self.decode_pool.submit(copy_context().run, self._decode_isolated, *call) for call in calls]
        return [future.result() for future in futures]

    def _decode_isolated(self, idx: int, request: dict, headers: Mapping[str, str]) -> DecodedRequest:
        """One request's items, or the error that fails it alone; a v2 request is known as v2 before
        it is parsed, so even its parse error is answered in v2's shape."""
        payload = request_payload(request)
        decoded = DecodedRequest(error=upstream_error(payload))  # inside a workflow: an earlier node failed it
        if decoded.error:
            return decoded
        try:
            decoded.v2 = oip.is_v2(payload, headers)
            if decoded.v2:
                decoded.v2_request = oip.parse(payload, oip.header_length(headers))
                oip.check_outputs(decoded.v2_request, [o["name"] for o in (self.v2_signature() or {}).get("outputs", [])])
                decoded.items = self.decode_v2(decoded.v2_request)
            else:
                decoded.items = [self.decode_request(request, headers)]
        except RequestError as err:
            decoded.error = err
        except Exception:  # a bug or an unforeseen input: log it, fail this request only
            log.exception("%s: decoding failed unexpectedly", request_tag(idx))
            decoded.error = InferenceFailed("the input could not be processed; the server log has details")
        return decoded

    def run_isolated(self, indices: list[K], items: Mapping[K, Any]) -> dict[K, Any]:
        """Run the model on the items at `indices` (any keys: a batch's are (request, item) pairs);
        on failure bisect, so only the failing items fail."""
        if not indices:
            return {}
        try:
            return dict(zip(indices, self._forward([items[i] for i in indices]), strict=True))
        except OOM_ERRORS:
            self._release_cached_memory()
            if len(indices) == 1:
                log.error("%s: out of memory even alone", request_tag(indices[0]), exc_info=True)
                return {indices[0]: OutOfResources()}
        except Exception:
            if len(indices) == 1:
                log.exception("%s: inference failed", request_tag(indices[0]))
                return {indices[0]: InferenceFailed()}
        half = len(indices) // 2
        log.warning("batch of %d failed; retrying as %d + %d", len(indices), half, len(indices) - half)
        return {**self.run_isolated(indices[:half], items), **self.run_isolated(indices[half:], items)}

    def predict(self, items: Sequence[Any]) -> list[Any]:
        """Decoded items -> one outcome each, in order, as `handle` runs them (a RequestError for
        an item that failed): the in-process entry point of scripts that measure the handler."""
        outcomes = self._run_decoded(self.decode_batch(dict(enumerate(items))))
        return [outcomes[i] for i in range(len(items))]

    def _run_decoded(self, items: Mapping[K, Any]) -> dict[K, Any]:
        """decode_batch's items through the model; the ones it already refused keep their error."""
        refused = {key: item for key, item in items.items() if isinstance(item, RequestError)}
        return {**refused, **self.run_isolated([key for key in items if key not in refused], items)}

    def _forward(self, items: list[Any]) -> list[Any]:
        """One result per item; with `pad_to_bucket` the batch runs padded to a warmed size."""
        count = len(items)
        if self.settings.pad_to_bucket:
            items = items + [items[-1]] * (padded_size(count, bucket_sizes(self.batch_size)) - count)
        batch = self._to_device(self.collate(items))
        with torch.inference_mode(), self.autocast():
            output = self.infer(batch)
        return self.split(output, items)[:count]

    def _to_device(self, batch: torch.Tensor | Mapping[str, torch.Tensor]) -> Any:
        """A batch tensor, or each tensor of a dict batch (a tokenizer's input_ids, attention_mask ...)."""
        if isinstance(batch, Mapping):
            return {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
        return batch.to(self.device, non_blocking=True)

    def _release_cached_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _respond(self, context, idx: int, outcome: Any, request: DecodedRequest) -> str | bytes:
        if request.v2:
            return self._respond_v2(context, idx, outcome, request.v2_request)
        context.set_response_content_type(idx, "application/json")
        if isinstance(outcome, RequestError):
            return self._refuse(context, idx, outcome, outcome.to_body())
        try:
            return compact_json(self.encode_response(outcome))
        except Exception:
            log.exception("%s: encoding the response failed", request_tag(idx))
            return self._respond(context, idx, InferenceFailed(), request)

    def _respond_v2(self, context, idx: int, outcome: Any, request: oip.InferRequest | None) -> str | bytes:
        """A v2 response: JSON, or the binary extension with its header length; errors as {"error": ...}."""
        context.set_response_content_type(idx, oip.JSON_TYPE)
        if isinstance(outcome, RequestError):
            return self._refuse(context, idx, outcome, oip.error_body(outcome))
        try:
            outputs = oip.select_outputs(request, self.encode_v2(outcome))
            body, json_length = oip.encode(request, self.model_name, self.model_version, outputs)
        except Exception:
            log.exception("%s: encoding the v2 response failed", request_tag(idx))
            return self._respond_v2(context, idx, InferenceFailed(), request)
        if json_length is not None:
            context.set_response_content_type(idx, oip.BINARY_TYPE)
            context.set_response_header(idx, "Inference-Header-Content-Length", str(json_length))
        return body

    @staticmethod
    def _refuse(context, idx: int, error: RequestError, body: dict) -> str:
        log.warning("%s: answered %d %s", request_tag(idx), error.status_code, error_label(error.code))
        context.set_response_status(error.status_code, HTTPStatus(error.status_code).phrase, idx)
        return compact_json(body)

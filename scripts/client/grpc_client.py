"""A client of TorchServe's gRPC APIs, with the bundle's error bodies turned into exceptions.

    client = GrpcClient.from_config(Path("config.properties"), Path("key_file.json"))
    client.predict("efficientnet_lite0", Path("samples/cat.jpg").read_bytes())   # {"tabby": 0.45, ...}
    client.predict("minilm", json.dumps({"text": "hello"}).encode())
    client.list_models(); client.describe("minilm"); client.scale("minilm", min_worker=2)

TorchServe 0.12's gRPC job drops the status a handler sets per request: a rejected photo comes
back as gRPC OK carrying the handler's error JSON. `predict` raises `PredictionError` (the bundle's
error code and its HTTP-equivalent status) for such a body, so a caller cannot take it for a
prediction. Keys go in the `authorization: Bearer <key>` metadata (inference key for predictions,
management key for the management service); a wrong key is PERMISSION_DENIED. Stubs come from
scripts/client/grpc_stubs.py (`make grpc-stubs`) and are generated on first use if missing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import grpc

from handlers.payload import status_for
from scripts.client.grpc_stubs import DEFAULT_OUT, generate
from scripts.serving.keyfile import read_keys
from scripts.serving.ts_config import read_properties, setting

GRPC_DEFAULT_PORTS = {"inference": 7070, "management": 7071}
MAX_MESSAGE_BYTES = 20 * 1024 * 1024  # config.properties' max_request_size; grpcio's default is 4 MiB


class PredictionError(Exception):
    """The handler refused this request: `code` is the bundle's error code, `status` its HTTP status."""

    def __init__(self, code: str, status: int, detail: str):
        super().__init__(f"{status} {code}: {detail}")
        self.code, self.status, self.detail = code, status, detail


def load_stubs(out: Path = DEFAULT_OUT):
    """(inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc), generated if missing."""
    if not (out / "inference_pb2_grpc.py").is_file():
        generate(out)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    import inference_pb2
    import inference_pb2_grpc
    import management_pb2
    import management_pb2_grpc

    return inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc


def error_in(body: bytes) -> PredictionError | None:
    """The bundle's {"error", "detail"} body as an exception; None for a prediction."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(parsed, dict) and set(parsed) >= {"error", "detail"} and isinstance(parsed["error"], str):
        return PredictionError(parsed["error"], int(parsed.get("status") or status_for(parsed["error"])), str(parsed["detail"]))
    return None


class GrpcClient:
    def __init__(self, inference_target: str, management_target: str, key_file: Path,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.key_file = Path(key_file)
        self.inference_pb2, inference_grpc, self.management_pb2, management_grpc = load_stubs()
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self._channels = [grpc.insecure_channel(target, options=options) for target in (inference_target, management_target)]
        self.inference = inference_grpc.InferenceAPIsServiceStub(self._channels[0])
        self.management = management_grpc.ManagementAPIsServiceStub(self._channels[1])

    @classmethod
    def from_config(cls, config: Path, key_file: Path, host: str = "127.0.0.1") -> "GrpcClient":
        """The gRPC ports of a config.properties, TS_GRPC_*_PORT honoured (TorchServe's defaults 7070/7071 when unset)."""
        props = read_properties(Path(config).read_text())
        port = {api: int(setting(props, f"grpc_{api}_port") or default) for api, default in GRPC_DEFAULT_PORTS.items()}
        return cls(f"{host}:{port['inference']}", f"{host}:{port['management']}", key_file)

    def _metadata(self, api: str) -> tuple[tuple[str, str], ...]:
        key = read_keys(self.key_file).get(api)
        return (("authorization", f"Bearer {key}"),) if key else ()

    def predict(self, model: str, data: bytes, version: str = "", timeout_s: float = 60) -> Any:
        """The parsed prediction; raises PredictionError for a refused input, grpc.RpcError otherwise."""
        request = self.inference_pb2.PredictionsRequest(model_name=model, model_version=version, input={"data": data})
        body = self.inference.Predictions(request, metadata=self._metadata("inference"), timeout=timeout_s).prediction
        error = error_in(body)
        if error is not None:
            raise error
        return json.loads(body)

    def ping(self) -> str:
        """"Healthy" when TorchServe says so (its answer is a JSON text, as on REST's /ping)."""
        from google.protobuf import empty_pb2

        health = self.inference.Ping(empty_pb2.Empty(), metadata=self._metadata("inference"), timeout=10).health
        return json.loads(health)["status"]

    def _manage(self, rpc: str, request) -> Any:
        response = getattr(self.management, rpc)(request, metadata=self._metadata("management"), timeout=240)
        try:
            return json.loads(response.msg)
        except ValueError:
            return response.msg

    def list_models(self, limit: int = 100) -> Any:
        """{"models": [...]}: an unset limit is proto3's 0, which TorchServe takes as "none"."""
        return self._manage("ListModels", self.management_pb2.ListModelsRequest(limit=limit))

    def describe(self, model: str, version: str = "") -> Any:
        return self._manage("DescribeModel", self.management_pb2.DescribeModelRequest(model_name=model, model_version=version))

    def scale(self, model: str, min_worker: int, max_worker: int | None = None, synchronous: bool = True) -> Any:
        request = self.management_pb2.ScaleWorkerRequest(model_name=model, min_worker=min_worker,
                                                         max_worker=max_worker or min_worker, synchronous=synchronous)
        return self._manage("ScaleWorker", request)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

"""Python stubs for TorchServe's gRPC APIs, from the protos inside the installed frontend jar.

    python -m scripts.client.grpc_stubs [--out build/grpc]      # make grpc-stubs

The torchserve wheel's ts/frontend/model-server.jar holds proto/inference.proto,
proto/management.proto and the googleapis protos they import (google/rpc/status.proto), so no
repo clone or googleapis checkout is needed: the stubs always match the server that is installed.
grpcio-tools supplies google/protobuf/*.proto. The generated modules import each other by bare
name (`import inference_pb2`), so scripts/client/grpc_client.py puts the folder on sys.path.
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from importlib import resources
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "build" / "grpc"
PROTOS = ("proto/inference.proto", "proto/management.proto")
IMPORTED = ("google/rpc/status.proto",)


def frontend_jar() -> Path:
    import ts

    return Path(ts.__file__).parent / "frontend" / "model-server.jar"


def generate(out: Path = DEFAULT_OUT) -> Path:
    """Extract the protos from the jar and compile them into `out`; returns `out`."""
    from grpc_tools import protoc

    source = out / "protos"
    with zipfile.ZipFile(frontend_jar()) as jar:
        for name in (*PROTOS, *IMPORTED):
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(jar.read(name))
    well_known = resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{source / 'proto'}", f"-I{source}", f"-I{well_known}",
            f"--python_out={out}", f"--grpc_python_out={out}",
            *(str(source / name) for name in PROTOS), *(str(source / name) for name in IMPORTED)]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on the protos of {frontend_jar()}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    print(f"grpc stubs: {generate(parser.parse_args().out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

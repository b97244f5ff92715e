"""The TorchServe that `make bench-gpu` loads: the floor (a do-nothing handler), each model's archive
with the GPU variant of its model-config.yaml as the GPU image serves it, started on free ports once
every worker is READY. scripts/measure/bench/gpu.py measures it; a failed start keeps its logs."""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from scripts.build.gpu_config import gpu_variant  # the rewrite the GPU image applies
from scripts.client.torchserve import START_TIMEOUT_S, TorchServe, poll_until
from scripts.measure.bench.plan import IMAGE, TEXT
from scripts.measure.bench.variants import archive_config, write_variant

FLOOR = "floor"
FLOOR_HANDLER = '''
def handle(data, context):
    """TorchServe's own cost: every request answered at once, nothing computed (None: the load call)."""
    return None if data is None else ["{}"] * len(data)
'''
CONTENT_TYPES = {IMAGE: "application/octet-stream", TEXT: "application/json", FLOOR: "application/octet-stream"}
SERVER_DIR = "server"  # the server's working folder inside the bench's temp folder: serve.out, logs/
WORKERS_PER_GPU = 2  # the image's SERVE_WORKERS_PER_GPU


def bench_config(config: dict, gpus: int, dry_run: bool) -> dict:
    """The GPU variant with the image's workers per GPU; a dry run keeps it runnable on a CPU
    (fp32, batch 8) with the GPU path's decoding and padding."""
    variant = {**gpu_variant(config), "minWorkers": max(1, gpus) * WORKERS_PER_GPU, "maxWorkers": max(1, gpus) * WORKERS_PER_GPU}
    if dry_run:
        variant.update(deviceType="cpu", batchSize=min(8, variant["batchSize"]), minWorkers=1, maxWorkers=1)
        variant["handler"] = {**variant["handler"], "precision": "fp32", "threads": 1, "decode_threads": 1}
        if "jpeg_decoder" in variant["handler"]:
            variant["handler"]["jpeg_decoder"] = "torchvision"
    return variant


def served_configs(model_store: Path, gpus: int, dry_run: bool, models: Sequence[str]) -> dict[str, dict]:
    return {model: bench_config(archive_config(model_store / f"{model}.mar"), gpus, dry_run) for model in models}


def write_floor(store: Path) -> None:
    """A no-archive model folder (MAR-INF/MANIFEST.json beside the files) with the do-nothing handler."""
    folder = store / FLOOR
    (folder / "MAR-INF").mkdir(parents=True)
    (folder / "floor_handler.py").write_text(FLOOR_HANDLER)
    (folder / "model-config.yaml").write_text("minWorkers: 1\nmaxWorkers: 1\nbatchSize: 32\nmaxBatchDelay: 5\n")
    manifest = {"runtime": "python", "archiverVersion": "0.12.0",
                "model": {"modelName": FLOOR, "handler": "floor_handler.py", "modelVersion": "1.0", "configFile": "model-config.yaml"}}
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))


def start_server(workdir: Path, model_store: Path, configs: Mapping[str, dict], floor: bool = True,
                 env: Mapping[str, str] | None = None, timeout_s: float = START_TIMEOUT_S) -> TorchServe:
    """One TorchServe in `workdir` serving each model's archive with `configs[model]` (and the floor), once
    every worker is READY (TimeoutError after `timeout_s`, the server stopped); `env` goes to the server."""
    store = workdir / "model-store"
    store.mkdir(parents=True)
    for model, config in configs.items():
        write_variant(model_store / f"{model}.mar", store / f"{model}.mar", config)
    names = [*([FLOOR] if floor else []), *configs]
    if floor:
        write_floor(store)
    started = time.monotonic()
    server = TorchServe.start(workdir / SERVER_DIR, store, ",".join(f"{m}={m}" if m == FLOOR else f"{m}={m}.mar" for m in names),
                              env=env, timeout_s=timeout_s)
    try:
        poll_until(lambda: all(_ready(server, m) for m in names), max(1.0, timeout_s - (time.monotonic() - started)),
                   f"every worker READY; see {server.workdir / 'serve.out'}", interval_s=0.2)
    except BaseException:
        server.stop()  # not left running (and its workers restarting) after a failed start
        raise
    return server


def _ready(server: TorchServe, model: str) -> bool:
    workers = server.describe(model).json()[0]["workers"]
    return bool(workers) and all(w["status"] == "READY" for w in workers)


def archive_weights(archive: Path) -> str:
    """Where the archive's weights came from (its metadata.json): the kit for offline GPU hosts may serve
    random values of the real shapes (scripts/measure/gpu_kit.py), and the report must say so."""
    with zipfile.ZipFile(archive) as mar:
        return json.loads(mar.read("metadata.json")).get("source", "not recorded")


def keep_logs(workdir: Path, logs: Path) -> None:
    """The servers' folders go with the temp folder: keep their logs (serve.out, logs/), above all of a
    failed start; the main server's at the top, each sweep candidate's under sweep-N/."""
    ignore = shutil.ignore_patterns("key_file.json", "run")
    if (workdir / SERVER_DIR).exists():
        shutil.copytree(workdir / SERVER_DIR, logs, dirs_exist_ok=True, ignore=ignore)
    for folder in sorted(workdir.glob("sweep-*")):
        if (folder / SERVER_DIR).exists():
            shutil.copytree(folder / SERVER_DIR, logs / folder.name, dirs_exist_ok=True, ignore=ignore)

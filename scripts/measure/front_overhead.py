"""What the front (scripts/serving/front.py) costs: the same request straight to TorchServe and
through the front, served by wrk at each concurrency, the two alternated so that a shared machine's
drift hits both alike.

    make serve                                    # another terminal: TorchServe + the front on :8090
    python -m scripts.measure.front_overhead --front http://127.0.0.1:8090 --front-pid "$(pgrep -of ts-bundle-serve)" \
        --out build/front-overhead.json

Pairs compared (each: TorchServe's own route, the front's route, the same texts):
    v2      POST /v2/models/minilm/infer       -> the front relays it as it is
    openai  POST /predictions/minilm {"texts"} -> POST /v1/embeddings (checked, made one texts request, reshaped)
The median of the rounds is reported: p50 at concurrency 1 (the added latency) and throughput at
the higher concurrency (the share of the direct throughput kept). With --front-pid (serve.py's
pid: the front runs in its process), also the CPU time the front's process spent per request it
relayed: what the front takes from the model workers where cores are short.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from scripts.measure.bench.wrk import find_wrk, run_wrk
from scripts.serving.keyfile import read_keys
from scripts.serving.ts_config import local_url

TEXT = "a photo of a cat sleeping on a sofa"


@dataclass(frozen=True)
class Pair:
    """One request two ways: (path, body) straight to TorchServe and through the front."""

    name: str
    direct_path: str
    direct_body: dict
    front_path: str
    front_body: dict


def v2_body(texts: list[str]) -> dict:
    return {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}


PAIRS = {
    "v2": Pair("v2", "/v2/models/minilm/infer", v2_body([TEXT]), "/v2/models/minilm/infer", v2_body([TEXT])),
    "openai": Pair("openai", "/predictions/minilm", {"texts": [TEXT]}, "/v1/embeddings",
                   {"model": "minilm", "input": [TEXT], "encoding_format": "float"}),
}


def cpu_seconds_of(pid: int) -> Callable[[], float]:
    """The user + system CPU seconds process `pid` has used so far (its own, not its children's)."""
    process = psutil.Process(pid)

    def used() -> float:
        times = process.cpu_times()
        return times.user + times.system

    return used


def measure(pair: Pair, inference_url: str, front_url: str, key: str | None, concurrency: int, seconds: float,
            front_cpu: Callable[[], float] | None = None) -> dict:
    """One wrk run each way; {"direct": summary, "front": summary}, the front's with `front_cpu_ms`
    (its process's CPU per request) when `front_cpu` reads that process's CPU seconds."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    direct = run_wrk(inference_url + pair.direct_path, json.dumps(pair.direct_body).encode(), headers, concurrency, seconds)
    before = front_cpu() if front_cpu else 0.0
    front = run_wrk(front_url + pair.front_path, json.dumps(pair.front_body).encode(), headers, concurrency, seconds)
    if front_cpu and front["requests"]:
        front["front_cpu_ms"] = round((front_cpu() - before) * 1000 / front["requests"], 3)
    return {"direct": direct, "front": front}


def summary(rounds: list[dict]) -> dict:
    """Medians over rounds: p50 and p99 (ms) and throughput (req/s) each way, the added p50 and the kept share."""
    median = {way: {stat: round(statistics.median(r[way][stat] for r in rounds), 2) for stat in ("p50_ms", "p99_ms", "throughput_rps")}
              for way in ("direct", "front")}
    errors = sum(r[way]["errors"] for r in rounds for way in ("direct", "front"))
    cpu = [r["front"]["front_cpu_ms"] for r in rounds if "front_cpu_ms" in r["front"]]
    return {**median, "added_p50_ms": round(median["front"]["p50_ms"] - median["direct"]["p50_ms"], 2),
            "throughput_kept": round(median["front"]["throughput_rps"] / median["direct"]["throughput_rps"], 3)
            if median["direct"]["throughput_rps"] else None, "errors": errors, "rounds": len(rounds),
            **({"front_cpu_ms_per_request": round(statistics.median(cpu), 3)} if cpu else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config.properties"), help="TorchServe's (its inference address)")
    parser.add_argument("--key-file", type=Path, default=Path("key_file.json"))
    parser.add_argument("--front", default="http://127.0.0.1:8090", help="the front's URL")
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=sorted(PAIRS))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--front-pid", type=int, help="the front's process (serve.py's): report its CPU time per request")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    if find_wrk() is None:
        sys.exit("front_overhead: wrk is not installed (apt-get install wrk)")
    inference_url = local_url(args.config.read_text(), "inference")
    key = read_keys(args.key_file).get("inference") if args.key_file.is_file() else None
    front_cpu = cpu_seconds_of(args.front_pid) if args.front_pid else None
    results = {}
    for name in args.pairs:
        for concurrency in args.concurrency:
            rounds = [measure(PAIRS[name], inference_url, args.front.rstrip("/"), key, concurrency, args.seconds, front_cpu)
                      for _ in range(args.rounds)]
            results[f"{name} c{concurrency}"] = summary(rounds)
            print(f"{name} c{concurrency}: {json.dumps(results[f'{name} c{concurrency}'])}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

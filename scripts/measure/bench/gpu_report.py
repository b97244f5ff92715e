"""`make bench-gpu`'s figures and report: pure functions of the recorded requests and results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from scripts.measure.bench.load_client import percentile
from scripts.measure.bench.report import markdown_table

P99_BOUND_MS = 100
"""Issue #20: efficientnet_lite0's p99 at c128, at most."""
C1_MARGIN_MS = 5
"""Issue #20: the c1 p50, at most this far above the handler's batch-1 time in process."""
TARGETS = (
    ("efficientnet_lite0 at c128: img/s", "efficientnet_lite0", "throughput_rps", 128, ">=", 4000),
    ("efficientnet_lite0 at c128: p99 ms", "efficientnet_lite0", "p99_ms", 128, "<=", P99_BOUND_MS),
    ("minilm at c64: req/s", "minilm", "throughput_rps", 64, ">=", 2000),
)


def summarise_window(records: Sequence[tuple[float, float, int]], start_s: float, end_s: float, concurrency: int) -> dict:
    """The requests that started in [start_s, end_s): throughput of the 200s, their p50/p99, the rest counted."""
    inside = [(latency, status) for begin, latency, status in records if start_s <= begin < end_s]
    ok = [latency for latency, status in inside if status == 200]
    return {"concurrency": concurrency, "window_s": [start_s, end_s], "requests": len(inside), "ok": len(ok),
            "not_ok": len(inside) - len(ok), "throughput_rps": round(len(ok) / (end_s - start_s), 1),
            "p50_ms": percentile(ok, 50) if ok else None, "p99_ms": percentile(ok, 99) if ok else None}


def first_vs_next(windows: dict) -> float | None:
    """p99 of the first 10 s after ready over the next 10 s's (target: at most 3)."""
    first, later = windows["first"]["p99_ms"], windows["next"]["p99_ms"]
    return round(first / later, 2) if first and later else None


def batch_one_ms(section: dict | None) -> float | None:
    """The handler's own time for a batch of one, in process (decoding included)."""
    return next((row["latency_ms"] for row in (section or {}).get("in_process", []) if row["batch_size"] == 1), None)


def c1_overhead_ms(section: dict | None) -> float | None:
    """What serving adds at c1: the served p50 over the handler's own batch-1 time in process."""
    if not section:
        return None
    c1 = next((cell["p50_ms"] for cell in section["cells"] if cell["concurrency"] == 1), None)
    alone = batch_one_ms(section)
    return round(c1 - alone, 2) if c1 is not None and alone is not None else None


def evaluate(results: dict) -> list[dict]:
    """The issue's targets against the cells measured (None where a model or cell is missing, and
    for every target in a CPU dry run: its figures are no GPU's)."""
    rows = []
    measured = results["mode"] == "gpu"
    for label, model, field, concurrency, op, bound in TARGETS:
        cells = results["models"].get(model, {}).get("cells", [])
        value = next((cell[field] for cell in cells if cell["concurrency"] == concurrency), None)
        met = None if value is None or not measured else (value >= bound if op == ">=" else value <= bound)
        rows.append({"target": label, "value": value, "bound": f"{op} {bound}", "met": met})
    overhead = c1_overhead_ms(results["models"].get("efficientnet_lite0"))
    rows.append({"target": "efficientnet_lite0 c1 p50 - in-process batch 1, ms", "value": overhead, "bound": f"<= {C1_MARGIN_MS}",
                 "met": None if overhead is None or not measured else overhead <= C1_MARGIN_MS})
    series = results.get("gpu_series")
    rows.append({"target": "GPU metric series after a scrape", "value": ", ".join(series or []) or None, "bound": "all 3",
                 "met": None if not measured else len(series or []) == 3})
    for model, section in results["models"].items():
        ratio = first_vs_next(section["after_ready"])
        rows.append({"target": f"{model}: first 10 s p99 / next 10 s p99", "value": ratio, "bound": "<= 3",
                     "met": None if ratio is None or not measured else ratio <= 3})
    return rows


def _cell_rows(cells: Sequence[dict]) -> list[list[Any]]:
    return [[c["concurrency"], c["throughput_rps"], c["p50_ms"], c["p99_ms"], c["not_ok"], c.get("gpu_util_pct"), c.get("gpu_mem_mb"),
             _percent(c.get("client_cpu_share"))] for c in cells]


def _percent(share: float | None) -> float | None:
    return None if share is None else round(100 * share, 1)


def floor_line(floor: dict) -> str:
    """TorchServe's own ceiling: a do-nothing handler, so the rate is the frontend's and the IPC's."""
    size = floor.get("body_bytes", 1)
    body = "a 1-byte body" if size <= 1 else f"the photo as the body ({size / 1000:.1f} KB)"
    return (f"- TorchServe's floor (do-nothing handler, batch 32), {body}, at c{floor['concurrency']}: "
            f"{floor['throughput_rps']} req/s, p50 {floor['p50_ms']} ms, p99 {floor['p99_ms']} ms, "
            f"client CPU {_percent(floor.get('client_cpu_share'))}%.")


def render_markdown(results: dict) -> str:
    machine = results["machine"]
    lines = [f"# bench-gpu, {results['started_at']} ({results['mode']})", "",
             f"Host: {machine['gpu'] or 'no GPU'}, {results['gpus']} GPU(s), {machine['cpu']} ({machine['cores']} cores), "
             f"torch {machine['torch']}; {results['workers_per_gpu']} workers per GPU; load from aiohttp clients in "
             f"{results['load_processes']} processes on the same host (their share of its CPU: `client CPU %`).", ""]
    if results["mode"] != "gpu":
        lines += ["**A CPU dry run: it checks the steps; none of its figures is a GPU's.**", ""]
    # results.json from before the photo row has no floor_photo
    lines += [floor_line(results[key]) for key in ("floor", "floor_photo") if key in results]
    lines += [""]
    headers = ["concurrency", "req/s", "p50 ms", "p99 ms", "not 200", "GPU util %", "GPU mem MB", "client CPU %"]
    for model, section in results["models"].items():
        config = section["config"]
        windows = section["after_ready"]
        seconds = windows["first"]["window_s"][1]
        lines += [f"## {model}", "", f"Weights: {section.get('weights', 'not recorded')}.", "",
                  f"batchSize {config['batchSize']}, maxBatchDelay {config['maxBatchDelay']} ms, {config['maxWorkers']} workers, "
                  f"handler {config['handler'].get('precision')}, compile {config['handler'].get('compile', 'none')}", "",
                  markdown_table(headers, _cell_rows(section["cells"])), "",
                  f"After ready, c{windows['first']['concurrency']}: first {seconds:g} s {windows['first']['throughput_rps']} req/s, p99 "
                  f"{windows['first']['p99_ms']} ms; next {seconds:g} s {windows['next']['throughput_rps']} req/s, p99 "
                  f"{windows['next']['p99_ms']} ms.", "",
                  markdown_table(["in process, decoding included: batch", "items/s", "ms per batch"],
                                 [[r["batch_size"], r["throughput"], r["latency_ms"]] for r in section.get("in_process", [])]), ""]
    if "sweep" in results:
        lines += sweep_lines(results["sweep"])
    lines += ["## Targets (issue #20)", "",
              markdown_table(["target", "value", "bound", "met"],
                             [[r["target"], r["value"], r["bound"], {True: "met", False: "MISSED", None: "not measured"}[r["met"]]]
                              for r in evaluate(results)]), ""]
    image = results["models"].get("efficientnet_lite0")
    if image:  # what the c1 overhead is made of, where the server, not the GPU, sets it
        lines += [f"At c1 a request waits the whole maxBatchDelay ({image['config']['maxBatchDelay']} ms here) for company "
                  "before it runs: it is part of the c1 overhead above (docs/gpu.md).", ""]
    return "\n".join(lines)


def sweep_lines(sweep: dict) -> list[str]:
    """The configurations table, the choice, the candidates that failed and what the time left out."""
    plan = sweep["plan"]
    headers = ["configuration", "batchSize", "maxBatchDelay", "workers", "threads", "decode threads", "img/s", "p50 ms",
               "p99 ms", "not 200", "c1 p50 ms", "GPU util %", "GPU mem MB", "client CPU %"]
    rows = [[r["label"], r["batchSize"], r["maxBatchDelay"], r["workers"], r["threads"], r["decode_threads"], r["throughput_rps"],
             r["p50_ms"], r["p99_ms"], r["not_ok"], r.get("c1_p50_ms"), r.get("gpu_util_pct"), r.get("gpu_mem_mb"),
             _percent(r.get("client_cpu_share"))] for r in sweep["rows"]]
    c1_bound = sweep.get("c1_bound_ms")  # None: no in-process batch-1 time to judge c1 by (or an older results.json)
    bounds = f"p99 <= {sweep['p99_bound_ms']} ms" + (f", c1 p50 <= {c1_bound} ms" if c1_bound is not None else "")
    choice = sweep["best"] or f"none (no configuration kept {bounds} without an error)"
    lines = [f"## Configurations: {sweep['model']} at c{plan['concurrency']}", "",
             f"Each on a fresh server, {plan['settle_s']:g} s unrecorded then {plan['cell_s']:g} s measured"
             + (f", then {plan['c1_s']:g} s at c1" if "c1_s" in plan else "") + ".", "",
             markdown_table(headers, rows), "",
             f"Most img/s with {bounds} and no error: **{choice}**."
             + (f" (c1 bound: the handler's batch of one in process + {C1_MARGIN_MS} ms.)" if c1_bound is not None else ""), ""]
    if sweep.get("failed"):
        lines += ["Failed, so not in the table:", "", *(f"- {f['label']}: {f['error']}" for f in sweep["failed"]), ""]
    if sweep["skipped"]:
        lines += [f"Not measured (no time left in the budget): {', '.join(sweep['skipped'])}.", ""]
    return lines


def write_plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for model, section in results["models"].items():
        cells = section["cells"]
        left.plot([c["concurrency"] for c in cells], [c["throughput_rps"] for c in cells], marker="o", label=model)
        right.plot([c["concurrency"] for c in cells], [c["p99_ms"] or 0 for c in cells], marker="o", label=model)
    for axis, title in ((left, "throughput (req/s)"), (right, "p99 (ms)")):
        axis.set_xlabel("concurrency")
        axis.set_title(title)
        axis.legend()
    fig.suptitle(f"bench-gpu ({results['mode']}): {results['machine']['gpu'] or 'no GPU'}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

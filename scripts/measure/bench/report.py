"""Benchmark results -> headline figures, issue #12's targets met or missed, and the markdown report. Pure.

`results` is the JSON the benchmark writes: for the image model the shipped model served, the
sweep, the torch path, the stock handler, the in-process rows and the photos' top-1; the same
for the text model (no torch path, no stock); the cold start, the worker-kill recovery, the
machine and its load.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

HEADLINE_CONCURRENCY = 16
"""The served / in-process and stock ratios compare throughput at this concurrency (and the shipped batch size)."""


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    op: str
    """">=" or "<=": how the measured value must compare with `bound`."""
    bound: float
    requires: str | None = None
    """Another target's key: this one is met only if that one is met too (missed if it is missed)."""


TARGETS = (
    Target("image_top1_identical", "image: share of the photos whose served top-1 is plain fp32's", ">=", 1.0),
    Target("image_vs_stock", "image: ours / the stock handler's throughput, same weights and batching, concurrency 16",
           ">=", 5.0, requires="image_top1_identical"),
    Target("image_served_vs_inprocess", "image: served / in-process handler (decoding included), shipped batch, "
           "concurrency 16", ">=", 0.90),
    Target("image_p50_c1_over_inprocess_ms", "image: p50 at concurrency 1 minus the in-process handler's batch-1 "
           "latency (ms)", "<=", 3.5),
    Target("text_served_vs_inprocess", "text: served / in-process handler (tokenizing included), shipped batch, "
           "concurrency 16", ">=", 0.85),
    Target("text_p50_c1_over_inprocess_ms", "text: p50 at concurrency 1 minus the in-process handler's batch-1 "
           "latency (ms)", "<=", 3.5),
    Target("cold_start_s", "cold start: server start to the first 200 (s)", "<=", 10.0),
    Target("worker_recovery_s", "worker-kill recovery: every worker SIGKILLed to the first 200 (s)", "<=", 5.0),
)
OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def find(rows: Sequence[dict], **match: Any) -> dict | None:
    """The first row whose fields equal `match`."""
    return next((row for row in rows if all(row.get(key) == value for key, value in match.items())), None)


def _field(rows: Sequence[dict] | None, field: str, **match: Any) -> float | None:
    row = find(rows or [], **match)
    return row[field] if row else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator is not None and denominator else None


def _over(value: float | None, base: float | None) -> float | None:
    return round(value - base, 2) if value is not None and base is not None else None


def _best(rows: Sequence[dict] | None, concurrency: int = HEADLINE_CONCURRENCY) -> float | None:
    values = [row["throughput_rps"] for row in rows or [] if row["concurrency"] == concurrency]
    return max(values) if values else None


def _model_figures(section: dict, prefix: str) -> dict[str, float | None]:
    """served / in-process at the headline concurrency and p50 at concurrency 1 over in-process batch 1."""
    batch = section["shipped"]["batch_size"]
    served = _field(section.get("served"), "throughput_rps", concurrency=HEADLINE_CONCURRENCY)
    handler = section.get("raw_handler")
    return {
        f"{prefix}_served_vs_inprocess": _ratio(served, _field(handler, "throughput", batch_size=batch)),
        f"{prefix}_p50_c1_over_inprocess_ms": _over(_field(section.get("served"), "p50_ms", concurrency=1),
                                                    _field(handler, "latency_ms", batch_size=1)),
    }


def headline(results: dict) -> dict[str, float | None]:
    """The figures the targets are about, and the torch path's (None: not measured in this run)."""
    image, text = results["image"], results.get("text")
    served = _field(image.get("served"), "throughput_rps", concurrency=HEADLINE_CONCURRENCY)
    top1 = image.get("top1") or {}
    identical = (top1.get("served") or {}).get("identical")
    return {
        "image_top1_identical": round(identical / top1["photos"], 3) if identical is not None and top1.get("photos") else None,
        "image_vs_stock": _ratio(served, _best(image.get("stock"))),
        "image_torch_vs_stock": _ratio(_best(image.get("torch")), _best(image.get("stock"))),
        **_model_figures(image, "image"),
        **(_model_figures(text, "text") if text else {}),
        "cold_start_s": results.get("cold_start_s"),
        "worker_recovery_s": (results.get("recovery") or {}).get("first_answer_s"),
    }


def evaluate(figures: dict[str, float | None], targets: Sequence[Target] = TARGETS) -> list[dict]:
    """One row per target: the measured value and whether it is met (None: not measured)."""
    rows: dict[str, dict] = {}
    for target in targets:
        value = figures.get(target.key)
        met = None if value is None else OPS[target.op](value, target.bound)
        if met and target.requires:
            met = rows[target.requires]["met"] if target.requires in rows else None
        rows[target.key] = {"key": target.key, "target": target.text, "bound": f"{target.op} {target.bound:g}",
                            "value": value, "met": met, "requires": target.requires}
    return list(rows.values())


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "not measured"}[met]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def layout(row: dict) -> str:
    threads = row.get("threads")
    return f"{row.get('workers')} x {'default' if threads is None else threads}"


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


SERVED_HEADERS = ("batch", "delay ms", "workers x threads", "concurrency", "requests", "req/s", "p50 ms", "p90 ms",
                  "p99 ms", "errors", "client", "client CPU")
def _served_rows(rows: Sequence[dict]) -> list[list[Any]]:
    return [[r["batch_size"], r["max_batch_delay"], layout(r), r["concurrency"], r["requests"], r["throughput_rps"],
             r["p50_ms"], r["p90_ms"], r["p99_ms"], r["errors"], r.get("client"), _share(r.get("client_cpu_share"))]
            for r in rows]


POINT_KEYS = ("batch_size", "max_batch_delay", "workers", "threads")


def sweep_table(rows: Sequence[dict]) -> tuple[list[str], list[list[Any]]]:
    """Headers and one line per sweep point: each concurrency's req/s, p50 and p99 side by side (loaded first)."""
    concurrencies = sorted({row["concurrency"] for row in rows}, reverse=True)
    headers = ["batch", "delay ms", "workers x threads",
               *[f"{name} c{c}" for c in concurrencies for name in ("req/s", "p50 ms", "p99 ms")], "errors", "client CPU"]
    points = list(dict.fromkeys(tuple(row[key] for key in POINT_KEYS) for row in rows))
    lines = []
    for point in points:
        mine = [row for row in rows if tuple(row[key] for key in POINT_KEYS) == point]
        cells = [find(mine, concurrency=c) or {} for c in concurrencies]
        lines.append([point[0], point[1], layout(mine[0]),
                      *[cell.get(name) for cell in cells for name in ("throughput_rps", "p50_ms", "p99_ms")],
                      sum(row["errors"] for row in mine), _share(max(row.get("client_cpu_share") or 0 for row in mine))])
    return headers, lines


def _inprocess(rows: Sequence[dict] | None, unit: str) -> str:
    return markdown_table(("batch", unit, "latency ms"), [[r["batch_size"], r["throughput"], r["latency_ms"]] for r in rows or []])


def choice_line(section: dict) -> str:
    choice, ship = section.get("choice"), section["shipped"]
    if not choice:
        return "The sweep's choice: not measured in this run."
    same = all(choice[k] == ship[k] for k in POINT_KEYS)
    return (f"The sweep's choice: batch {choice['batch_size']}, delay {choice['max_batch_delay']} ms, "
            f"{choice['workers']} worker(s) x {choice['threads']} thread(s): {choice['throughput_rps']} req/s at concurrency "
            f"{HEADLINE_CONCURRENCY} (best {choice['best_throughput_rps']}; within {choice['tolerance']:.0%} of the best, "
            f"the lowest p50 at concurrency 1 wins, or the shipped point while it is as good: {choice['p50_c1_ms']} ms). "
            + ("The shipped config is this point." if same else "**The shipped config differs.**"))


def _top1_table(top1: dict) -> str:
    served = [name for name in ("served", "torch", "stock") if name in top1]
    rows = [[photo, label, *[top1[name]["labels"].get(photo) for name in served]] for photo, label in top1["reference"].items()]
    rows.append(["identical", f"{top1['photos']} photos", *[top1[name]["identical"] for name in served]])
    return markdown_table(("photo", "plain fp32 (in-process)", *served), rows)


def _section(section: dict, title: str, unit: str, extra: list[str]) -> list[str]:
    parts = [
        title,
        f"Shipped: {section['shipped']}.",
        choice_line(section),
        "### Served as shipped",
        markdown_table(SERVED_HEADERS, _served_rows(section.get("served", []))),
        "### Sweep: batch size x workers x threads",
        markdown_table(*sweep_table(section["sweep"])) if section.get("sweep")
        else section.get("sweep_note", "not measured"),
        *extra,
        "### In-process, the model alone (decoded once; no HTTP)",
        _inprocess(section.get("raw"), unit),
        "### In-process handler, decoding every item (no HTTP)",
        _inprocess(section.get("raw_handler"), unit),
    ]
    return parts


def render_markdown(results: dict) -> str:
    """The human report: machine and load first, then targets, then every measured row."""
    m, image, text = results["machine"], results["image"], results.get("text")
    recovery = results.get("recovery")
    parts = [
        "# Benchmark report",
        f"Measured {results['started_at']} on **{m['cpu']}**, {m['cores']} cores (ISA {m['isa']}, native bf16: "
        f"{'yes' if m['bf16'] else 'no'}), {m['memory_gb']} GB, GPU: {m['gpu'] or 'none'}; torch {m['torch']}. "
        f"Load average (1/5/15 min) before: {results['load_before']}, after: {results['load_after']}. "
        f"Mode: {results['mode']}. The load client runs on the same cores as the server; each row gives the client "
        "(wrk, or the Python client where wrk is not installed) and its share of the machine's CPU.",
        "## Targets",
        markdown_table(("target", "bound", "measured", "verdict"),
                       [[t["target"] + (f" (with {t['requires']} met)" if t.get("requires") else ""), t["bound"], t["value"],
                         verdict(t["met"])] for t in results["targets"]]),
        f"Cold start {results.get('cold_start_s')} s. Worker-kill recovery: "
        + (f"{recovery['workers_killed']} worker(s) of {recovery['model']} SIGKILLed, the first 200 after "
           f"{recovery['first_answer_s']} s, every worker READY again after {recovery['all_workers_ready_s']} s."
           if recovery else results.get("recovery_note", "not measured.")),
    ]
    stock = image.get("stock")
    parts += _section(image, f"## Image: {image['model']} ({image['body']})", "img/s", [
        "### Our torch path (`runtime: torch`: trace + channels_last), shipped batching and workers",
        markdown_table(SERVED_HEADERS, _served_rows(image["torch"])) if image.get("torch") else "not measured",
        "### TorchServe's stock image_classifier handler, same weights and batching",
        markdown_table(SERVED_HEADERS, _served_rows(stock)) if stock else image.get("stock_note", "not measured"),
        "### Top-1 on the photos",
        _top1_table(image["top1"]) if image.get("top1") else "not measured",
    ])
    if text:
        int8 = text.get("int8") or {}
        parts += _section(text, f"## Text: {text['model']}", "texts/s", [])
        parts += [
            "### int8 against fp32 (runtime torch; not shipped)",
            f"Batch of {int8.get('texts')} texts: x{int8.get('speedup')}; one text at a time: x{int8.get('speedup_single')}; "
            f"mean cosine {int8.get('cosine_mean')} (min {int8.get('cosine_min')}); layers kept fp32: {int8.get('keep_fp32')}.",
        ]
    return "\n\n".join(parts) + "\n"

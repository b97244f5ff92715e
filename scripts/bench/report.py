"""Benchmark results -> headline ratios, targets met or missed, and the markdown report. Pure.

`results` is the JSON the benchmark writes: served / raw / stock rows for the image model, the
same for the text model, the int8 measurement, the cold start, the machine and its load.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Sequence

HEADLINE_CONCURRENCY = 16
"""The served/raw and stock ratios compare throughput at this concurrency (and the shipped batch size)."""


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    op: str
    """">=" or "<=": how the measured value must compare with `bound`."""
    bound: float


TARGETS = (
    Target("image_served_vs_raw", "image: served / raw throughput at the shipped batch, concurrency 16", ">=", 0.90),
    Target("image_vs_stock", "image: our throughput / the stock handler's, concurrency 16", ">=", 3.0),
    Target("image_p50_c1_over_raw_ms", "image: p50 at concurrency 1 minus raw batch-1 latency (ms)", "<=", 5.0),
    Target("cold_start_s", "cold start: server start to first 200 (s)", "<=", 15.0),
    Target("text_served_vs_raw", "text: served / raw throughput at the shipped batch, concurrency 16", ">=", 0.85),
    Target("text_int8_speedup", "text: int8 / fp32 speed (batch of samples/sentences.txt)", ">=", 1.5),
    Target("text_int8_cosine", "text: int8 vs fp32 mean cosine", ">=", 0.99),
)
OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


def find(rows: Sequence[dict], **match: Any) -> dict | None:
    """The first row whose fields equal `match`."""
    return next((row for row in rows if all(row.get(key) == value for key, value in match.items())), None)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator is not None and denominator else None


def _served(rows: Sequence[dict], batch: int, delay: int, concurrency: int, field: str) -> float | None:
    row = find(rows, batch_size=batch, max_batch_delay=delay, concurrency=concurrency)
    return row[field] if row else None


def _raw(rows: Sequence[dict], batch: int, field: str) -> float | None:
    row = find(rows, batch_size=batch)
    return row[field] if row else None


def headline(results: dict) -> dict[str, float | None]:
    """The figures the targets are about (None: not measured in this run)."""
    image, text = results["image"], results.get("text", {})
    batch, delay = image["shipped"]["batch_size"], image["shipped"]["max_batch_delay"]
    served = _served(image["served"], batch, delay, HEADLINE_CONCURRENCY, "throughput_rps")
    p50_c1 = _served(image["served"], batch, delay, 1, "p50_ms")
    raw_b1 = _raw(image["raw"], 1, "latency_ms")
    stock = find(image.get("stock", []), concurrency=HEADLINE_CONCURRENCY)
    int8 = text.get("int8") or {}
    text_served = (_served(text.get("served", []), text["shipped"]["batch_size"], text["shipped"]["max_batch_delay"],
                           HEADLINE_CONCURRENCY, "throughput_rps") if text else None)
    return {
        "image_served_vs_raw": _ratio(served, _raw(image["raw"], batch, "throughput")),
        "image_vs_stock": _ratio(served, stock["throughput_rps"] if stock else None),
        "image_p50_c1_over_raw_ms": round(p50_c1 - raw_b1, 2) if p50_c1 is not None and raw_b1 is not None else None,
        "cold_start_s": results.get("cold_start_s"),
        "text_served_vs_raw": _ratio(text_served, _raw(text.get("raw", []), text["shipped"]["batch_size"], "throughput"))
        if text else None,
        "text_int8_speedup": int8.get("speedup"),
        "text_int8_cosine": int8.get("cosine_mean"),
    }


def evaluate(figures: dict[str, float | None], targets: Sequence[Target] = TARGETS) -> list[dict]:
    """One row per target: the measured value and whether it is met (None: not measured)."""
    rows = []
    for target in targets:
        value = figures.get(target.key)
        met = None if value is None else OPS[target.op](value, target.bound)
        rows.append({"key": target.key, "target": target.text, "bound": f"{target.op} {target.bound:g}",
                     "value": value, "met": met})
    return rows


def verdict(met: bool | None) -> str:
    return {True: "met", False: "**MISSED**", None: "not measured"}[met]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _served_rows(rows: Sequence[dict]) -> list[list[Any]]:
    return [[r["batch_size"], r["max_batch_delay"], r["concurrency"], r["requests"], r["throughput_rps"],
             r["p50_ms"], r["p90_ms"], r["p99_ms"], r["errors"], r.get("client"), _share(r.get("client_cpu_share"))]
            for r in rows]


def _share(value: float | None) -> str | None:
    return None if value is None else f"{value:.0%}"


SERVED_HEADERS = ("batch", "delay ms", "concurrency", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors",
                  "client", "client CPU")


def render_markdown(results: dict) -> str:
    """The human report: machine and load first, then targets, then every measured row."""
    m, image, text = results["machine"], results["image"], results.get("text")
    parts = [
        "# Benchmark report",
        f"Measured {results['started_at']} on **{m['cpu']}**, {m['cores']} cores (ISA {m['isa']}, native bf16: "
        f"{'yes' if m['bf16'] else 'no'}), {m['memory_gb']} GB, GPU: {m['gpu'] or 'none'}; torch {m['torch']}. "
        f"Load average (1/5/15 min) before: {results['load_before']}, after: {results['load_after']}. "
        f"Mode: {results['mode']}. The load client runs on the same cores as the server; each row gives the client "
        "(wrk, or the Python client where wrk is not installed) and its share of the machine's CPU.",
        "## Targets",
        markdown_table(("target", "bound", "measured", "verdict"),
                       [[t["target"], t["bound"], t["value"], verdict(t["met"])] for t in results["targets"]]),
        f"## Image: {image['model']} ({image['body']})",
        f"Shipped: {image['shipped']}.",
        "### Served (our handler)",
        markdown_table(SERVED_HEADERS, _served_rows(image["served"])),
        "### Raw model in-process (same model, same settings; decoded tensors in, no HTTP)",
        markdown_table(("batch", "img/s", "latency ms"), [[r["batch_size"], r["throughput"], r["latency_ms"]] for r in image["raw"]]),
        "### In-process handler incl. decoding (no HTTP)",
        markdown_table(("batch", "img/s", "latency ms"),
                       [[r["batch_size"], r["throughput"], r["latency_ms"]] for r in image.get("raw_handler", [])]),
        "### TorchServe's stock image_classifier handler, same weights",
        markdown_table(SERVED_HEADERS, _served_rows(image.get("stock", []))) if image.get("stock") else
        image.get("stock_note", "not measured"),
    ]
    if text:
        int8 = text.get("int8") or {}
        parts += [
            f"## Text: {text['model']}",
            f"Shipped: {text['shipped']}.",
            "### Served",
            markdown_table(SERVED_HEADERS, _served_rows(text["served"])),
            "### Raw model in-process",
            markdown_table(("batch", "texts/s", "latency ms"), [[r["batch_size"], r["throughput"], r["latency_ms"]] for r in text["raw"]]),
            "### int8 against fp32",
            f"Batch of {int8.get('texts')} texts: x{int8.get('speedup')}; one text at a time: x{int8.get('speedup_single')}; "
            f"mean cosine {int8.get('cosine_mean')} (min {int8.get('cosine_min')}); layers kept fp32: {int8.get('keep_fp32')}.",
        ]
    return "\n\n".join(parts) + "\n"

"""PNG plots of the benchmark: the sweep's throughput and latency against batch size, one line per
workers x threads layout, beside the in-process handler and (image) the torch path and stock handler."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

from scripts.measure.bench.report import layout

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def by_layout(rows: Sequence[dict], concurrency: int) -> dict[str, list[dict]]:
    """Sweep rows at one concurrency, one line per layout and delay (batch 1, which never waits, on
    every line of its layout), sorted by batch size."""
    delays = sorted({row["max_batch_delay"] for row in rows if row["batch_size"] > 1}) or [None]
    lines: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["batch_size"]):
        if row["concurrency"] != concurrency:
            continue
        for delay in delays if row["batch_size"] == 1 else [row["max_batch_delay"]]:
            lines.setdefault(f"{layout(row)}, delay {delay} ms" if delay is not None else layout(row), []).append(row)
    return lines


def write_plots(section: dict, out_dir: Path, prefix: str) -> list[Path]:
    """<prefix>_throughput.png and <prefix>_latency.png for one model's results; returns their paths."""
    sweep = section.get("sweep") or section.get("served", [])
    concurrencies = sorted({row["concurrency"] for row in sweep}) or [1]
    loaded, alone = concurrencies[-1], concurrencies[0]
    handler = sorted(section.get("raw_handler", []), key=lambda r: r["batch_size"])
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for name, rows in by_layout(sweep, loaded).items():
        axis.plot([r["batch_size"] for r in rows], [r["throughput_rps"] for r in rows], marker="o",
                  label=f"served, {name} (workers x threads, delay), concurrency {loaded}")
    axis.plot([r["batch_size"] for r in handler], [r["throughput"] for r in handler], "k--", marker="s",
              label="in-process handler, decoding included")
    for key, marker in (("torch", "^"), ("stock", "x")):
        for row in section.get(key, []):
            if row["concurrency"] == loaded:
                axis.scatter([row["batch_size"]], [row["throughput_rps"]], marker=marker, s=80,
                             label=f"{key}, {layout(row)}, concurrency {loaded}")
    _finish(axis, f"{section['model']}: throughput", "items / s")
    paths = [_save(fig, out_dir / f"{prefix}_throughput.png")]
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for concurrency, field, style in ((alone, "p50_ms", "-"), (loaded, "p99_ms", ":")):
        for name, rows in by_layout(sweep, concurrency).items():
            axis.plot([r["batch_size"] for r in rows], [r[field] for r in rows], linestyle=style, marker="o",
                      label=f"{field[:3]}, {name}, concurrency {concurrency}")
    axis.plot([r["batch_size"] for r in handler], [r["latency_ms"] for r in handler], "k--", marker="s",
              label="in-process handler, one batch")
    _finish(axis, f"{section['model']}: latency", "ms")
    paths.append(_save(fig, out_dir / f"{prefix}_latency.png"))
    return paths


def _finish(axis, title: str, ylabel: str) -> None:
    axis.set_title(title)
    axis.set_xlabel("batch size")
    axis.set_ylabel(ylabel)
    axis.set_xscale("log", base=2)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

"""PNG plots of the benchmark: throughput and latency against batch size, one line per concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def _lines(rows: Sequence[dict], delay: int) -> dict[int, list[dict]]:
    """Served rows at one batch delay, grouped by concurrency, sorted by batch size."""
    lines: dict[int, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["batch_size"]):
        if row["max_batch_delay"] == delay or row["batch_size"] == 1:
            lines.setdefault(row["concurrency"], []).append(row)
    return lines


def write_plots(section: dict, out_dir: Path, prefix: str) -> list[Path]:
    """<prefix>_throughput.png and <prefix>_latency.png for one model's results; returns their paths."""
    delay = section["shipped"]["max_batch_delay"]
    lines = _lines(section["served"], delay)
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for concurrency, rows in sorted(lines.items()):
        axis.plot([r["batch_size"] for r in rows], [r["throughput_rps"] for r in rows], marker="o", label=f"served, concurrency {concurrency}")
    raw = sorted(section["raw"], key=lambda r: r["batch_size"])
    axis.plot([r["batch_size"] for r in raw], [r["throughput"] for r in raw], "k--", marker="s", label="raw model in-process")
    for row in section.get("stock", []):
        axis.scatter([row["batch_size"]], [row["throughput_rps"]], marker="x", s=80, label=f"stock handler, concurrency {row['concurrency']}")
    _finish(axis, f"{section['model']}: throughput (max batch delay {delay} ms)", "items / s")
    paths = [_save(fig, out_dir / f"{prefix}_throughput.png")]
    fig, axis = plt.subplots(figsize=(7, 4.5))
    for concurrency, rows in sorted(lines.items()):
        batches = [r["batch_size"] for r in rows]
        (p50,) = axis.plot(batches, [r["p50_ms"] for r in rows], marker="o", label=f"p50, concurrency {concurrency}")
        axis.plot(batches, [r["p99_ms"] for r in rows], linestyle=":", marker=".", color=p50.get_color(),
                  label=f"p99, concurrency {concurrency}")
    axis.plot([r["batch_size"] for r in raw], [r["latency_ms"] for r in raw], "k--", marker="s", label="raw model, one batch")
    _finish(axis, f"{section['model']}: latency (max batch delay {delay} ms)", "ms")
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

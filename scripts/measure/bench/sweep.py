"""The batch size x workers x threads sweep: which points to measure, and which one to ship. Pure.

A layout is workers x threads with workers x threads = the cores (fewer leaves cores idle, more
oversubscribes them). Each point is measured at the headline concurrency (throughput) and at
concurrency 1 (latency). The choice: the highest throughput, except that a point within
`tolerance` of it (run-to-run noise on a shared machine) wins on a lower p50 at concurrency 1,
then on a smaller batch and fewer workers (less memory, less waiting). The shipped point stays
the choice while it is within that noise of the winner on both counts, so two runs of the same
sweep do not flip the shipped config between equals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from scripts.measure.bench.report import HEADLINE_CONCURRENCY, find

TOLERANCE = 0.03
"""Throughputs within 3% of the best count as equal: two runs of one point differ by about that here."""
LATENCY_TOLERANCE = 0.10
"""p50s at concurrency 1 within 10% count as equal (for keeping the shipped point)."""


@dataclass(frozen=True)
class Sweep:
    batch_sizes: tuple[int, ...]
    delays: tuple[int, ...]
    """Max batch delays (ms) for batches above 1; batch 1 never waits, so it gets the first only. Not 0:
    registration honours max_batch_delay=0, but `maxBatchDelay: 0` in model-config.yaml reads as unset
    (TorchServe's default, 100 ms), so 0 cannot be shipped."""
    layouts: tuple[tuple[int, int], ...] = ()
    """(workers, threads) pairs; () = every split of the machine's cores (`layouts_for`)."""
    concurrencies: tuple[int, ...] = (HEADLINE_CONCURRENCY, 1)


@dataclass(frozen=True)
class Point:
    batch_size: int
    max_batch_delay: int
    workers: int
    threads: int

    @property
    def layout(self) -> tuple[int, int]:
        return self.workers, self.threads


def layouts_for(cores: int) -> tuple[tuple[int, int], ...]:
    """Every (workers, threads) with workers x threads = cores, one worker first."""
    return tuple((workers, cores // workers) for workers in range(1, cores + 1) if cores % workers == 0)


def sweep_points(sweep: Sweep, cores: int) -> list[Point]:
    """The points to measure, grouped by layout (each layout is one archive, registered per batch)."""
    layouts = sweep.layouts or layouts_for(cores)
    points = []
    for workers, threads in layouts:
        for batch in sweep.batch_sizes:
            for delay in sweep.delays[:1] if batch == 1 else sweep.delays:
                points.append(Point(batch, delay, workers, threads))
    return points


def point_of(row: dict) -> Point:
    return Point(row["batch_size"], row["max_batch_delay"], row["workers"], row["threads"])


def best_point(rows: Sequence[dict], shipped: Point | None = None, tolerance: float = TOLERANCE,
               concurrency: int = HEADLINE_CONCURRENCY) -> dict | None:
    """The sweep's choice and its figures (None: no point measured at `concurrency`)."""
    loaded = [row for row in rows if row["concurrency"] == concurrency and not row.get("errors")]
    if not loaded:
        return None
    top = max(row["throughput_rps"] for row in loaded)
    close = [row for row in loaded if row["throughput_rps"] >= (1 - tolerance) * top]

    def p50_c1(row: dict) -> float:
        alone = find(rows, concurrency=1, **point_of(row).__dict__)
        return alone["p50_ms"] if alone and not alone.get("errors") else float("inf")

    chosen = min(close, key=lambda row: (p50_c1(row), row["batch_size"], row["workers"]))
    kept = next((row for row in close if point_of(row) == shipped), None)
    if kept is not None and p50_c1(kept) <= p50_c1(chosen) * (1 + LATENCY_TOLERANCE):
        chosen = kept
    p50 = p50_c1(chosen)
    return {**point_of(chosen).__dict__, "throughput_rps": chosen["throughput_rps"],
            "p50_c1_ms": None if p50 == float("inf") else p50, "best_throughput_rps": top, "tolerance": tolerance,
            "shipped": point_of(chosen) == shipped}

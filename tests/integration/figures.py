"""Figures the reliability tests measure (latency, throughput, recovery time), printed at the end
of the run: `make test` and `make soak` show what was measured, not only that it passed."""

from __future__ import annotations

import json

FIGURES: dict[str, dict] = {}


def record(name: str, **values) -> None:
    FIGURES[name] = values


def summary_lines() -> list[str]:
    return [f"{name}: {json.dumps(values)}" for name, values in FIGURES.items()]

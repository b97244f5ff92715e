"""The parts of `make bench` (scripts/measure/benchmark.py), one concern a file: plan, served load, raw
in-process timing, the stock-handler baseline, int8 against fp32, report, plots, machine facts,
and the bounded load client."""

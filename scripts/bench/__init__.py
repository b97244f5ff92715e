"""The parts of `make bench` (scripts/benchmark.py): the stock-handler archive, report, plots, machine facts."""

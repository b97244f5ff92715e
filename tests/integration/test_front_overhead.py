"""scripts/measure/front_overhead.py as docs/performance.md runs it, briefly: wrk against the
session's real TorchServe and a front in this process, both pairs, the report's fields filled."""

from __future__ import annotations

import json
import os

import pytest

from scripts.measure import front_overhead
from scripts.measure.bench.wrk import find_wrk

pytestmark = pytest.mark.skipif(find_wrk() is None, reason="wrk is not installed (apt-get install wrk; .ci/run installs it)")


def test_both_pairs_measured_with_the_fronts_cpu_per_request(settled, front, tmp_path):
    out = tmp_path / "overhead.json"
    assert front_overhead.main(["--config", str(settled.workdir / "config.properties"), "--key-file", str(settled.key_file),
                                "--front", front, "--front-pid", str(os.getpid()),  # the front runs in this process
                                "--concurrency", "1", "4", "--seconds", "1", "--rounds", "1", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert sorted(results) == ["openai c1", "openai c4", "v2 c1", "v2 c4"]
    for name, result in results.items():
        assert result["errors"] == 0, (name, result)  # every request answered 200, both ways
        assert result["direct"]["throughput_rps"] > 0 and result["front"]["throughput_rps"] > 0, name
        assert 0 < result["front_cpu_ms_per_request"] < 1000, name  # this process did the front's work
        assert result["throughput_kept"] == round(result["front"]["throughput_rps"] / result["direct"]["throughput_rps"], 3)

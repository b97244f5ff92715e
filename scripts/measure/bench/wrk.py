"""Served load from `wrk` (Debian's package), so the load client does not eat the server's cores.

wrk runs one event-loop thread in C; the Python client (scripts/measure/bench/load_client.py) needs a
thread per connection and costs the 2-core server a large share of its CPU. A Lua script sets
the POST body, the Content-Type and the key; its `done` hook prints one JSON line with the
counts and latency percentiles. wrk runs for a duration, not a request count. Where wrk is not
installed, the benchmark falls back to the Python client and says so (`apt-get install wrk`).
Apache Bench (`ab`), which TorchServe's own benchmark uses, timed out against TorchServe here.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RESULT_PREFIX = "WRK_RESULT "
LUA = """wrk.method = "POST"
local f = assert(io.open({body_path}, "rb"))
wrk.body = f:read("*all")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("{prefix}{{\\"requests\\":%d,\\"duration_us\\":%d,\\"non_2xx\\":%d,\\"socket_errors\\":%d,"
    .. "\\"p50_us\\":%d,\\"p90_us\\":%d,\\"p99_us\\":%d}}\\n", summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def find_wrk() -> str | None:
    return shutil.which("wrk")


def lua_string(text: str) -> str:
    """A Lua string literal (JSON's escaping is valid Lua for these characters)."""
    if re.search(r"[\x00-\x1f]", text):
        raise ValueError(f"control characters in {text!r}")
    return json.dumps(text)


def lua_script(body_path: Path, headers: dict[str, str]) -> str:
    lines = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in headers.items())
    return LUA.format(body_path=lua_string(str(body_path)), headers=lines, prefix=RESULT_PREFIX)


def parse_result(stdout: str) -> dict:
    """The `done` hook's JSON line from wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")


def summarise(raw: dict, concurrency: int, elapsed_s: float, client_cpu_s: float, cores: int) -> dict:
    """wrk's counts in the load client's summary shape, plus the client's share of the machine's CPU."""
    ok = raw["requests"] - raw["non_2xx"]
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"], "concurrency": concurrency, "answered": raw["requests"],
        "errors": raw["non_2xx"] + raw["socket_errors"],
        "throughput_rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 2), "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2), "elapsed_s": round(elapsed_s, 2),
        "client": "wrk", "client_cpu_share": round(client_cpu_s / (elapsed_s * cores), 3) if elapsed_s else None,
    }


def run_wrk(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float,
            wrk: str = "wrk", timeout_s: float = 60.0) -> dict:
    """POST `body` to `url` from `concurrency` connections on one wrk thread for `seconds`."""
    with tempfile.TemporaryDirectory(prefix="wrk-") as folder:
        body_path, script = Path(folder) / "body", Path(folder) / "post.lua"
        body_path.write_bytes(body)
        script.write_text(lua_script(body_path, headers))
        command = [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", f"--timeout={int(timeout_s)}s",
                   "-s", str(script), url]
        before, started = _children_cpu_s(), time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout_s + 30, check=False)
        elapsed, cpu = time.monotonic() - started, _children_cpu_s() - before
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return summarise(parse_result(done.stdout), concurrency, elapsed, cpu, len(os.sched_getaffinity(0)))


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime

"""Worker-kill recovery: every worker of a model SIGKILLed, timed to the first good answer.

Every worker, not one: with two workers the other one answers at once, which says nothing about
how fast TorchServe brings a worker back. The kill finds the PIDs through the management API's
describe (`pid`), so it runs only against the benchmark's own server. A prediction sent while
no worker is up waits in the queue or gets 507/503; the poll counts only a 200.
"""

from __future__ import annotations

import os
import signal
import time

import requests

from scripts.client.torchserve import Client, poll_until
from scripts.measure.bench.served import worker_pids

TIMEOUT_S = 120.0


def worker_recovery(client: Client, model: str, body: bytes, timeout_s: float = TIMEOUT_S) -> dict:
    """Seconds from the kill to the first 200, and to every worker READY again with a new PID."""
    old = worker_pids(client, model)
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    def answered() -> bool:
        return client.predict(model, data=body, timeout_s=timeout_s).status_code == 200

    poll_until(answered, timeout_s, f"a 200 from {model} after its workers were killed", interval_s=0.05,
               ignore=(requests.ConnectionError, requests.Timeout))
    first_answer_s = time.monotonic() - killed

    def all_back() -> bool:
        workers = client.describe(model).json()[0]["workers"]
        return len(workers) == len(old) and all(w["status"] == "READY" and w["pid"] not in old for w in workers)

    poll_until(all_back, timeout_s, f"{len(old)} new READY workers of {model}", interval_s=0.1)
    return {"model": model, "workers_killed": len(old), "first_answer_s": round(first_answer_s, 2),
            "all_workers_ready_s": round(time.monotonic() - killed, 2)}

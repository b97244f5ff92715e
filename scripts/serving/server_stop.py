"""How scripts/serving/serve.py stops TorchServe on SIGTERM or Ctrl-C, inside an orchestrator's grace period.

1. Readiness fails from now on: scripts/serving/readiness.py reads the marker `mark_stopping` writes
   beside key_file.json, so no new traffic is sent (the Kubernetes probe, the front's
   /v2/health/ready, the image's health check).
2. Drain: TorchServe 0.12's shutdown closes the connections of requests in flight (seen: 12 of
   12 reset), so Java is signalled only once no client holds a connection to the inference port
   (each request in flight has one), DRAIN_S at most; requests that arrive meanwhile are served.
3. SIGTERM to Java alone, as `torchserve --stop` does: its shutdown hook closes the listeners,
   saves the shutdown snapshot and unregisters every model, which ends the workers (about 3 s).

Signalling the whole process group instead (as this wrapper once did) killed the workers under
Java: their worker threads saw them die and started new ones 1 s later, during the shutdown.
Orphaned when Java exited, those kept the group alive: 37-43 s in the image (issue 21), a SIGKILL
under `docker stop`'s 10 s. What Java leaves behind is ended once Java has gone.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from scripts.serving.readiness import STOPPING_MARKER

DRAIN_S = 4
"""At most this long for the requests in flight before Java is told to stop (a keep-alive client
that holds its connection idle also waits this out): with Java's ~3.3 s, well inside docker stop's 10 s."""
JAVA_WAIT_S = 30
"""SIGTERM during start-up: how long to wait for the launcher to start Java before giving up on it."""
LEFTOVER_GRACE_S = 5
"""After Java has exited: how long its leftover workers get after SIGTERM before SIGKILL."""
POLL_S = 0.1


def mark_stopping(workdir: Path, reason: str) -> None:
    """Readiness fails from now on (scripts/serving/readiness.py): the marker holds why, for the probe's message."""
    try:
        (workdir / STOPPING_MARKER).write_text(reason)
    except OSError as error:  # a read-only workdir: the stop goes on, readiness just follows later
        print(f"serve: could not mark the server stopping: {error}", file=sys.stderr, flush=True)


def clear_stopping(workdir: Path) -> None:
    """At start: a marker left by a server that was killed must not keep this one unready."""
    (workdir / STOPPING_MARKER).unlink(missing_ok=True)


def java_pid(launcher_pid: int, timeout_s: float = JAVA_WAIT_S) -> int | None:
    """The launcher's Java child, waited for while the launcher starts it (a SIGTERM during start-up);
    None once the launcher has exited or after timeout_s."""
    import psutil  # imported where used: docker/healthcheck.py imports mark_stopping and stays stdlib only

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            children = psutil.Process(launcher_pid).children()
        except psutil.NoSuchProcess:
            return None
        java = [child.pid for child in children if _is_java(child)]
        if java:
            return java[0]
        time.sleep(POLL_S)
    return None


def _is_java(process) -> bool:
    import psutil

    try:
        return "org.pytorch.serve.ModelServer" in process.cmdline()
    except psutil.Error:
        return False


def drain(java: int, port: int, timeout_s: float = DRAIN_S) -> int:
    """Wait until no client holds a connection to Java's `port`, at most timeout_s; the number left."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            held = [c for c in psutil.Process(java).net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port]
        except psutil.Error:  # Java already gone
            return 0
        if not held or time.monotonic() >= deadline:
            return len(held)
        time.sleep(POLL_S)


def stop_java(launcher_pid: int, inference_port: int | None = None) -> tuple[int | None, int]:
    """Drain the inference port, then SIGTERM TorchServe's Java process (not its workers): (its pid,
    connections still open when it was signalled). Without Java yet, the launcher itself is ended."""
    pid = java_pid(launcher_pid)
    left = drain(pid, inference_port) if pid is not None and inference_port is not None else 0
    target = pid if pid is not None else launcher_pid
    try:
        os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        pass
    return pid, left


def end_group(pgid: int, grace_s: float = LEFTOVER_GRACE_S) -> bool:
    """Once the launcher has exited: SIGTERM whatever is left of its group (workers Java left
    behind, or Java itself if the launcher died first), SIGKILL after grace_s.

    Returns True when nothing had to be killed. Zombies do not count: a parent that has not reaped
    them yet (or a PID 1 that never will) must not hold the stop."""
    if not running(pgid):
        return True
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not running(pgid):
            return True
        time.sleep(POLL_S)
    signal_group(pgid, signal.SIGKILL)
    return False


def running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies aside)."""
    import psutil

    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return False


def signal_group(pgid: int, signum: int) -> bool:
    """False when the group has no process left."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False

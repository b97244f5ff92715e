"""`make stop`: stop the server `make serve` runs in another terminal, and return once it has stopped.

    python -m scripts.serving.stop                  # the server of logs/run (make serve's --run-dir)
    python -m scripts.serving.stop --run-dir DIR

scripts/serving/serve.py writes its pid to <run-dir>/serve.pid. This sends it SIGTERM, the stop an
orchestrator sends (readiness fails, requests in flight are answered, Java stops, the front closes:
scripts/serving/server_stop.py), and waits until the process has exited. `torchserve --stop`, which
`make stop` once ran, signals Java alone and returns at once: the front and the wrapper went on for
about 3 s more, so a `make serve` started right after it found the front's port taken and served
without the front. Without a serve.pid (a TorchServe started another way), `torchserve --stop` runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PID_FILE = "serve.pid"
STOP_TIMEOUT_S = 60.0
"""serve.py's own stop takes 4 s of drain, ~3.5 s of Java, the front's close and 5 s of grace for leftovers at most."""
POLL_S = 0.1


def write_pid(run_dir: Path) -> Path | None:
    """serve.py, once it handles SIGTERM: where `make stop` finds it. None when it cannot be written
    (the server runs all the same; `make stop` then falls back to `torchserve --stop`)."""
    path = run_dir / PID_FILE
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as error:
        print(f"serve: could not write {path} for make stop: {error}", file=sys.stderr, flush=True)
        return None
    return path


def serve_pid(run_dir: Path) -> int | None:
    """The pid of the serve.py that wrote run_dir's pid file, if that process still runs it (a pid file
    left by a killed server, whose pid another process may have taken since, gives None)."""
    import psutil

    try:
        pid = int((run_dir / PID_FILE).read_text())
        command = " ".join(psutil.Process(pid).cmdline())
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if "scripts.serving.serve" in command or "ts-bundle-serve" in command else None


def stop(run_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> int:
    """SIGTERM to the server of `run_dir`, then wait for it to exit: 0 once it has, 1 if it still runs after timeout_s."""
    pid = serve_pid(run_dir)
    if pid is None:
        print(f"stop: no serve.py runs from {run_dir} ({PID_FILE}); asking TorchServe itself (torchserve --stop)", flush=True)
        env = {**os.environ, "TMPDIR": str(run_dir.resolve())}  # where serve.py puts the launcher's pid file
        return subprocess.run([sys.executable, "-m", "ts.model_server", "--stop"], env=env).returncode
    started = time.monotonic()
    os.kill(pid, signal.SIGTERM)
    while time.monotonic() - started < timeout_s:
        if not _running(pid):
            print(f"stop: the server (pid {pid}) stopped in {time.monotonic() - started:.1f} s", flush=True)
            return 0
        time.sleep(POLL_S)
    print(f"stop: the server (pid {pid}) still runs {timeout_s:.0f} s after SIGTERM; its log says why", file=sys.stderr, flush=True)
    return 1


def _running(pid: int) -> bool:
    """Zombies count as stopped: the parent that started serve.py (make, a test) reaps it in its own time,
    which psutil.Process.wait would wait out."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("logs/run"), help="the server's --run-dir (make serve: logs/run)")
    parser.add_argument("--timeout", type=float, default=STOP_TIMEOUT_S, help="seconds to wait for it to exit")
    args = parser.parse_args(argv)
    return stop(args.run_dir, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

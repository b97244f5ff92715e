"""The v2 front (scripts/serving/v2_front.py) as a child process of scripts/serving/serve.py: launched once
TorchServe answers, started again if it dies on its own, stopped after TorchServe.

The front is given its parent's pid and exits when that parent is gone, so a SIGKILLed serve.py
does not leave it holding the port. Standard library only, as the front is.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from scripts.serving.v2_front import Front, V2Error, parse_listen

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30
POLL_S = 0.2
RESTART_PAUSE_S = (1.0, 30.0)
"""The pause before starting a dead front again: 1 s, doubling to 30 s while it keeps dying."""
STABLE_S = 60
"""Up this long, a front that dies is started again after the shortest pause."""


def restart_pause(previous_s: float | None, uptime_s: float) -> float:
    """The pause before starting again a front that died after `uptime_s` up: the shortest the first
    time or after a stable run, else twice the last pause, up to the longest (a front that cannot
    start must not spin)."""
    shortest, longest = RESTART_PAUSE_S
    if previous_s is None or uptime_s >= STABLE_S:
        return shortest
    return min(previous_s * 2, longest)


def launch(listen: str, config: Path, key_file: Path, workflows: list[str] | tuple[str, ...] = (), **popen) -> subprocess.Popen:
    """The front as a child process in its own session: a Ctrl-C reaches it only through whoever started it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "scripts.serving.v2_front", "--listen", listen, "--config", str(Path(config).resolve()),
               "--key-file", str(Path(key_file).resolve()), "--parent-pid", str(os.getpid()),
               *(["--workflows", *workflows] if workflows else [])]
    return subprocess.Popen(command, env=env, start_new_session=True, **popen)


def wait_listening(process: subprocess.Popen, listen: str, timeout_s: float = START_TIMEOUT_S) -> bool:
    """Until the front accepts connections (True), or has exited or timed out (False)."""
    host, port = parse_listen(listen)
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port), timeout=1).close()
            return True
        except OSError:
            time.sleep(POLL_S)
    return False


def stop(process: subprocess.Popen, timeout_s: float = 10) -> int:
    process.terminate()
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class Sidecar:
    """The front beside the TorchServe that scripts/serving/serve.py runs."""

    def __init__(self, listen: str, config: Path, key_file: Path, workflows: list[str], **popen) -> None:
        self.listen, self.config, self.key_file, self.workflows = listen, Path(config), Path(key_file), workflows
        self.popen = popen
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # a launch and stop() never interleave

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def start_when_up(self, timeout_s: float) -> str | None:
        """Start once TorchServe's inference API answers; what went wrong, or None when it listens
        (and from then on it is watched, and started again should it die)."""
        front = Front.from_config(self.config, self.key_file, self.workflows)
        deadline = time.monotonic() + timeout_s
        while not self._stopped.is_set():
            try:
                front.live()
                break
            except V2Error as error:
                if time.monotonic() >= deadline:
                    return str(error)
                time.sleep(POLL_S)
        if not self._launch():
            return "TorchServe stopped first"
        if not wait_listening(self.process, self.listen):
            return f"it does not listen on {self.listen} (exit code {self.process.poll()})"
        threading.Thread(target=self._watch, name="v2-front-watch", daemon=True).start()
        return None

    def _launch(self) -> bool:
        with self._lock:
            if self._stopped.is_set():
                return False
            self.process = launch(self.listen, self.config, self.key_file, self.workflows, **self.popen)
            return True

    def _watch(self) -> None:
        """Start the front again each time it exits while TorchServe runs."""
        pause = None
        while True:
            started = time.monotonic()
            code = self.process.wait()
            if self._stopped.is_set():
                return
            pause = restart_pause(pause, time.monotonic() - started)
            print(f"serve: v2 front exited (code {code}); starting it again in {pause:.0f} s", file=sys.stderr, flush=True)
            if self._stopped.wait(pause) or not self._launch():
                return
            self.restarts += 1

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

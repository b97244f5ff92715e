"""Run TorchServe in the foreground with a chosen config, and stop it cleanly on Ctrl-C/SIGTERM.

    python -m scripts.serving.serve                       # config.properties, model-store/
    python -m scripts.serving.serve --config other.properties --model-store /models
    python -m scripts.serving.serve --log-dir /state --snapshots      # the container (docker/entrypoint.sh)
    python -m scripts.serving.serve --log-format json                 # logs as JSON lines (scripts/serving/log4j2-json.xml)
    python -m scripts.serving.serve --front 127.0.0.1:8090            # + the front: KServe v2, OpenAI (scripts/serving/front.py)

TorchServe's own launcher starts Java as a child and does not pass signals on, and it keeps
a pid file in $TMPDIR that a second server would trip over. This wrapper gives the launcher a
private $TMPDIR (--run-dir), starts it in its own process group, and on SIGINT/SIGTERM marks the
server stopping (readiness fails), sends SIGTERM to Java alone, which answers the requests in
flight and stops its workers, then ends whatever is left of the group (scripts/serving/server_stop.py).
A second Ctrl-C stops the whole group at once. `make stop` sends the same SIGTERM from another terminal
(<run-dir>/serve.pid; scripts/serving/stop.py). Snapshots are off (--ncs): the config is the truth.

With --snapshots TorchServe saves snapshots in <log-dir>/config (its LOG_LOCATION; nothing else
chooses that folder), and the next start resumes the model set (models, versions, workers) of
the newest one. The server settings still come from --config: TorchServe's own resume, which
happens only when it is given no config at all, would take every setting from the old snapshot.

With --front the front (scripts/serving/front.py: the KServe v2 routes, OpenAI's embeddings) listens
in this process from the start, on a thread of its own, and is stopped after Java has exited,
however that came about. Until TorchServe answers, its live and ready routes say so (400).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from scripts.serving import java, readiness, server_stop
from scripts.serving import stop as stop_verb
from scripts.serving.front import Running, app, listen_arg, parse_listen
from scripts.serving.ts_config import local_url
from scripts.serving.v2 import Front
from scripts.serving.workflows import register_all

LOG_CONFIGS = {name: Path(__file__).with_name(f"log4j2-{name}.xml") for name in ("text", "json")}
"""--log-format -> the log4j2 config given to TorchServe: the jar's own appenders and loggers, with
the frontend's echo of each [METRICS] line kept off the console (scripts/serving/log4j2-text.xml says why)."""
READY_TIMEOUT_S = 600  # two models on 2 cores load in well under a minute; a slow disk may take longer


def torchserve_command(config: Path, model_store: Path, models: list[str], snapshots: bool = False,
                       workflow_store: Path | None = None, log_config: Path | None = None) -> list[str]:
    """TorchServe's launcher run as its module (what the `torchserve` script calls), by this interpreter: it runs
    wherever `ts` imports, also where TorchServe is on PYTHONPATH with no script installed (../shared/gpu-host)."""
    command = [sys.executable, "-m", "ts.model_server", "--start", "--foreground", *([] if snapshots else ["--ncs"]),
               "--ts-config", str(config), "--model-store", str(model_store)]
    if log_config is not None:
        command += ["--log-config", str(log_config)]
    if workflow_store is not None:
        command += ["--workflow-store", str(workflow_store)]
    return command + (["--models", *models] if models else [])


def resume_config(config: Path, snapshot_dir: Path, run_dir: Path) -> Path:
    """`config` plus the model_snapshot line of the newest snapshot in snapshot_dir, if any.

    Snapshot names start with a yyyyMMddHHmmssSSS timestamp, so the last name is the newest.
    The line is copied as written (one escaped properties line), so it needs no parsing.
    """
    snapshots = sorted(snapshot_dir.glob("*.cfg"))
    lines = snapshots[-1].read_text().splitlines() if snapshots else []
    model_snapshot = next((line for line in lines if line.startswith("model_snapshot=")), None)
    if model_snapshot is None:
        return config
    print(f"serve: resuming the models of snapshot {snapshots[-1]}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    resumed = run_dir / "resumed.properties"
    resumed.write_text(f"{config.read_text().rstrip()}\n{model_snapshot}\n")
    return resumed


def check_java() -> None:
    found = java.check_java()
    if not found.ok:
        sys.exit(f"serve: {found.problem}. Fix: {java.FIX}.")


def check_gpu() -> None:
    """GPU archives (make serve VARIANT=gpu) say deviceType gpu and fp16: without a CUDA GPU every
    worker would fail to load and TorchServe would restart it forever. Refused before it starts.
    make serve VARIANT=gpu calls this in a process of its own before archiving (make's gpu-present);
    --require-gpu calls it here, for a store of GPU archives served without make."""
    import torch  # only here: it stays loaded (0.5 GB) in the process that asks

    if not torch.cuda.is_available():
        sys.exit("serve: the GPU archives need a CUDA GPU and torch sees none (torch.cuda.is_available() is False: "
                 f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}). `make serve` serves on the CPU.")


def run(command: list[str], run_dir: Path, log_dir: Path | None = None, on_start=None, on_stop=None,
        workdir: Path = Path("."), inference_port: int | None = None) -> int:
    """Run the launcher in its own process group until it ends or a signal stops it.

    `on_start` (optional) runs in a thread once the process is up, e.g. workflow registration;
    `on_stop` (optional) runs once the whole group has exited, e.g. stopping the front.
    `workdir` is TorchServe's working directory (key_file.json), where stopping is marked;
    `inference_port` the port whose requests in flight are waited for before Java is stopped.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    # TMPDIR holds the launcher's pid file; TEMP becomes Java's tmpdir, where the worker sockets
    # (.ts.sock.9000 ...) and unpacked archives live: private, so two servers never collide.
    env = {**os.environ, "TMPDIR": str(run_dir.resolve()), "TEMP": str(run_dir.resolve())}
    if log_dir is not None:  # TorchServe's logs, metrics logs and snapshots (<log_dir>/config)
        env |= {"LOG_LOCATION": str(log_dir.resolve()), "METRICS_LOCATION": str(log_dir.resolve())}
    server_stop.clear_stopping(workdir)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    stop_requested: list[tuple[str, float]] = []

    def stop(signum, _frame):
        if stop_requested:  # a second Ctrl-C: no more waiting for the requests in flight
            server_stop.signal_group(process.pid, signal.SIGTERM)
            return
        name = signal.Signals(signum).name
        stop_requested.append((name, time.monotonic()))
        threading.Thread(target=stop_java, args=(name,), name="stop-java", daemon=True).start()

    def stop_java(name: str) -> None:
        server_stop.mark_stopping(workdir, f"scripts/serving/serve.py got {name}")
        print(f"serve: {name}: not ready from now; stopping TorchServe once the requests in flight are answered "
              f"({server_stop.DRAIN_S} s at most)", flush=True)
        pid, left = server_stop.stop_java(process.pid, inference_port)
        what = f"Java pid {pid}" if pid else "no Java started yet"
        print(f"serve: stopping TorchServe ({what}; {left} connections still open)", flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid_file = stop_verb.write_pid(run_dir)  # make stop: SIGTERM to this process, then it waits for it to exit
    if on_start is not None:
        threading.Thread(target=on_start, daemon=True).start()
    try:
        code = process.wait()
        clean_exit = server_stop.end_group(process.pid)  # workers Java left behind (a crash, `torchserve --stop`)
        if on_stop is not None:
            on_stop()
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    server_stop.clear_stopping(workdir)
    if not stop_requested:
        return exited_unasked(code)
    name, since = stop_requested[0]
    print(f"serve: stopped {time.monotonic() - since:.1f} s after {name}" + ("" if clean_exit else " (leftover workers killed)"),
          flush=True)
    return 0 if clean_exit else 1


def exited_unasked(code: int) -> int:
    """The exit status when TorchServe ended without a signal to this process: a failure, so that a
    restart policy (Kubernetes, `docker run --restart on-failure`) acts. TorchServe's launcher exits 0
    even when Java died (an OutOfMemoryError under `vmargs=-XX:+ExitOnOutOfMemoryError`, a crash)."""
    print(f"serve: TorchServe exited on its own (launcher status {code}); its last lines above and its ts_log.log say why",
          file=sys.stderr, flush=True)
    return code or 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config.properties"))
    parser.add_argument("--model-store", type=Path, default=Path("model-store"))
    parser.add_argument("--models", nargs="*", default=[], help="override load_models, e.g. name=name.mar")
    parser.add_argument("--run-dir", type=Path, default=Path("logs/run"), help="private $TMPDIR for the launcher's pid file")
    parser.add_argument("--log-dir", type=Path, help="TorchServe's LOG_LOCATION (default: ./logs); snapshots go to <log-dir>/config")
    parser.add_argument("--snapshots", action="store_true", help="save snapshots and resume the models of the newest one")
    parser.add_argument("--workflow-store", type=Path, help="folder of .war archives")
    parser.add_argument("--workflows", nargs="*", default=[], help="archives of the workflow store to register once up")
    parser.add_argument("--log-format", choices=sorted(LOG_CONFIGS), default="text",
                        help="json: every TorchServe log as JSON lines (time, level, logger, model, request_id, message)")
    parser.add_argument("--front", "--v2-front", type=listen_arg, metavar="HOST:PORT",  # --v2-front: its old name
                        help="also serve the front there: KServe v2 and OpenAI's embeddings (scripts/serving/front.py)")
    parser.add_argument("--require-gpu", action="store_true", help="refuse to start without a CUDA GPU (a store of GPU archives)")
    args = parser.parse_args(argv)
    check_java()
    if args.require_gpu:
        check_gpu()
    if not args.model_store.is_dir():
        sys.exit(f"serve: model store {args.model_store} does not exist; run `make archive` first")
    config = args.config
    if args.snapshots:
        log_dir = args.log_dir or Path(os.environ.get("LOG_LOCATION", "logs"))
        config = resume_config(config, log_dir / "config", args.run_dir)
    if args.workflows and not (args.workflow_store and args.workflow_store.is_dir()):
        sys.exit(f"serve: workflow store {args.workflow_store} does not exist; run `make archive` first")
    log_config = LOG_CONFIGS[args.log_format]
    if not log_config.is_file():
        sys.exit(f"serve: --log-format {args.log_format} needs {log_config}, which is missing")
    command = torchserve_command(config, args.model_store, args.models, args.snapshots, args.workflow_store, log_config)
    key_file = Path("key_file.json").resolve()  # TorchServe writes it in its working directory: this one
    front = start_front(args.front, args.config, key_file, args.workflows) if args.front else None
    inference_port = urlsplit(local_url(args.config.read_text(), "inference")).port
    return run(command, args.run_dir, args.log_dir, on_start=lambda: announce_ready(args.config, args.workflows, key_file, front),
               on_stop=front.stop if front else None, workdir=key_file.parent, inference_port=inference_port)


def announce_ready(config: Path, wars: list[str], key_file: Path = Path("key_file.json"), front: Running | None = None) -> None:
    """Register the workflows, then print one `ready:` line once everything serves
    (scripts/serving/readiness.py).

    Workflows are not kept across restarts (TorchServe has no workflow snapshot): register them.
    The line comes only when every model has all its workers READY and every workflow is
    registered; a request sent before it may meet a 404 or wait for a loading worker.
    """
    try:
        if wars:
            register_all(config, wars, key_file)
    except Exception as exc:  # the server keeps running; say clearly what is missing
        print(f"serve: workflow registration failed: {exc}", file=sys.stderr, flush=True)
    server = readiness.Server.from_config(config, key_file, wars)
    problems = readiness.wait(server, READY_TIMEOUT_S)
    if problems:
        print(f"serve: not ready after {READY_TIMEOUT_S} s: {'; '.join(problems)}", file=sys.stderr, flush=True)
    else:
        print(f"ready: {readiness.summary(server)}" + (f"; front: {front.url}" if front else ""), flush=True)


def start_front(listen: str, config: Path, key_file: Path, workflows: list[str]) -> Running | None:
    """The front listening in this process; None (and a line saying why) when it cannot: TorchServe
    is served all the same."""
    host, port = parse_listen(listen)
    try:
        running = Running(app(Front.from_config(config, key_file, workflows)), host, port).start()
    except OSError as error:
        print(f"serve: front not started on {listen}: {error}", file=sys.stderr, flush=True)
        return None
    print(f"serve: front on {running.url} (scripts/serving/front.py)", flush=True)
    return running


if __name__ == "__main__":
    sys.exit(main())

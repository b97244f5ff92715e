# syntax=docker/dockerfile:1
# The bundle as an image (docs/docker.md). CPU by default; GPU workers with VARIANT=gpu:
#   make docker                 docker build --build-arg VARIANT=cpu -t torchserve-bundle:cpu .
#   make docker VARIANT=gpu     docker build --build-arg VARIANT=gpu -t torchserve-bundle:gpu .
# Stages: base-cpu | base-gpu -> deps (pyproject.toml's dependencies) -> builder (weights and
# archives: `make archive`) -> runtime (a non-root user, TorchServe under tini).

ARG VARIANT=cpu
# The torch wheel from PyPI carries its own CUDA 13.0 libraries (cuBLAS, cuDNN ...); the image needs
# only the driver, which `docker run --gpus` mounts. So the `base` flavour: `runtime` would add a
# second copy of those libraries (GBs). Its NVIDIA_REQUIRE_CUDA makes the toolkit refuse an old driver.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu22.04

FROM python:3.11-slim-bookworm AS base-cpu
# Debian's slim images drop man pages, and the JRE's post-install step links one into man1.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && python -m venv /opt/venv

FROM ${CUDA_IMAGE} AS base-gpu
# Ubuntu 22.04 has Python 3.11 (pyproject.toml wants 3.11) and Java 17. An ARG, not an ENV: only
# for this build step, where a package such as tzdata would otherwise stop to ask a question.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv openjdk-17-jre-headless tini \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv /opt/venv

# DL3006 wants a tag on every FROM; this one names a stage above (base-cpu or base-gpu), not an image.
# hadolint ignore=DL3006
FROM base-${VARIANT} AS deps
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The [project] dependencies read from pyproject.toml itself: one pinned list, no copy to drift.
# Not `pip install .`, which needs README.md too: every README edit would reinstall GBs of torch.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("/tmp/pyproject.toml", "rb"))["project"]["dependencies"]))' \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt

FROM deps AS builder
ARG VARIANT
# Empty: the Makefile's MODELS.
ARG MODELS=
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY handlers/ handlers/
COPY models/ models/
COPY scripts/ scripts/
COPY workflows/ workflows/
COPY samples/ samples/
COPY docker/gpu_config.py docker/
# The weights come from the PyPI packages installed above: nothing is downloaded here; the ONNX
# export checks itself on the photos and sentences of samples/ (scripts/onnx_export.py). The GPU
# variant's model-config.yaml files are derived from models/configs (docker/gpu_config.py).
# `make -o STAMP`: the dependencies are installed already, in /opt/venv rather than .venv.
RUN if [ "$VARIANT" = gpu ]; then python docker/gpu_config.py models/configs/*.yaml; fi \
 && make -o /opt/venv/.installed archive VENV=/opt/venv ${MODELS:+"MODELS=$MODELS"}

FROM deps AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin model-server
# The code that runs the server; handlers and weights travel inside the archives. Root-owned,
# like the model store: the server can read them, not change them.
COPY scripts/__init__.py scripts/serve.py scripts/workflows.py scripts/ts_config.py scripts/keyfile.py scripts/torchserve.py scripts/java.py /app/scripts/
COPY docker/config.properties docker/entrypoint.sh docker/healthcheck.py /app/docker/
COPY --from=builder /src/model-store/ /home/model-server/model-store/
COPY --from=builder /src/wf-store/ /home/model-server/wf-store/
WORKDIR /home/model-server
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 1000:1000
# key_file.json is written to the working directory; snapshots to logs/config (a volume's mount
# point: created here so that a fresh named volume belongs to this user).
RUN mkdir -p logs/config
EXPOSE 8080 8081 8082
# /ping needs the inference key, which only the container can read: see docker/healthcheck.py.
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
  CMD ["python", "/app/docker/healthcheck.py"]
# tini is PID 1: it passes signals on and reaps the orphans the TorchServe launcher leaves.
ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]

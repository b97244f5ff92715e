# TorchServe bundle. `make serve` and `make test` work from a fresh clone.
PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
MODELS      ?= efficientnet_lite0 minilm
WEIGHTS_DIR ?= build/weights
# VARIANT=gpu: archives with each model's GPU settings (docs/gpu.md), in a store of their own, with
# WORKERS_PER_GPU workers of each model on every GPU torch sees; `make serve VARIANT=gpu` serves them.
VARIANT     ?= cpu
WORKERS_PER_GPU ?= 2
GPU_CONFIGS := build/gpu-configs
MODEL_STORE ?= $(if $(filter gpu,$(VARIANT)),model-store-gpu,model-store)
WF_STORE    ?= wf-store
WORKFLOWS   ?= photo_embedding
CONFIG      ?= config.properties
PYTEST_ARGS ?=
STAMP       := $(VENV)/.installed
HANDLER_SRC := $(wildcard handlers/*.py)
# What an export and an archive are built from: a change here rebuilds them (no stale archives).
MODEL_SRC   := $(wildcard models/*.py) scripts/build/weights.py scripts/build/onnx_export.py
ARCHIVE_SRC := $(HANDLER_SRC) $(wildcard models/*.py) scripts/build/archives.py

.PHONY: help install weights archive archive-custom serve gpu-present ready stop test lint grpc-stubs clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv, install the pinned dependencies and this project, editable (checks Java 17+)

# -e: this project too, editable, so the verbs the recipes call ($(VENV)/bin/ts-bundle-*: pyproject.toml
# [project.scripts]) run this checkout's code. The Java check runs from the checkout (no venv yet).
$(STAMP): pyproject.toml
	@$(PYTHON) -m scripts.serving.java
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[build,test,bench,grpc]"
	@touch $@

weights: $(MODELS:%=$(WEIGHTS_DIR)/%/metadata.json)  ## export weights + metadata for MODELS

# A model's model-config.yaml: models/configs/<name>.yaml, else the one the torchvision
# classifiers share (resnet18, resnet50: models/registry.py TORCHVISION_CONFIG).
model_config = $(or $(wildcard models/configs/$(1).yaml),models/configs/torchvision.yaml)
# The config an archive is built with: that one, or its GPU variant (scripts/build/gpu_config.py).
archive_config = $(if $(filter gpu,$(VARIANT)),$(GPU_CONFIGS)/$(1).yaml,$(call model_config,$(1)))
.SECONDEXPANSION:

$(WEIGHTS_DIR)/%/metadata.json: $(STAMP) $$(call model_config,$$*) $(MODEL_SRC)
	$(VENV)/bin/ts-bundle-export $* --out $(WEIGHTS_DIR)

archive: $(MODELS:%=$(MODEL_STORE)/%.mar) $(WORKFLOWS:%=$(WF_STORE)/%.war)  ## build the .mar of MODELS and the .war of WORKFLOWS (VARIANT=gpu: GPU settings, model-store-gpu/)

$(MODEL_STORE)/%.mar: $(WEIGHTS_DIR)/%/metadata.json $$(call archive_config,$$*) $(ARCHIVE_SRC)
	$(VENV)/bin/ts-bundle-archive $* --weights-dir $(WEIGHTS_DIR) --model-store $(MODEL_STORE) \
	  $(if $(filter gpu,$(VARIANT)),--config $(call archive_config,$*))

# FORCE: the worker count follows this host's GPUs; the file (and so the archive) changes only when it does.
# WORKERS_PER_GPU empty (the image): no count, TorchServe's default_workers_per_model decides.
$(GPU_CONFIGS)/%.yaml: $$(call model_config,$$*) scripts/build/gpu_config.py $(STAMP) FORCE
	@$(VENV)/bin/ts-bundle-gpu-config $< --out $@.new $(if $(WORKERS_PER_GPU),--workers-per-gpu $(WORKERS_PER_GPU)) >/dev/null
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; echo "gpu-config: $@"; fi
FORCE:
.PRECIOUS: $(GPU_CONFIGS)/%.yaml

# A workflow names its models' archives; they are registered from the model store with it.
$(WF_STORE)/%.war: workflows/%.yaml $(HANDLER_SRC) scripts/build/workflow.py $(STAMP)
	$(VENV)/bin/ts-bundle-workflow $< --wf-store $(WF_STORE)

# Your own model: make archive-custom NAME=mynet MODEL_FILE=net.py MODEL_CLASS=Net STATE_DICT=net.pth \
#                                      [LABELS=labels.txt] [MODEL_CONFIG=my-model-config.yaml]
archive-custom: $(STAMP)  ## archive your own nn.Module file + state_dict (see README)
	@test -n "$(NAME)" -a -n "$(MODEL_FILE)" -a -n "$(MODEL_CLASS)" -a -n "$(STATE_DICT)" || \
	  { echo "usage: make archive-custom NAME=.. MODEL_FILE=.. MODEL_CLASS=.. STATE_DICT=.. [LABELS=..] [MODEL_CONFIG=..]"; exit 2; }
	$(VENV)/bin/ts-bundle-export $(NAME) --out $(WEIGHTS_DIR) --module-file $(MODEL_FILE) \
	  --class-name $(MODEL_CLASS) --state-dict $(STATE_DICT) $(if $(LABELS),--labels $(LABELS)) $(if $(MODEL_CONFIG),--config $(MODEL_CONFIG))
	$(VENV)/bin/ts-bundle-archive $(NAME) --weights-dir $(WEIGHTS_DIR) --model-store $(MODEL_STORE) \
	  $(if $(MODEL_CONFIG),--config $(MODEL_CONFIG))

# LOG_FORMAT=json: TorchServe's logs as JSON lines (scripts/serving/log4j2-json.xml, docs/metrics.md).
# FRONT: where the front listens (KServe v2 routes: docs/protocols.md; OpenAI's embeddings: docs/openai.md);
# empty: none. V2_FRONT is its old name, still read (make serve V2_FRONT= turns it off too).
LOG_FORMAT  ?= text
V2_FRONT    ?= 127.0.0.1:8090
FRONT       ?= $(V2_FRONT)
serve: $(if $(filter gpu,$(VARIANT)),gpu-present) archive  ## run TorchServe in the foreground, workflows registered once it is up (Ctrl-C stops it; VARIANT=gpu: on GPUs)
	$(VENV)/bin/ts-bundle-serve --config $(CONFIG) --model-store $(MODEL_STORE) \
	  --workflow-store $(WF_STORE) --workflows $(WORKFLOWS:%=%.war) --log-format $(LOG_FORMAT) \
	  $(if $(FRONT),--front $(FRONT))

# VARIANT=gpu without a CUDA GPU is refused before any archive is built, in a process of its own:
# torch (0.5 GB, 2 s to import) stays out of serve.py, which lives as long as the server.
gpu-present: $(STAMP)
	@$(PY) -c 'from scripts.serving.serve import check_gpu; check_gpu()'

# The same check as the `ready:` line of make serve, the image's HEALTHCHECK and the k8s readiness probe.
READY_TIMEOUT ?= 300
KEY_FILE      ?= key_file.json
ready: $(STAMP)  ## wait until the running server serves: every model's workers READY, every workflow registered
	@$(VENV)/bin/ts-bundle-ready --config $(CONFIG) --key-file $(KEY_FILE) --workflows $(WORKFLOWS) --wait $(READY_TIMEOUT)

stop: $(STAMP)  ## stop the server `make serve` runs in another terminal; returns once it has stopped
	$(VENV)/bin/ts-bundle-stop --run-dir logs/run

# Performance (docs/performance.md). BENCH_ARGS=--smoke for a quick run, --wait-quiet 0.5 on a shared machine.
BENCH_ARGS ?=
MODEL      ?= efficientnet_lite0
.PHONY: bench bench-gpu doctor inspect

bench: archive  ## benchmark served vs raw model vs stock handler -> build/bench/ (report.md, results.json, PNGs)
	$(VENV)/bin/ts-bundle-bench --model-store $(MODEL_STORE) --weights-dir $(WEIGHTS_DIR) --out build/bench $(BENCH_ARGS)

# The GPU image's config on this host's GPU (docs/gpu.md): floor, in process, served at c1/c64/c128,
# the first 10 s after ready. Without CUDA it says so and exits 0; BENCH_GPU_ARGS=--cpu-dry-run checks the steps.
BENCH_GPU_ARGS ?=
bench-gpu: archive weights  ## benchmark the GPU configuration on this host's GPU -> build/bench-gpu/ (report.md, results.json, PNG)
	$(VENV)/bin/ts-bundle-bench-gpu --model-store $(MODEL_STORE) --weights-dir $(WEIGHTS_DIR) --out build/bench-gpu $(BENCH_GPU_ARGS)

doctor: $(STAMP)  ## check the installation (versions, Java, CPU/GPU, free ports), each failure with its fix
	$(VENV)/bin/ts-bundle-doctor --config $(CONFIG) $(if $(FRONT),--front $(FRONT))

inspect: $(WEIGHTS_DIR)/$(MODEL)/metadata.json  ## resource estimates for MODEL: weights, activations, RSS per worker, workers that fit
	$(VENV)/bin/ts-bundle-inspect $(MODEL) --model-dir $(WEIGHTS_DIR)/$(MODEL)

# pytest exits 5 when a selection (e.g. PYTEST_ARGS="-m gpu") collects no tests: not a failure.
test: $(STAMP) lint  ## lint, then the whole test suite (tiers: unit, handler, tooling, integration, container)
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# Stubs for TorchServe's gRPC APIs, from the protos inside the installed jar (scripts/client/grpc_stubs.py);
# scripts/client/grpc_client.py also makes them on first use.
grpc-stubs: $(STAMP)  ## Python stubs for TorchServe's gRPC APIs -> build/grpc/ (docs/grpc.md)
	$(VENV)/bin/ts-bundle-grpc-stubs --out build/grpc

# pyproject.toml [tool.ruff]: pyflakes, pycodestyle, isort, bugbear. `make test` runs it first.
lint: $(STAMP)  ## check the Python code with ruff (pyproject.toml [tool.ruff])
	$(VENV)/bin/ruff check .

# The load test of `make test` (2,000 requests) at soak size, on a server of its own (started and
# stopped by the test session). Prints p50/p99/throughput under "reliability figures".
SOAK_REQUESTS ?= 20000
SOAK_MODEL    ?= minilm
.PHONY: soak
soak: $(STAMP)  ## SOAK_REQUESTS (20,000) at concurrency 64: nothing lost, no 5xx but queue-full 503
	LOAD_REQUESTS=$(SOAK_REQUESTS) LOAD_MODEL=$(SOAK_MODEL) $(PY) -m pytest tests/integration/test_load.py -k bounded_load

# The image (Dockerfile, docs/docker.md). It builds its own weights and archives for MODELS.
# ENGINE: docker when its daemon answers, else podman when installed (ENGINE=podman picks one).
# Looked up once, and only by the targets that use it (not by `make archive` or `make -s print-X`).
IMAGE       ?= torchserve-bundle
ENGINES     := docker podman
ifeq ($(origin ENGINE),undefined)
ENGINE       = $(eval ENGINE := $(shell if docker info >/dev/null 2>&1; then echo docker; elif command -v podman >/dev/null 2>&1; then echo podman; fi))$(ENGINE)
endif
BASE_IMAGE  ?= docker.io/library/debian:bookworm-slim
# podman: the repo's containers.conf (docker/containers.conf says why); PODMAN_CONF= for the system's.
PODMAN_CONF ?= $(CURDIR)/docker/containers.conf
# The CA bundle pip trusts on this host, mounted into podman builds (PyPI's TLS may go through it).
HOST_CA     ?= $(firstword $(wildcard $(PIP_CERT) $(SSL_CERT_FILE) /etc/ssl/certs/ca-certificates.crt))
TORCH_INDEX_URL ?=
# podman: its config ($(PODMAN_CONF)) for every engine command; --format docker keeps HEALTHCHECK
# (OCI images have none); --network host reaches PyPI from RUN.
IS_PODMAN    = $(filter podman,$(ENGINE))
RUN_ENGINE   = $(if $(and $(IS_PODMAN),$(PODMAN_CONF)),CONTAINERS_CONF=$(PODMAN_CONF) )$(ENGINE)
BUILD_FLAGS  = $(if $(IS_PODMAN),--format docker --network host $(if $(HOST_CA),-v $(HOST_CA):/run/host-ca.pem:ro --build-arg PIP_CERT_FILE=/run/host-ca.pem))
.PHONY: docker docker-base base-stand-in docker-run engine print-%

engine:
	@test -n "$(ENGINE)" || { echo "make: no container engine: looked for $(ENGINES) (docker needs a running daemon)." \
	  "Install one: apt-get install -y podman runc uidmap (Debian/Ubuntu), or Docker Engine (https://docs.docker.com/engine/install/)."; exit 1; }

docker: engine  ## build the image torchserve-bundle:cpu with docker or podman (VARIANT=gpu: GPU workers)
	@$(RUN_ENGINE) image inspect $(BASE_IMAGE) >/dev/null 2>&1 || $(RUN_ENGINE) pull $(BASE_IMAGE) || \
	  { echo "make: the base image $(BASE_IMAGE) is missing and cannot be pulled: run \`make docker-base\` (a local stand-in)"; exit 1; }
	$(RUN_ENGINE) build $(BUILD_FLAGS) --build-arg VARIANT=$(VARIANT) --build-arg MODELS="$(MODELS)" \
	  --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) -t $(IMAGE):$(VARIANT) .

# A local stand-in for $(BASE_IMAGE) where no registry answers: Debian bookworm minbase, as
# Debian's debootstrap makes it (the real slim image also drops docs and man pages). It is not
# the published image; `$(ENGINE) rmi $(BASE_IMAGE)` and `$(ENGINE) pull` swap in the real one.
# Kept when present (a pulled real one, or the stand-in and the layer cache built on it).
docker-base: engine  ## build a local stand-in of debian:bookworm-slim (mmdebstrap + import) unless present
	@if $(RUN_ENGINE) image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
	  echo "make: $(BASE_IMAGE) is present, kept (\`$(ENGINE) rmi $(BASE_IMAGE)\` to make the stand-in again)"; exit 0; fi; \
	$(MAKE) --no-print-directory base-stand-in

base-stand-in:
	@command -v mmdebstrap >/dev/null || { echo "make: docker-base needs mmdebstrap: apt-get install -y mmdebstrap"; exit 1; }
	mkdir -p build/base
	mmdebstrap --quiet --variant=minbase bookworm build/base/rootfs.tar
	$(RUN_ENGINE) import --change 'CMD ["bash"]' build/base/rootfs.tar $(BASE_IMAGE)
	rm -f build/base/rootfs.tar

print-%:
	@echo $($*)

# Inference and the front on every interface; management and metrics on this host's loopback only.
docker-run: engine  ## run the image in the foreground, snapshots in the torchserve-snapshots volume
	$(RUN_ENGINE) run --rm --name torchserve $(if $(filter gpu,$(VARIANT)),--gpus all) \
	  -p 8080:8080 -p 8090:8090 -p 127.0.0.1:8081:8081 -p 127.0.0.1:8082:8082 \
	  -v torchserve-snapshots:/home/model-server/logs/config $(IMAGE):$(VARIANT)

# KServe (docs/kserve.md): the storage layout its TorchServe runtimes read at /mnt/models, from the
# archives of MODELS; deploy/kserve/config.properties with load_models set to MODELS.
# VARIANT=gpu (deploy/kserve/gpu): GPU archives with no worker count, as in the GPU image, whose
# entrypoint sets it per GPU the pod sees; this host's GPUs say nothing about the pod's.
KSERVE_STORE ?= $(if $(filter gpu,$(VARIANT)),build/kserve-gpu,build/kserve)
.PHONY: kserve-store
kserve-store: WORKERS_PER_GPU =
kserve-store: archive  ## KServe's storage layout -> build/kserve/ (config/config.properties, model-store/*.mar; VARIANT=gpu: build/kserve-gpu/)
	$(VENV)/bin/ts-bundle-kserve-store --models $(MODELS) --model-store $(MODEL_STORE) --out $(KSERVE_STORE)

# Kubernetes without a cluster (docs/docker.md): the rendered CPU overlay under podman kube play.
GATEWAY_IMAGE = $(eval GATEWAY_IMAGE := $(shell sed -n 's/^ *image: *\(.*nginx.*\)/\1/p' deploy/k8s/base/deployment.yaml))$(GATEWAY_IMAGE)
.PHONY: kube-gateway kube-play kube-token kube-down

# A LOCAL STAND-IN under the gateway image's name, for machines that cannot pull it: Debian's
# nginx on the same base (docker/gateway/Dockerfile), not the published image.
kube-gateway: engine  ## build a local stand-in of the gateway's nginx image (Debian's nginx)
	$(RUN_ENGINE) build $(BUILD_FLAGS) -t docker.io/$(GATEWAY_IMAGE) docker/gateway

# No $(STAMP) prerequisite: these need only the venv's python and yaml, never a reinstall.
KUBE_PY = @test -x $(PY) || { echo "make: run \`make install\` first"; exit 1; }

kube-play:  ## run deploy/k8s/overlays/cpu under podman kube play; gateway on 127.0.0.1:8000
	$(KUBE_PY)
	@command -v podman >/dev/null || { echo "make: kube-play needs podman (apt-get install -y podman runc uidmap)"; exit 1; }
	CONTAINERS_CONF=$(PODMAN_CONF) $(PY) deploy/kube_play.py up

kube-token:  ## print the token the kube-play gateway wants (Authorization: Bearer ...)
	$(KUBE_PY)
	@$(PY) deploy/kube_play.py token

kube-down:  ## remove what kube-play started: pod, model-store volume, secret
	$(KUBE_PY)
	CONTAINERS_CONF=$(PODMAN_CONF) $(PY) deploy/kube_play.py down

clean:  ## remove build outputs, archives and logs (keeps .venv)
	rm -rf build model-store model-store-gpu $(MODEL_STORE) $(WF_STORE) logs key_file.json .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# TorchServe bundle. `make serve` and `make test` work from a fresh clone.
PYTHON      ?= python3.11
VENV        ?= .venv
PY          := $(VENV)/bin/python
MODELS      ?= efficientnet_lite0 minilm
WEIGHTS_DIR ?= build/weights
MODEL_STORE ?= model-store
WF_STORE    ?= wf-store
WORKFLOWS   ?= photo_embedding
CONFIG      ?= config.properties
PYTEST_ARGS ?=
STAMP       := $(VENV)/.installed
HANDLER_SRC := $(wildcard handlers/*.py)

.PHONY: help install weights archive archive-custom serve stop test lint clean

help:  ## list the verbs
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install pinned dependencies (checks Java 17+)

$(STAMP): pyproject.toml
	@$(PYTHON) -m scripts.java
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[test,bench]"
	@touch $@

weights: $(MODELS:%=$(WEIGHTS_DIR)/%/metadata.json)  ## export weights + metadata for MODELS

# A model's model-config.yaml: models/configs/<name>.yaml, else the one the torchvision
# classifiers share (resnet18, resnet50: models/registry.py TORCHVISION_CONFIG).
model_config = $(or $(wildcard models/configs/$(1).yaml),models/configs/torchvision.yaml)
.SECONDEXPANSION:

$(WEIGHTS_DIR)/%/metadata.json: $(STAMP) $$(call model_config,$$*)
	$(PY) -m scripts.export_weights $* --out $(WEIGHTS_DIR)

archive: $(MODELS:%=$(MODEL_STORE)/%.mar) $(WORKFLOWS:%=$(WF_STORE)/%.war)  ## build the .mar of MODELS and the .war of WORKFLOWS

$(MODEL_STORE)/%.mar: $(WEIGHTS_DIR)/%/metadata.json $$(call model_config,$$*) $(HANDLER_SRC)
	$(PY) -m scripts.build_archives $* --weights-dir $(WEIGHTS_DIR) --model-store $(MODEL_STORE)

# A workflow names its models' archives; they are registered from the model store with it.
$(WF_STORE)/%.war: workflows/%.yaml $(HANDLER_SRC) $(STAMP)
	$(PY) -m scripts.build_workflow $< --wf-store $(WF_STORE)

# Your own model: make archive-custom NAME=mynet MODEL_FILE=net.py MODEL_CLASS=Net STATE_DICT=net.pth \
#                                      [LABELS=labels.txt] [MODEL_CONFIG=my-model-config.yaml]
archive-custom: $(STAMP)  ## archive your own nn.Module file + state_dict (see README)
	@test -n "$(NAME)" -a -n "$(MODEL_FILE)" -a -n "$(MODEL_CLASS)" -a -n "$(STATE_DICT)" || \
	  { echo "usage: make archive-custom NAME=.. MODEL_FILE=.. MODEL_CLASS=.. STATE_DICT=.. [LABELS=..] [MODEL_CONFIG=..]"; exit 2; }
	$(PY) -m scripts.export_weights $(NAME) --out $(WEIGHTS_DIR) --module-file $(MODEL_FILE) \
	  --class-name $(MODEL_CLASS) --state-dict $(STATE_DICT) $(if $(LABELS),--labels $(LABELS)) $(if $(MODEL_CONFIG),--config $(MODEL_CONFIG))
	$(PY) -m scripts.build_archives $(NAME) --weights-dir $(WEIGHTS_DIR) --model-store $(MODEL_STORE) \
	  $(if $(MODEL_CONFIG),--config $(MODEL_CONFIG))

serve: archive  ## run TorchServe in the foreground, workflows registered once it is up (Ctrl-C stops it)
	$(PY) -m scripts.serve --config $(CONFIG) --model-store $(MODEL_STORE) \
	  --workflow-store $(WF_STORE) --workflows $(WORKFLOWS:%=%.war)

stop:  ## stop a TorchServe started by `make serve` in another terminal
	TMPDIR=$(CURDIR)/logs/run $(VENV)/bin/torchserve --stop

# Performance (docs/performance.md). BENCH_ARGS=--smoke for a quick run, --wait-quiet 0.5 on a shared machine.
BENCH_ARGS ?=
MODEL      ?= efficientnet_lite0
.PHONY: bench doctor inspect

bench: archive  ## benchmark served vs raw model vs stock handler -> build/bench/ (report.md, results.json, PNGs)
	$(PY) -m scripts.benchmark --model-store $(MODEL_STORE) --weights-dir $(WEIGHTS_DIR) --out build/bench $(BENCH_ARGS)

doctor: $(STAMP)  ## check the installation (versions, Java, CPU/GPU, free ports), each failure with its fix
	$(PY) -m scripts.doctor --config $(CONFIG)

inspect: $(WEIGHTS_DIR)/$(MODEL)/metadata.json  ## resource estimates for MODEL: weights, activations, RSS per worker, workers that fit
	$(PY) -m scripts.inspect_model $(MODEL) --model-dir $(WEIGHTS_DIR)/$(MODEL)

# pytest exits 5 when a selection (e.g. PYTEST_ARGS="-m gpu") collects no tests: not a failure.
test: $(STAMP) lint  ## lint, then the whole test suite (tiers: unit, handler, tooling, integration, container)
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

# pyproject.toml [tool.ruff]: pyflakes, pycodestyle, isort, bugbear. Not part of `make test` yet.
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
IMAGE   ?= torchserve-bundle
VARIANT ?= cpu
.PHONY: docker docker-run

docker:  ## build the image torchserve-bundle:cpu (VARIANT=gpu: with GPU workers)
	docker build --build-arg VARIANT=$(VARIANT) --build-arg MODELS="$(MODELS)" -t $(IMAGE):$(VARIANT) .

# Inference on every interface; management and metrics on this host's loopback only.
docker-run:  ## run the image in the foreground, snapshots in the torchserve-snapshots volume
	docker run --rm --name torchserve $(if $(filter gpu,$(VARIANT)),--gpus all) \
	  -p 8080:8080 -p 127.0.0.1:8081:8081 -p 127.0.0.1:8082:8082 \
	  -v torchserve-snapshots:/home/model-server/logs/config $(IMAGE):$(VARIANT)

clean:  ## remove build outputs, archives and logs (keeps .venv)
	rm -rf build $(MODEL_STORE) $(WF_STORE) logs key_file.json .pytest_cache
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

# Everything runs inside .venv, which `make setup` creates on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/sst2-minilm.yaml
ARGS ?=
export HF_HUB_DISABLE_TELEMETRY = 1
export TOKENIZERS_PARALLELISM = false

# NPROC=N trains with N processes (DDP: gloo on CPU, NCCL on GPU) through torchrun; TORCHRUN_ARGS adds nodes.
NPROC ?= 1
TORCHRUN_ARGS ?=
TRAIN_CMD = $(if $(or $(filter-out 1,$(NPROC)),$(TORCHRUN_ARGS)),$(PY) -m trainer.launch --nproc_per_node $(NPROC) $(TORCHRUN_ARGS),$(PY))

RUN ?= runs/latest
HUB_MODEL_ID ?=
PUSH_ARGS ?=

SPACE_ID ?=
MODEL_ID ?=
SPACE_MODEL = $(or $(MODEL_ID),$(RUN))
SPACE_MODEL_ARG = $(if $(wildcard $(SPACE_MODEL)),$(abspath $(SPACE_MODEL)),$(SPACE_MODEL))

.PHONY: setup train check-data hpo evaluate compare predict card push space push-space bench bench-quick bench-space gpu-check screenshots test test-fast lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

train: setup
	$(TRAIN_CMD) -m trainer.train $(if $(findstring --resume,$(ARGS)),,--config $(CONFIG)) $(ARGS)

# The data checks of CONFIG's data (duplicates, overlap, conflicts, balance, cut texts): writes runs/data-checks/.
check-data: setup
	$(PY) -m trainer.check_data --config $(CONFIG) $(ARGS)

# Optuna search over CONFIG: `make hpo ARGS="--n_trials 6 --max_steps 300"`; rerun to resume; writes runs/hpo-<preset>/.
hpo: setup
	$(PY) -m trainer.hpo --config $(CONFIG) $(ARGS)

evaluate: setup
	$(PY) -m trainer.evaluate --model $(or $(MODEL),runs/latest) --data $(or $(DATA),stanfordnlp/sst2:validation) \
		--output_dir $(or $(OUT),evaluation) $(ARGS)

# Is B better than A? `make compare A=runs/plain B=runs/distilled [ARGS="--data ../shared/data/sst2/dev.tsv"]`:
# the paired difference, McNemar's test, fixed.csv and broken.csv, into comparisons/<A>-vs-<B>/.
compare: setup
	$(PY) -m trainer.compare $(A) $(B) $(ARGS)

predict: setup
	$(PY) -m trainer.predict --model $(or $(MODEL),runs/latest) $(ARGS)

card: setup
	$(PY) -m trainer.card --run_dir $(RUN) $(if $(HUB_MODEL_ID),--hub_model_id $(HUB_MODEL_ID))

# `make train push` trains, then publishes the new run (runs/latest) to HUB_MODEL_ID (default <you>/<run name>).
push: setup
	$(PY) -m trainer.push --run_dir $(RUN) $(if $(HUB_MODEL_ID),--hub_model_id $(HUB_MODEL_ID)) $(PUSH_ARGS)

# The Gradio app on http://127.0.0.1:7860, serving MODEL_ID (a Hub repo id or a run folder; default runs/latest).
space: setup
	cd space && MODEL_ID=$(SPACE_MODEL_ARG) ../$(PY) app.py

push-space: setup
	$(PY) -m trainer.push_space --model_id $(MODEL_ID) $(if $(SPACE_ID),--space_id $(SPACE_ID)) $(PUSH_ARGS)

# Ours against the notebook recipe and pipeline(), same run, same machine: bench.json and plots/bench.png.
bench: setup
	$(PY) -m trainer.bench --output bench/bench.json $(ARGS)

bench-quick: setup
	$(PY) -m trainer.bench --quick --output bench/bench-quick.json $(ARGS)

# The GPU figures in one command (bert-base, the MiniLM preset, NCCL with 2 GPUs, distillation): gpu-check/gpu_check.json.
# ARGS="--dry_run" runs every step on CPU with a tiny model; docs/performance.md#gpu-check says how to run it on a lent GPU.
gpu-check: setup
	$(PY) -m trainer.gpu_check --output gpu-check/gpu_check.json $(ARGS)

# The Space over HTTP: gradio_client, the JSON API (/api/classify), both under load, and the browser's page load.
bench-space: setup
	cd space && MODEL_ID=$(SPACE_MODEL_ARG) ../$(PY) benchmark.py --output ../space-bench.json

# A PNG of every tab (after a visitor's actions) in headless Chromium, serving MODEL_ID or RUN: docs/screenshots/.
screenshots: setup
	cd space && MODEL_ID=$(SPACE_MODEL_ARG) ../$(PY) browser.py --output ../docs/screenshots

# The transformers.js client the ONNX tests run (npm, versions pinned in tests/js/package-lock.json). onnxruntime-node
# ships its CPU library; ONNXRUNTIME_NODE_INSTALL_CUDA=skip keeps its install script from fetching GPU files.
JS_DEPS := tests/js/node_modules/.package-lock.json
$(JS_DEPS): tests/js/package-lock.json
	cd tests/js && ONNXRUNTIME_NODE_INSTALL_CUDA=skip npm ci --no-audit --no-fund
	touch $@

test: setup $(if $(shell command -v npm),$(JS_DEPS))
	HF_HUB_OFFLINE=1 WANDB_MODE=disabled $(PY) -m pytest -q

test-fast: setup
	HF_HUB_OFFLINE=1 WANDB_MODE=disabled $(PY) -m pytest -q -m "not slow"

lint: setup
	$(PY) -m ruff check trainer model_card space tests
	$(PY) -m ruff format --check trainer model_card space tests

format: setup
	$(PY) -m ruff format trainer model_card space tests
	$(PY) -m ruff check --fix trainer model_card space tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache tests/js/node_modules

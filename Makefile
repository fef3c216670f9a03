# Two commands on a fresh machine:  `make run` (the full local pipeline on the bundled data)
# and `make test` (the whole gate CI runs). Each bootstraps .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED ?= true
export SAGEMAKER_SUPPRESS_V2_WARNING ?= 1

.PHONY: setup run test lint typecheck unit e2e asl bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[build,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sfn-mlops run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src containers lambdas state_machines tests bench
	$(BIN)/statelint state_machines/*.asl.json
	$(BIN)/cfn-lint template.yaml

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

asl: $(STAMP)
	$(BIN)/python -m state_machines.training_pipeline

bench: $(STAMP)
	$(BIN)/python bench/pipeline_bench.py

clean:
	rm -rf .sfn-mlops

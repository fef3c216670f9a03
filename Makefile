# Two commands on a fresh machine:  `make run` (the full local pipeline on the bundled data)
# and `make test` (the whole gate CI runs). Each bootstraps .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED ?= true
export SAGEMAKER_SUPPRESS_V2_WARNING ?= 1
# The SAM CLI pins its own boto3: it lives in a virtual environment of its own.
SAM_VENV ?= .venv-sam
SAM_BIN := $(SAM_VENV)/bin
SAM_STAMP := $(SAM_VENV)/.installed
# sam, offline: dummy credentials, no telemetry, and its weekly PyPI version check marked as done
# (in its own config folder, seeded below); with these it opens no network connection.
SAM_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	SAM_CLI_TELEMETRY=0 __SAM_CLI_APP_DIR=$(abspath $(SAM_VENV))/sam-home

.PHONY: setup run test lint typecheck validate deploy unit e2e asl bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[build,dev]'
	touch $(STAMP)

$(SAM_STAMP): requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_BIN)/pip install --quiet --upgrade pip
	$(SAM_BIN)/pip install --quiet -r requirements-sam.txt
	mkdir -p $(SAM_VENV)/sam-home
	echo '{"telemetryEnabled": false, "lastVersionCheck": 4102444800.0}' \
		> $(SAM_VENV)/sam-home/metadata.json
	touch $(SAM_STAMP)

run: $(STAMP)
	$(BIN)/sfn-mlops run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src containers lambdas state_machines tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# The AWS side, offline: the template (SAM and translated), its IAM, the state machines.
validate: export AWS_ACCESS_KEY_ID = testing
validate: export AWS_SECRET_ACCESS_KEY = testing
validate: $(STAMP) $(SAM_STAMP)
	$(BIN)/cfn-lint template.yaml $(wildcard templates/*.yaml)
	$(BIN)/statelint state_machines/*.asl.json
	$(BIN)/python -m sfn_mlops.aws.checks template.yaml
	env $(SAM_ENV) $(SAM_BIN)/sam validate --lint --region us-east-1 --template template.yaml

test: lint typecheck validate
	$(BIN)/pytest

# `sam build && sam deploy` with .venv-sam's sam, in the AWS account of your credentials
# (docs/aws.md); a shortcut, not a step: any sam does the same. ARGS go to sam deploy, e.g.
# ARGS=--guided on the first deploy. SAM=/path/to/sam uses another sam.
SAM ?= $(SAM_BIN)/sam
deploy: $(SAM_STAMP)
	env -u AWS_EC2_METADATA_DISABLED -u AWS_DEFAULT_REGION sh -c '$(SAM) build && $(SAM) deploy $(ARGS)'

asl: $(STAMP)
	$(BIN)/python -m state_machines.training_pipeline
	$(BIN)/python -m state_machines.batch_inference

bench: $(STAMP)
	$(BIN)/python bench/bench_pipeline.py

clean:
	-[ ! -x $(BIN)/sfn-mlops ] || $(BIN)/sfn-mlops local down
	rm -rf .sfn-mlops

